"""kubectl command lines and the parsing of their answers. Builds argv lists only; the caller runs
them through hpcjobs' Runner (the one I/O seam)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hpcjobs.errors import HpcjobsError
from hpcjobs.plugin_api import TargetStatus
from hpcjobs_k8s.settings import DNS_LABEL, KubernetesSettings

__all__ = ["check_argv", "check_job_id", "logs_argv", "parse_status", "parse_submit", "status_argv", "submit_argv"]

# kubectl logs with a selector stops at 5 pods and prints 10 lines each unless told otherwise
MAX_LOG_PODS = 100


def _base(settings: KubernetesSettings) -> list[str]:
    argv = [settings.kubectl]
    if settings.context:
        argv.append(f"--context={settings.context}")
    if settings.namespace:
        argv.append(f"--namespace={settings.namespace}")
    return argv


MPIJOB = "mpijob/"  # the id prefix of an MPIJob (a plain name is a batch/v1 Job)
_MPIJOB_RESOURCE = "mpijob.kubeflow.org"


def check_job_id(job_id: str) -> str:
    """A job id is the Job's metadata.name (``mpijob/NAME`` for an MPIJob); anything else could widen a
    selector."""
    if not DNS_LABEL.match(job_id.removeprefix(MPIJOB)):
        raise HpcjobsError(f"{job_id!r} is not a Kubernetes Job name (target k8s job ids are RFC 1123 labels, "
                           "mpijob/NAME for an MPIJob)")  # fmt: skip
    return job_id


def _resource(job_id: str) -> str:
    check_job_id(job_id)
    if job_id.startswith(MPIJOB):
        return f"{_MPIJOB_RESOURCE}/{job_id.removeprefix(MPIJOB)}"
    return f"job/{job_id}"


def check_argv(settings: KubernetesSettings) -> list[str]:
    """Fails without a kubeconfig context (and without kubectl)."""
    argv = [settings.kubectl]
    if settings.context:
        argv.append(f"--context={settings.context}")
    return [*argv, "config", "current-context"]


def submit_argv(settings: KubernetesSettings) -> list[str]:
    """The manifest goes on stdin. ``create``, not ``apply``: applying an unchanged Job again would
    report success and run nothing; create refuses a name that exists."""
    return [*_base(settings), "create", "--filename=-", "--output=name"]


def parse_submit(stdout: str) -> str:
    """``job.batch/NAME`` → NAME, ``mpijob.kubeflow.org/NAME`` → mpijob/NAME; a sweep's List also prints
    ``configmap/NAME-points`` first."""
    lines = [ln.strip().partition("/") for ln in stdout.strip().splitlines()]
    jobs = [name for kind, _, name in lines if kind in ("job", "job.batch")]
    jobs += [MPIJOB + name for kind, _, name in lines if kind == _MPIJOB_RESOURCE]
    others = [kind for kind, _, _ in lines if kind not in ("job", "job.batch", "configmap", _MPIJOB_RESOURCE)]
    if len(jobs) != 1 or others or not DNS_LABEL.match(jobs[0].removeprefix(MPIJOB)):
        raise HpcjobsError(f"kubectl create answered {stdout.strip()!r}, not job.batch/NAME")
    return jobs[0]


def status_argv(settings: KubernetesSettings, job_ids: Sequence[str]) -> list[str]:
    names = [_resource(j) for j in job_ids]
    return [*_base(settings), "get", *names, "--ignore-not-found", "--output=json"]


def _mpijob_state(name: str, job: Mapping[str, Any]) -> TargetStatus:
    """The operator's conditions (Created, Running, Restarting, Succeeded, Suspended, Failed): several
    can be True at once, the end states win."""
    true = {c.get("type"): c for c in (job.get("status", {}) or {}).get("conditions", []) or []
            if c.get("status") == "True"}  # fmt: skip
    if "Succeeded" in true:
        return TargetStatus(name, "COMPLETED", 0)
    if "Failed" in true:
        reason = true["Failed"].get("reason")
        return TargetStatus(name, "TIMEOUT" if reason == "DeadlineExceeded" else "FAILED", None, reason)
    if "Suspended" in true:
        return TargetStatus(name, "SUSPENDED", None, true["Suspended"].get("reason"))
    return TargetStatus(name, "RUNNING" if "Running" in true else "PENDING")


def _state(job: Mapping[str, Any]) -> TargetStatus:
    name = str(job.get("metadata", {}).get("name", ""))
    if job.get("kind") == "MPIJob":
        return _mpijob_state(MPIJOB + name, job)
    status = job.get("status", {}) or {}
    spec = job.get("spec", {}) or {}
    for cond in status.get("conditions", []) or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return TargetStatus(name, "COMPLETED", 0)
        if cond.get("type") == "Failed":
            reason = cond.get("reason")
            return TargetStatus(name, "TIMEOUT" if reason == "DeadlineExceeded" else "FAILED", None, reason)
        if cond.get("type") == "Suspended":
            return TargetStatus(name, "SUSPENDED", None, cond.get("reason"))
    if status.get("active") or status.get("succeeded") or status.get("failed"):
        return TargetStatus(name, "RUNNING")
    if spec.get("suspend"):
        return TargetStatus(name, "SUSPENDED")
    return TargetStatus(name, "PENDING")


def parse_status(stdout: str, job_ids: Sequence[str]) -> dict[str, TargetStatus]:
    """``kubectl get -o json`` (one Job, or a List) → a status for each id asked for."""
    if not stdout.strip():  # --ignore-not-found and none of them exists
        stdout = '{"kind": "List", "items": []}'
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise HpcjobsError(f"kubectl get answered no JSON ({exc})") from None
    items = doc.get("items", []) if doc.get("kind") == "List" else [doc]
    found = {st.job_id: st for st in (_state(i) for i in items)}
    missing = "no such Job (deleted, or in another namespace)"
    return {j: found.get(j, TargetStatus(j, "UNKNOWN", None, missing)) for j in job_ids}


def logs_argv(settings: KubernetesSettings, job_id: str) -> list[str]:
    """Every pod of the Job (an Indexed Job has one per index), each line prefixed with its pod; of an
    MPIJob, the launcher's."""
    check_job_id(job_id)
    if job_id.startswith(MPIJOB):  # mpirun on the launcher prints every rank's output
        selector = (f"training.kubeflow.org/job-name={job_id.removeprefix(MPIJOB)},"
                    "training.kubeflow.org/job-role=launcher")  # fmt: skip
    else:
        selector = f"job-name={job_id}"
    return [*_base(settings), "logs", f"--selector={selector}", "--all-containers",
            "--prefix", "--tail=-1", f"--max-log-requests={MAX_LOG_PODS}"]  # fmt: skip
