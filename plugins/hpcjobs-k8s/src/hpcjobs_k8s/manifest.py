"""ResolvedJob + ``plugins.kubernetes`` → a ``batch/v1`` Job (a dict, then YAML). Pure.

The job arrives from ``resolve``: the same precedence, limits and entrypoint/command rules as the
Slurm path. What Kubernetes cannot express is refused with the reason, never dropped.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import yaml

from hpcjobs.errors import ConfigError
from hpcjobs.plugin_api import ResolvedJob
from hpcjobs_k8s.settings import DNS_LABEL, KubernetesSettings, VolumeMap

__all__ = ["MAX_NAME", "job_name", "k8s_literal", "manifest", "to_yaml"]

# Indexed Jobs name each pod's hostname NAME-INDEX, which must stay a 63-character label.
MAX_NAME = 52
CONTAINER = "job"
_ARRAY = re.compile(r"^0(-(?P<last>[0-9]+))?(%(?P<parallel>[0-9]+))?$")
_JOB_SET = ("job spec", "CLI override (--set)")  # provenance of values the user wrote for this job
_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def k8s_literal(value: str) -> str:
    """``value`` as Kubernetes must receive it in command, args and env values to pass it on as is.

    Kubernetes expands ``$(NAME)`` there and reduces ``$$`` to ``$`` (EnvVar.value in the API
    reference), so every ``$`` is doubled: ``$(X)`` arrives as ``$(X)``, ``$$`` as ``$$``.
    """
    if "\0" in value:
        raise ConfigError(f"{value!r} contains a NUL byte, which no process argument or variable can carry")
    return value.replace("$", "$$")


def job_name(name: str) -> str:
    """A valid ``metadata.name`` for job name ``name``: the name itself when it is a lower-case RFC 1123
    label of at most 52 characters, else a cleaned prefix and a hash of the original (no two names
    that differ map to the same result by cleaning alone)."""
    if DNS_LABEL.match(name) and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    cleaned = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-")
    cleaned = cleaned[: MAX_NAME - 9].rstrip("-")
    return f"{cleaned or 'hpcjobs'}-{digest}"


def image_reference(job: ResolvedJob) -> str:
    ref = job.image_ref or job.image
    if ref.startswith("docker://") and len(ref) > len("docker://"):
        return ref.removeprefix("docker://")
    kind = "a SIF file" if ref.endswith(".sif") else "a local image (SIF, archive, directory or definition file)"
    raise ConfigError(
        f"image {ref!r} is {kind}; Kubernetes pulls OCI images from a registry: "
        "name it as docker://REGISTRY/REPO[:TAG] (target k8s)"
    )


def _refuse_slurm_only(job: ResolvedJob) -> None:
    if job.multi_task:
        raise ConfigError(
            f"target k8s runs one task per pod; this job asks for nodes={job.nodes}, ntasks={job.ntasks} "
            "(MPI): only a single job becomes an MPIJob (site setting plugins.kubernetes.mpi_operator), "
            "not an array or sweep; run it on Slurm"
        )
    set_by_job = [
        ("extra_sbatch", any(job.source(f"extra_sbatch[{i}]").startswith(_JOB_SET) for i in
                             range(len(job.extra_sbatch)))),
        ("runtime_flags", any(job.source(f"runtime_flags[{i}]") in _JOB_SET for i in range(len(job.runtime_flags)))),
        # core API 1.2: srun/mpirun options; the pods have no Slurm launcher (getattr: older cores have none)
        ("launcher_options", any(job.source(f"launcher_options[{i}]") in _JOB_SET
                                 for i in range(len(getattr(job, "launcher_options", ()))))),
        ("dependency", job.dependency is not None),
        ("wrappers", bool(job.wrappers) and job.source("wrappers") in _JOB_SET),
        ("output", job.source("output") in _JOB_SET),
        ("account", job.account is not None and job.source("account") in _JOB_SET),
        ("qos", job.qos is not None and job.source("qos") in _JOB_SET),
    ]  # fmt: skip
    named = [key for key, is_set in set_by_job if is_set]
    if named:
        raise ConfigError(
            f"target k8s cannot carry {', '.join(named)} (Slurm/Apptainer settings of this job): "
            "remove them to run the job on Kubernetes"
        )


def _array(job: ResolvedJob) -> dict[str, Any]:
    if job.array is None:
        return {"backoffLimit": 0}
    m = _ARRAY.match(job.array)
    if m is None:
        raise ConfigError(
            f"array {job.array!r}: an Indexed Job runs indexes 0 to N-1, so target k8s takes arrays "
            "0-N or 0-N%P only"
        )
    completions = int(m.group("last") or 0) + 1
    parallel = int(m.group("parallel") or completions)
    if parallel < 1:
        raise ConfigError(f"array {job.array!r}: at most 0 tasks at a time runs nothing")
    # each index fails alone, as each Slurm array task does
    return {"completionMode": "Indexed", "completions": completions, "parallelism": min(parallel, completions),
            "backoffLimitPerIndex": 0}  # fmt: skip


def _volume(vm: VolumeMap) -> dict[str, Any]:
    if vm.kind == "hostPath":
        return {"name": vm.name, "hostPath": {"path": vm.node_path or vm.host_path}}
    if vm.kind == "persistentVolumeClaim":
        return {"name": vm.name, "persistentVolumeClaim": {"claimName": vm.claim_name}}
    return {"name": vm.name, "emptyDir": {}}


def _mounts(job: ResolvedJob, settings: KubernetesSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumeMounts, volumes): each bind through the volume mapping its source (longest prefix)."""
    mounts: list[dict[str, Any]] = []
    used: list[VolumeMap] = []
    for b in job.binds:
        src = os.path.normpath(b.src)
        under = [v for v in settings.volumes
                 if src == v.host_path.rstrip("/") or src.startswith(v.host_path.rstrip("/") + "/")]  # fmt: skip
        if not under:
            have = ", ".join(v.host_path for v in settings.volumes) or "none"
            raise ConfigError(
                f"bind {b.spec()} ({job.source('bind:' + b.dst)}): its source is under no volume of the site's "
                f"plugins.kubernetes.volumes (have: {have})"
            )
        vm = max(under, key=lambda v: len(v.host_path.rstrip("/")))
        rel = os.path.relpath(src, vm.host_path) if src != vm.host_path.rstrip("/") else ""
        if rel.startswith(".."):
            raise ConfigError(f"bind source {b.src!r} leaves volume {vm.name!r}")
        mount: dict[str, Any] = {"name": vm.name, "mountPath": b.dst}
        if rel and rel != ".":
            mount["subPath"] = rel
        if b.mode == "ro" or vm.read_only:
            mount["readOnly"] = True
        mounts.append(mount)
        if vm not in used:
            used.append(vm)
    return mounts, [_volume(v) for v in settings.volumes if v in used]


def _resources(job: ResolvedJob, settings: KubernetesSettings) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    if job.cpus_per_task is not None:
        amounts["cpu"] = str(job.cpus_per_task)
    if job.mem_gb is not None:
        amounts["memory"] = f"{round(job.mem_gb * 1024)}Mi"
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = dict(amounts)
    limits = dict(amounts)
    if job.gpus > 0:
        limits[settings.gpu_resource] = job.gpus  # extended resources: limits only (requests default to them)
    if limits:
        out["limits"] = limits
    return out


def _command(job: ResolvedJob) -> dict[str, Any]:
    """Docker's rules, as ``resolve`` applied them: an entrypoint replaces ENTRYPOINT and CMD
    (``command``, the job's command then goes to ``args``); a command alone replaces CMD (``args``)."""
    words = [k8s_literal(w) for w in job.args]
    if job.mode == "exec":
        # without the split (a job not from resolve), all words are the program: the same exec semantics
        split = job.entrypoint_len or len(words)
        out: dict[str, Any] = {"command": words[:split]}
        if words[split:]:
            out["args"] = words[split:]
        return out
    return {"args": words} if words else {}


def manifest(job: ResolvedJob, settings: KubernetesSettings) -> dict[str, Any]:
    """The Job as a mapping (YAML/JSON-ready)."""
    _refuse_slurm_only(job)
    container: dict[str, Any] = {"name": CONTAINER, "image": image_reference(job)}
    container.update(_command(job))
    env: list[dict[str, Any]] = [{"name": k, "value": k8s_literal(v)} for k, v in job.env.items()]
    if job.array is not None and "SLURM_ARRAY_TASK_ID" not in job.env:
        # the program reads its index as on Slurm
        env.append({"name": "SLURM_ARRAY_TASK_ID", "valueFrom": {"fieldRef": {"fieldPath": _INDEX_FIELD}}})
    if env:
        container["env"] = env
    if job.workdir:
        container["workingDir"] = job.workdir
    resources = _resources(job, settings)
    if resources:
        container["resources"] = resources
    mounts, volumes = _mounts(job, settings)
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {"restartPolicy": "Never", "enableServiceLinks": False}  # no service variables added
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    pod["containers"] = [container]
    if volumes:
        pod["volumes"] = volumes
    name = job_name(job.name)
    metadata: dict[str, Any] = {"name": name}
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    metadata["labels"] = {"app.kubernetes.io/managed-by": "hpcjobs"}
    metadata["annotations"] = {"hpcjobs/name": job.name, "hpcjobs/site": job.site, "hpcjobs/partition": job.partition}
    spec: dict[str, Any] = _array(job)
    if job.time_min is not None:
        spec["activeDeadlineSeconds"] = job.time_min * 60
    spec["template"] = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "hpcjobs"}}, "spec": pod}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


class _NoAliases(yaml.SafeDumper):
    """A value shared by two parts of the manifest is written twice: no ``&id001``/``*id001``."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(doc: dict[str, Any]) -> str:
    """ASCII YAML that reads back to ``doc`` exactly (PyYAML quotes what would read as a number or bool)."""
    # allow_unicode would write U+0085 (NEL) raw, which reads back as a line break: escape non-ASCII
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, default_flow_style=False, allow_unicode=False,
                     width=2**30)  # fmt: skip
