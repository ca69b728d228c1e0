"""The ``k8s`` target: render a Job manifest, submit it with kubectl, read state and logs back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpcjobs.errors import HpcjobsError
from hpcjobs_k8s.settings import settings_of

if TYPE_CHECKING:
    from hpcjobs.plugin_api import ResolvedJob, SweepPoint, TargetStatus

# The manifest, sweep and kubectl modules are imported by the methods that use them: hpcjobs loads
# every plugin on each render and submit, most of which never use the k8s target.

__all__ = ["KubernetesTarget"]


def _run(runner: Any, argv: Sequence[str], what: str, input_text: str | None = None) -> str:
    done = runner(list(argv), input_text=input_text)
    if not done.ok:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise HpcjobsError(f"{what} failed (exit {done.returncode}): {detail[-1] if detail else 'no output'}")
    return str(done.stdout)


class KubernetesTarget:
    name = "k8s"

    def render(self, job: ResolvedJob) -> str:
        from hpcjobs_k8s.manifest import manifest, to_yaml
        from hpcjobs_k8s.mpijob import mpijob_manifest

        settings = settings_of(job.plugin_settings)
        return to_yaml(mpijob_manifest(job, settings) if job.multi_task else manifest(job, settings))

    def render_sweep(self, job: ResolvedJob, points: Sequence[SweepPoint]) -> str:
        from hpcjobs.sweep.points import Point
        from hpcjobs_k8s.manifest import to_yaml
        from hpcjobs_k8s.sweep import sweep_manifest

        own = [p if isinstance(p, Point) else Point(tuple(p.args), dict(p.env)) for p in points]
        return to_yaml(sweep_manifest(job, settings_of(job.plugin_settings), own))

    def submit(self, job: ResolvedJob, text: str, runner: Any) -> str:
        import json

        import yaml

        from hpcjobs_k8s import kubectl

        settings = settings_of(job.plugin_settings)
        # the rendered manifest's data, sent as ASCII JSON: no YAML 1.1/1.2 reading differences
        # between PyYAML and kubectl's parser can change a value on the way
        payload = json.dumps(yaml.safe_load(text))
        _run(runner, kubectl.check_argv(settings), "kubectl config current-context (is there a kubeconfig?)")
        out = _run(runner, kubectl.submit_argv(settings), "kubectl create", input_text=payload)
        return kubectl.parse_submit(out)

    def status(
        self, job_ids: Sequence[str], settings: Mapping[str, Mapping[str, Any]], runner: Any
    ) -> Mapping[str, TargetStatus]:
        from hpcjobs_k8s import kubectl

        ids = list(job_ids)
        out = _run(runner, kubectl.status_argv(settings_of(settings), ids), "kubectl get")
        return kubectl.parse_status(out, ids)

    def logs(self, job_id: str, settings: Mapping[str, Mapping[str, Any]], runner: Any) -> str:
        from hpcjobs_k8s import kubectl

        return _run(runner, kubectl.logs_argv(settings_of(settings), job_id), "kubectl logs")
