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


def check_job_id(job_id: str) -> str:
    """A job id is the Job's metadata.name; anything else could widen a selector."""
    if not DNS_LABEL.match(job_id):
        raise HpcjobsError(f"{job_id!r} is not a Kubernetes Job name (target k8s job ids are RFC 1123 labels)")
    return job_id


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
    """``job.batch/NAME`` → NAME."""
    kind, sep, name = stdout.strip().partition("/")
    if not sep or not kind.startswith("job") or not DNS_LABEL.match(name):
        raise HpcjobsError(f"kubectl create answered {stdout.strip()!r}, not job.batch/NAME")
    return name


def status_argv(settings: KubernetesSettings, job_ids: Sequence[str]) -> list[str]:
    names = [f"job/{check_job_id(j)}" for j in job_ids]
    return [*_base(settings), "get", *names, "--ignore-not-found", "--output=json"]


def _state(job: Mapping[str, Any]) -> TargetStatus:
    name = str(job.get("metadata", {}).get("name", ""))
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
    """Every pod of the Job (an Indexed Job has one per index), each line prefixed with its pod."""
    return [*_base(settings), "logs", f"--selector=job-name={check_job_id(job_id)}", "--all-containers",
            "--prefix", "--tail=-1", f"--max-log-requests={MAX_LOG_PODS}"]  # fmt: skip
