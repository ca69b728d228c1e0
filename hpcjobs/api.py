"""The Python API: ``ContainerJob`` (a job spec that can render and submit itself) and ``Job``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcjobs.spec import JobSpec

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.plugin_api import LaunchPlan, ResolvedJob
    from hpcjobs.runner import Runner
    from hpcjobs.schedulers.base import JobStatus, Scheduler
    from hpcjobs.sweep.handle import Sweep



def load_site_arg(site: SiteConfig | str | os.PathLike[str] | None) -> SiteConfig:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.config.sources import load_site

    if isinstance(site, SiteConfig):
        return site
    return load_site(site)


class ContainerJob(JobSpec):
    """A container workload. Unset fields come from the site's partition profile.

    >>> job = ContainerJob(image="docker://python:3.12", command=["python", "-c", "print(1)"], gpus=1)
    >>> job.submit().wait()                                             # doctest: +SKIP
    """

    def resolve(
        self, site: SiteConfig | str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> ResolvedJob:
        from hpcjobs.resolve import resolve

        return resolve(self, load_site_arg(site), overrides)

    def render(
        self,
        site: SiteConfig | str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        explain: bool = False,
        cwd: str | os.PathLike[str] | None = None,
    ) -> str:
        """The sbatch script, as it would be submitted (image references are not converted here).
        ``cwd``: where it would be submitted from (default: here), for --explain's "Where output goes"."""
        from hpcjobs.render import render

        job_dir = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
        return render(self.resolve(site, overrides), explain=explain, job_dir=job_dir if explain else None)

    def submit(
        self,
        site: SiteConfig | str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        scheduler: Scheduler | None = None,
        runner: Runner | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Job:
        """resolve → host checks → image preparation → render → submit (the only I/O step)."""
        from hpcjobs.render import render
        from hpcjobs.schedulers import get_scheduler

        sched = scheduler or get_scheduler(runner)
        job_dir = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
        job = prepare(self, load_site_arg(site), overrides, runner=runner, scheduler=sched, job_dir=job_dir)
        from hpcjobs.launchers.binding import warn_binding

        warn_binding(job, sched, runner)
        job_id = sched.submit(render(job), cwd=job_dir)
        return Job(job_id, sched)

    def map(
        self,
        points: Iterable[Any],
        site: SiteConfig | str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        scheduler: Scheduler | None = None,
        runner: Runner | None = None,
        cwd: str | os.PathLike[str] | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> Sweep:
        """Submit one task per point, as few job arrays as the cluster's limits allow.

        A point is a list of arguments (appended to the command) or ``{"args": [...], "env": {...}}``;
        :func:`hpcjobs.grid` makes the product of value lists. The points are written to
        ``directory`` (default ``CWD/hpcjobs-sweeps/ID``), read there by each task, and arrive
        byte-for-byte. The image is prepared once for all points.

        >>> sweep = job.map(grid(args={"--lr": [0.1, 0.01], "--depth": [2, 4]}))   # doctest: +SKIP
        >>> sweep.wait().failed()                                                   # doctest: +SKIP
        """
        from hpcjobs.sweep.submit import submit_sweep

        return submit_sweep(self, points, load_site_arg(site), overrides, scheduler=scheduler, runner=runner,
                            cwd=cwd, directory=directory, prepare=prepare)  # fmt: skip


def prepare(
    spec: JobSpec,
    site: SiteConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    runner: Runner | None = None,
    scheduler: Scheduler | None = None,
    job_dir: str | None = None,
) -> ResolvedJob:
    """resolve → host checks → image preparation (the runtime plugin's): everything before render.
    ``job_dir``: where the job will start (checked by :func:`hpcjobs.outputs.check_job_dir`)."""
    from hpcjobs.mpi.check import preflight
    from hpcjobs.preflight import check_bind_realpaths, check_bind_sources
    from hpcjobs.resolve import resolve

    job = resolve(spec, site, overrides)
    if job_dir is not None:
        from hpcjobs.outputs import check_job_dir

        check_job_dir(job, job_dir, os.path.isdir)
    check_bind_sources(job)
    check_bind_realpaths(job, site.policy)
    job = prepare_image(job, site, runner=runner, scheduler=scheduler)
    return preflight(job, site, runner)


def prepare_image(
    job: ResolvedJob,
    site: SiteConfig,
    *,
    runner: Runner | None = None,
    scheduler: Scheduler | None = None,
    pin: bool = False,
    cache_dir: str | None = None,
) -> ResolvedJob:
    """The job's runtime plugin prepares its image; a conversion job goes to ``scheduler`` (default:
    the configured one). ``pin``: only name the image, with no side effects (for render)."""
    from hpcjobs.plugin_api import ImageContext
    from hpcjobs.plugins import get_runtime

    submitter = None if pin else SchedulerSubmitter(scheduler, runner)
    ctx = ImageContext(site=site, runner=runner, submitter=submitter, pin=pin, cache_dir=cache_dir)
    return get_runtime(job.runtime).prepare_image(job, ctx)


class SchedulerSubmitter:
    """A :class:`~hpcjobs.plugin_api.PlanSubmitter` over a scheduler: renders a plan, submits it.
    With no scheduler given, the configured one is looked up when a plan is first submitted."""

    def __init__(self, scheduler: Scheduler | None, runner: Runner | None = None) -> None:
        self._scheduler, self._runner = scheduler, runner

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            from hpcjobs.schedulers import get_scheduler

            self._scheduler = get_scheduler(self._runner)
        return self._scheduler

    def submit_plan(self, plan: LaunchPlan, *, cwd: str | None = None) -> str:
        from hpcjobs.render import render_plan

        return self.scheduler.submit(render_plan(plan), cwd=cwd)

    def is_active(self, job_id: str) -> bool:
        st = self.scheduler.status([job_id]).get(job_id)
        state = getattr(st, "state", None)
        return bool(state is not None and getattr(state, "is_active", False))


def plan_submitter(scheduler: Scheduler | None = None, runner: Runner | None = None) -> SchedulerSubmitter:
    """What image preparation submits its conversion job through (default: the configured scheduler)."""
    return SchedulerSubmitter(scheduler, runner)


@dataclass
class Job:
    """A submitted job."""

    job_id: str
    scheduler: Scheduler

    def status(self) -> JobStatus:
        return self.scheduler.status([self.job_id])[self.job_id]

    def wait(self, *, poll_s: float = 1.0, timeout_s: float | None = None) -> JobStatus:
        return self.scheduler.wait([self.job_id], poll_s=poll_s, timeout_s=timeout_s)[self.job_id]

    def cancel(self) -> None:
        self.scheduler.cancel([self.job_id])

    def log_path(self) -> str | None:
        return self.scheduler.log_path(self.job_id)

    def logs(self) -> str:
        from hpcjobs.errors import HpcjobsError

        path = self.log_path()
        if path is None:
            raise HpcjobsError(f"job {self.job_id}: Slurm no longer reports its output file")
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise HpcjobsError(f"job {self.job_id}: output file {path} does not exist (yet)") from None
