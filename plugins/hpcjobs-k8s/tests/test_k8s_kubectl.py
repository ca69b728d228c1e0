"""Submission, status and logs through the Runner seam: kubectl command lines against goldens, a
fake kubectl answering at the seam, and the CLI's --target. No Kubernetes cluster runs in CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hpcjobs_k8s import kubectl
from hpcjobs_k8s.settings import KubernetesSettings
from hpcjobs_k8s.target import KubernetesTarget

from hpcjobs.cli import main_group
from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import HpcjobsError
from hpcjobs.resolve import resolve
from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.spec import JobSpec

HERE = Path(__file__).parent
SITE = str(HERE / "site.yaml")

GOLDEN_ARGV = {
    "check": ["kubectl", "config", "current-context"],
    "submit": ["kubectl", "--namespace=research", "create", "--filename=-", "--output=name"],
    "status": ["kubectl", "--namespace=research", "get", "job/sim", "job/sweep", "--ignore-not-found",
               "--output=json"],
    "logs": ["kubectl", "--namespace=research", "logs", "--selector=job-name=sim", "--all-containers", "--prefix",
             "--tail=-1", "--max-log-requests=100"],
}  # fmt: skip


def settings() -> KubernetesSettings:
    return KubernetesSettings(namespace="research")


def test_command_lines_match_the_goldens() -> None:
    s = settings()
    assert kubectl.check_argv(s) == GOLDEN_ARGV["check"]
    assert kubectl.submit_argv(s) == GOLDEN_ARGV["submit"]
    assert kubectl.status_argv(s, ["sim", "sweep"]) == GOLDEN_ARGV["status"]
    assert kubectl.logs_argv(s, "sim") == GOLDEN_ARGV["logs"]
    ctx = KubernetesSettings(context="lab", kubectl="/opt/k/kubectl")
    assert kubectl.submit_argv(ctx) == ["/opt/k/kubectl", "--context=lab", "create", "--filename=-", "--output=name"]


@pytest.mark.parametrize("job_id", ["sim,x=y", "-l", "Sim", "job/sim", "a b", ""])
def test_job_ids_cannot_widen_a_selector(job_id: str) -> None:
    with pytest.raises(HpcjobsError, match="not a Kubernetes Job name"):
        kubectl.logs_argv(settings(), job_id)
    with pytest.raises(HpcjobsError, match="not a Kubernetes Job name"):
        kubectl.status_argv(settings(), [job_id])


def _job(name: str, status: dict[str, Any], suspend: bool = False) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": name}, "spec": {"suspend": suspend}, "status": status}


@pytest.mark.parametrize(("status", "state", "reason"), [
    ({}, "PENDING", None),
    ({"active": 1}, "RUNNING", None),
    ({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}, "COMPLETED", None),
    ({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}, "FAILED",
     "BackoffLimitExceeded"),
    ({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}, "TIMEOUT",
     "DeadlineExceeded"),
    ({"conditions": [{"type": "Complete", "status": "False"}], "active": 2}, "RUNNING", None),
])  # fmt: skip
def test_status_states(status: dict[str, Any], state: str, reason: str | None) -> None:
    st = kubectl.parse_status(json.dumps(_job("sim", status)), ["sim"])["sim"]
    assert (st.state, st.reason) == (state, reason)


def test_status_of_several_jobs_is_one_query_answered_as_a_list() -> None:
    out = json.dumps({"kind": "List", "items": [_job("a", {"active": 1}), _job("b", {}, suspend=True)]})
    states = kubectl.parse_status(out, ["a", "b", "c"])
    assert [states[j].state for j in "abc"] == ["RUNNING", "SUSPENDED", "UNKNOWN"]
    assert states["c"].reason == "no such Job (deleted, or in another namespace)"
    assert kubectl.parse_status("", ["gone"])["gone"].state == "UNKNOWN"  # kubectl prints nothing then


class FakeKubectl:
    """Answers kubectl at the Runner seam as kubectl 1.33 does (create -o name, get -o json, logs)."""

    def __init__(self, context: bool = True) -> None:
        self.context = context
        self.created: dict[str, dict[str, Any]] = {}

    def __call__(self, call: Call) -> Completed:
        argv = [a for a in call.argv[1:] if not a.startswith(("--namespace=", "--context="))]
        if argv[:2] == ["config", "current-context"]:
            if not self.context:
                return Completed(call.argv, 1, "", "error: current-context is not set\n")
            return Completed(call.argv, 0, "lab\n", "")
        if argv[0] == "create":
            doc = json.loads(call.input_text or "")
            name = doc["metadata"]["name"]
            if name in self.created:
                return Completed(call.argv, 1, "", f'Error from server (AlreadyExists): jobs.batch "{name}" already '
                                 "exists\n")  # fmt: skip
            self.created[name] = doc
            return Completed(call.argv, 0, f"job.batch/{name}\n", "")
        if argv[0] == "get":
            items = [{**self.created[a.split("/", 1)[1]], "status": {"active": 1}} for a in argv[1:-2]]
            out = items[0] if len(items) == 1 else {"kind": "List", "items": items}
            return Completed(call.argv, 0, json.dumps(out), "")
        if argv[0] == "logs":
            return Completed(call.argv, 0, "[pod/sim-abcde/job] hello $(HOME)\n", "")
        raise AssertionError(f"unexpected kubectl call {call.argv}")


def test_submit_status_logs_through_the_runner(k8s_site: SiteConfig) -> None:
    fake = FakeKubectl()
    runner = RecordingRunner(answer=fake)
    job = resolve(JobSpec(image="docker://a:1", name="sim", command=["echo", "$(HOME)"]), k8s_site)
    target = KubernetesTarget()
    text = target.render(job)
    assert target.submit(job, text, runner) == "sim"
    assert runner.argvs() == [tuple(GOLDEN_ARGV["check"]), tuple(GOLDEN_ARGV["submit"])]
    # the rendered manifest's data on stdin, as ASCII JSON
    assert json.loads(runner.calls[1].input_text or "") == yaml.safe_load(text)
    assert (runner.calls[1].input_text or "").isascii()
    assert fake.created["sim"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["echo", "$$(HOME)"]
    # a second submit of the same name is refused by the API, not silently a no-op (kubectl apply would be)
    with pytest.raises(HpcjobsError, match="AlreadyExists"):
        target.submit(job, text, runner)
    assert target.status(["sim"], k8s_site.plugins, runner)["sim"].state == "RUNNING"
    assert target.logs("sim", k8s_site.plugins, runner) == "[pod/sim-abcde/job] hello $(HOME)\n"
    assert runner.argvs()[-1] == tuple(GOLDEN_ARGV["logs"])


def test_submit_without_a_kubeconfig_says_so(k8s_site: SiteConfig) -> None:
    runner = RecordingRunner(answer=FakeKubectl(context=False))
    job = resolve(JobSpec(image="docker://a:1", name="sim"), k8s_site)
    with pytest.raises(HpcjobsError, match=r"is there a kubeconfig\?\) failed \(exit 1\): error: current-context"):
        KubernetesTarget().submit(job, KubernetesTarget().render(job), runner)
    assert len(runner.calls) == 1  # nothing was created


def test_cli_render_target_k8s(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("image: docker://python:3.12\nname: sim\ncommand: [python, -c, 'print(1)']\n")
    r = CliRunner().invoke(main_group, ["render", str(job_file), "--site", SITE, "--target", "k8s"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.output)
    assert (doc["kind"], doc["metadata"]["name"], doc["metadata"]["namespace"]) == ("Job", "sim", "research")
    bad = CliRunner().invoke(main_group, ["render", str(job_file), "--site", SITE, "--target", "nomad"])
    assert bad.exit_code != 0 and "target 'nomad' is not provided by any plugin (have: slurm, k8s" in str(bad.exception)


def test_cli_default_target_is_the_sbatch_script(tmp_path: Path) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text("image: /images/x.sif\nname: sim\ncommand: [a]\n")
    args = ["render", str(job_file), "--site", SITE, "--image-as-written"]
    default = CliRunner().invoke(main_group, args)
    explicit = CliRunner().invoke(main_group, [*args, "--target", "slurm"])
    assert default.exit_code == explicit.exit_code == 0
    assert default.output == explicit.output and default.output.startswith("#!/bin/bash")


def test_cli_submit_status_logs_target_k8s(tmp_path: Path, k8s_site: SiteConfig,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKubectl()
    runner = RecordingRunner(answer=fake)
    monkeypatch.setattr("hpcjobs.cli._target_runner", lambda: runner)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("image: docker://python:3.12\nname: sim\ncommand: [python]\n")
    r = CliRunner().invoke(main_group, ["submit", str(job_file), "--site", SITE, "--target", "k8s"])
    assert (r.exit_code, r.output) == (0, "sim\n")
    r = CliRunner().invoke(main_group, ["status", "sim", "--site", SITE, "--target", "k8s", "--json"])
    assert json.loads(r.output)[0]["state"] == "RUNNING"
    r = CliRunner().invoke(main_group, ["logs", "sim", "--site", SITE, "--target", "k8s"])
    assert r.output == "[pod/sim-abcde/job] hello $(HOME)\n"
    r = CliRunner().invoke(main_group, ["submit", str(job_file), "--site", SITE, "--target", "k8s", "--wait"])
    assert r.exit_code != 0 and "--wait works with target slurm only" in str(r.exception)
