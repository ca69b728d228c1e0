"""The pre-flight for one job, before it is submitted: gather both sides, decide, act.

Multi-task jobs only (a single task needs no wiring up). ``mpi_check`` (job field, or the
partition's/site's ``mpi.check``) says what a refusal does: ``refuse`` (default) raises
:class:`MpiMismatch`, ``warn`` logs it and submits, ``off`` skips the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from hpcjobs.errors import HpcjobsError
from hpcjobs.log import get_logger
from hpcjobs.mpi.verdict import Verdict, decide, launch_of

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.plugin_api import ResolvedJob
    from hpcjobs.runner import Runner

log = get_logger("hpcjobs.mpi")


class MpiMismatch(HpcjobsError):
    """The image's MPI cannot be wired up by the launch the job asks for."""


def verdict_for(
    job: ResolvedJob,
    site: SiteConfig,
    runner: Runner | None = None,
    *,
    cache_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Verdict | None:
    """The verdict for ``job`` (None: not checked: one task, ``mpi_check: off`` or a plugin's launcher)."""
    launch = launch_of(job.mpi)
    if not job.multi_task or job.mpi_check == "off" or launch is None:
        return None
    from hpcjobs.mpi.host import mpirun_info, srun_offer
    from hpcjobs.mpi.record import image_mpi

    image = image_mpi(job, site, runner, cache_dir=cache_dir, env=env)
    host = mpirun_info(job.mpirun, runner, env) if launch == "mpirun" else srun_offer(runner, env)
    return decide(launch, image, host, job.ntasks)


def preflight(
    job: ResolvedJob,
    site: SiteConfig,
    runner: Runner | None = None,
    *,
    cache_dir: str | None = None,
    refuse: bool = True,
) -> ResolvedJob:
    """``job`` with the verdict in its header notes; a refusal raises (``refuse``) unless ``mpi_check: warn``."""
    if job.multi_task and job.mpi_check == "off":
        return replace(job, preflight=(*job.preflight, f"MPI check: off (mpi_check: {job.source('mpi_check')})"))
    verdict = verdict_for(job, site, runner, cache_dir=cache_dir)
    if verdict is None:
        return job
    src = job.source("mpi_check")
    if verdict.level == "refuse" and refuse and job.mpi_check != "warn":
        raise MpiMismatch(f"{verdict.line} (checked before submitting; to submit anyway: mpi_check: warn)")
    note = verdict.note()
    if verdict.level == "refuse":
        what = "submitted anyway" if job.mpi_check == "warn" else "submit refuses this job"
        note += f" (mpi_check: {job.mpi_check} from {src}: {what})"
    if verdict.level != "ok" and refuse:
        log.warning("mpi.check", verdict=verdict.level, line=verdict.line)
    return replace(job, preflight=(*job.preflight, note))
