"""A multi-task job as an ``MPIJob`` of the Kubeflow MPI operator (``kubeflow.org/v2beta1``). Pure.

One Launcher pod runs ``mpirun -n NTASKS`` with the job's program; ``nodes`` Worker pods (each with
``ntasks / nodes`` slots, the job's per-node GPUs, memory and binds) run the site's worker command,
sshd by default, which mpirun reaches them through. The ranks start in ssh sessions, which do not
inherit the worker container's environment, so the job's env is set on the launcher and forwarded
by name (``-x NAME``; ``-genvlist`` for Intel MPI and MPICH).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from hpcjobs.errors import ConfigError
from hpcjobs.plugin_api import ResolvedJob
from hpcjobs_k8s.manifest import k8s_literal, manifest
from hpcjobs_k8s.settings import KubernetesSettings

__all__ = ["mpijob_manifest"]

LABELS = {"app.kubernetes.io/managed-by": "hpcjobs"}


def _env_flags(names: list[str], implementation: str) -> list[str]:
    if not names:
        return []
    if implementation == "OpenMPI":
        return [w for n in names for w in ("-x", n)]
    return ["-genvlist", ",".join(names)]


def mpijob_manifest(job: ResolvedJob, settings: KubernetesSettings) -> dict[str, Any]:
    if settings.mpi_operator is None:
        raise ConfigError(
            f"target k8s runs one task per pod; this job asks for nodes={job.nodes}, ntasks={job.ntasks} "
            "(MPI) and the site names no MPI operator (plugins.kubernetes.mpi_operator: kubeflow.org/v2beta1 "
            "makes it a Kubeflow MPIJob): run it on Slurm, or ask the site to name one"
        )
    if job.ntasks % job.nodes:
        raise ConfigError(
            f"an MPIJob gives every worker the same number of slots: ntasks={job.ntasks} is not a multiple of "
            f"nodes={job.nodes} (target k8s)"
        )
    if job.array is not None:
        raise ConfigError(f"target k8s: an MPIJob has no array indexes; remove array {job.array!r}")
    if job.mode != "exec":
        raise ConfigError(
            "target k8s: the MPIJob launcher runs mpirun, which replaces the image ENTRYPOINT: set the job's "
            "entrypoint (the program mpirun starts)"
        )
    slots = job.ntasks // job.nodes
    # the worker pod is the single-task pod of the same job (image, resources, binds, settings checks)
    single = manifest(dataclasses.replace(job, nodes=1, ntasks=1), settings)
    pod = single["spec"]["template"]["spec"]
    (job_container,) = pod["containers"]
    del job_container["name"]
    program: list[str] = job_container.pop("command") + job_container.pop("args", [])
    env: list[dict[str, Any]] = job_container.pop("env", [])
    workdir = job_container.pop("workingDir", None)
    worker = {"name": "worker", "image": job_container.pop("image"),
              "command": [k8s_literal(w) for w in settings.mpi_worker_command]}  # fmt: skip
    worker.update(job_container)
    resources = worker.get("resources", {})
    if job.cpus_per_task is not None:
        for part in ("requests", "limits"):
            resources[part]["cpu"] = str(job.cpus_per_task * slots)  # every slot's CPUs, as --cpus-per-task per task
    launcher_cmd = ["mpirun", "-n", str(job.ntasks),
                    *_env_flags([e["name"] for e in env], settings.mpi_implementation),
                    *(["-wdir", k8s_literal(workdir)] if workdir else []), *program]  # fmt: skip
    launcher: dict[str, Any] = {"name": "launcher", "image": worker["image"], "command": launcher_cmd}
    if env:
        launcher["env"] = env
    launcher_pod = copy.deepcopy({k: v for k, v in pod.items() if k not in ("containers", "volumes")})
    launcher_pod["containers"] = [launcher]
    worker_pod = {**{k: v for k, v in pod.items() if k != "volumes"}, "containers": [worker]}
    if "volumes" in pod:
        worker_pod["volumes"] = pod["volumes"]
    run_policy: dict[str, Any] = {"cleanPodPolicy": "Running", "backoffLimit": 0}
    if "activeDeadlineSeconds" in single["spec"]:
        run_policy["activeDeadlineSeconds"] = single["spec"]["activeDeadlineSeconds"]
    spec = {
        "slotsPerWorker": slots,
        "mpiImplementation": settings.mpi_implementation,
        "runPolicy": run_policy,
        "mpiReplicaSpecs": {
            "Launcher": {"replicas": 1, "restartPolicy": "Never",
                         "template": {"metadata": {"labels": dict(LABELS)}, "spec": launcher_pod}},
            "Worker": {"replicas": job.nodes, "restartPolicy": "Never",
                       "template": {"metadata": {"labels": dict(LABELS)}, "spec": worker_pod}},
        },
    }  # fmt: skip
    return {"apiVersion": settings.mpi_operator, "kind": "MPIJob", "metadata": single["metadata"], "spec": spec}
