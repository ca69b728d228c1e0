"""Submitting a sweep: check the limits and the points, prepare the image once, render, then
submit one script per job array, up to two ``sbatch`` at once, each array's points written while
the ``sbatch`` calls before it run. Nothing is submitted when a check fails; when Slurm refuses an
array part-way, every array submitted is cancelled again."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcjobs.errors import ConfigError
from hpcjobs.sweep.arrays import array_limits, array_scripts, job_records_start, submit_arrays
from hpcjobs.sweep.envcarry import env_carrier, plain_prefix
from hpcjobs.sweep.plan import check_room, plan_arrays
from hpcjobs.sweep.pointfile import PointWriter, encode_plain_group, encode_points, group_of, plain_ok
from hpcjobs.sweep.points import to_points
from hpcjobs.sweep.record import SweepRecord, new_id

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.plugin_api import ResolvedJob
    from hpcjobs.runner import Runner
    from hpcjobs.schedulers.base import Scheduler
    from hpcjobs.spec import JobSpec
    from hpcjobs.sweep.handle import Sweep

    Prepare = Callable[..., ResolvedJob]

SWEEP_DIRS = "hpcjobs-sweeps"
# job fields a sweep decides itself
OWN_FIELDS = {
    "array": "a sweep makes its own job arrays from its points",
    "output": "a sweep writes one log per point (DIR/logs/point-N.out)",
}


def refuse_own_fields(spec: JobSpec) -> None:
    for key, why in OWN_FIELDS.items():
        if getattr(spec, key) is not None:
            raise ConfigError(f"{key}: {why}; remove {key} from the job (or --set)")


def submit_sweep(
    spec: JobSpec,
    points: Iterable[Any],
    site: SiteConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    scheduler: Scheduler | None = None,
    runner: Runner | None = None,
    cwd: str | os.PathLike[str] | None = None,
    directory: str | os.PathLike[str] | None = None,
    prepare: Prepare,
) -> Sweep:
    """``prepare`` is :func:`hpcjobs.api.prepare` (resolve, host checks, the image), passed in so that
    the sweep package does not import the API that offers it."""
    from hpcjobs.resolve import apply_overrides, resolve
    from hpcjobs.schedulers import get_scheduler
    from hpcjobs.sweep.handle import Sweep

    merged, _ = apply_overrides(spec, overrides or {})
    refuse_own_fields(merged)
    resolved = resolve(spec, site, overrides)  # refuses bad jobs before asking Slurm anything
    where = sweep_dirs(resolved.name, cwd, directory)  # refuses directories Slurm cannot carry
    sched = scheduler or get_scheduler(runner)
    # The job-record count (one squeue, 10-100 ms: more on a busy login node) is begun first and
    # runs beside everything that needs neither Slurm nor a file: the points checked (not yet
    # encoded), arrays planned, the image prepared, the record and every script made in memory.
    # Its "not now" refusal is made before any file is written or anything submitted; then the
    # points are encoded and written array by array, each array's beside the sbatch calls before it.
    counting = job_records_start(sched, runner)
    try:
        limits = array_limits(sched, runner, resolved.qos)  # slurm.conf's: kept per configuration key
        raw = points if type(points) is list else list(points)
        prefix = plain_prefix(resolved)
        encode: Callable[[int], bytes]
        if prefix is not None and plain_ok(raw, prefix):  # the common points: checked, encoded later
            encode = partial(encode_plain_group, raw, prefix=prefix)
        else:  # checks each value; refuses what cannot travel unchanged, saying why
            encode = encode_points(to_points(raw), env_carrier(resolved)).__getitem__
        n_points = len(raw)
        plans = plan_arrays(range(n_points), limits, contiguous=True)  # refuses what can never fit
        job = prepare(spec, site, overrides, runner=runner, scheduler=sched)  # the one image preparation
        record = new_record(merged, site, job, n_points, where)
        scripts = array_scripts(record, job, plans, attempt=0)
        # the first array's points encoded in memory too: written once the count has answered
        early = {k: encode(k) for k in range(group_of(plans[0].point_of(plans[0].count - 1)) + 1)}
    except BaseException:
        counting.discard()
        raise
    check_room(n_points, replace(limits, jobs_now=counting.result()))
    from hpcjobs.launchers.binding import warn_binding

    warn_binding(job, sched, runner)  # srun binding on a cluster that cannot bind: say so, once

    (record.directory / "logs").mkdir(parents=True, exist_ok=True)
    writer = PointWriter(record.directory, n_points, lambda k: early.pop(k) if k in early else encode(k))
    record.arrays = submit_arrays(record, job, plans, attempt=0, scheduler=sched, scripts=scripts, points=writer)
    record.save()
    record.register()
    return Sweep(record, sched)


@dataclass(frozen=True)
class SweepDirs:
    """Where a new sweep's tasks start (``workdir``: sbatch --chdir) and keeps its files (``base``)."""

    workdir: str
    sweep_id: str
    base: Path


def sweep_dirs(name: str, cwd: str | os.PathLike[str] | None, directory: str | os.PathLike[str] | None) -> SweepDirs:
    """The directories of a new sweep of job ``name``. Refuses, as a single job's are refused
    (:func:`hpcjobs.outputs.check_job_dir`), a job directory with a control character: Slurm's
    records (squeue, scontrol, sacct) print it raw, and a newline splits the task's row; and a
    sweep directory that cannot be written into ``#SBATCH --output`` or already holds a sweep.
    (The sweep's Slurm log is absolute, so a ``%`` or ``\\`` in the job directory alone is
    harmless, as for a single job with an absolute log.)"""
    from hpcjobs.directives import uncarriable

    workdir = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
    why = uncarriable(workdir)
    if why is not None:
        raise ConfigError(f"the job directory {workdir!r} {why}, which Slurm's job records (squeue, scontrol) "
                          "print raw, so the sweep's tasks could not be followed: submit from another "
                          "directory")  # fmt: skip
    sweep_id = new_id(name)
    base = Path(directory) if directory is not None else Path(workdir) / SWEEP_DIRS / sweep_id
    base = Path(os.path.abspath(base))
    text = str(base)
    bad = [c for c in ('"', "%", "\\") if c in text]
    why = uncarriable(text)
    if why is not None:
        # the directory is written into #SBATCH --output, where these would change its meaning
        raise ConfigError(f"sweep directory {text!r} {why}: choose another directory")
    if bad:
        raise ConfigError(f"sweep directory {text!r} may not contain {bad[0]!r}: choose another directory")
    if (base / "sweep.json").exists():
        raise ConfigError(f"{base} already holds a sweep: choose another directory")
    return SweepDirs(workdir, sweep_id, base)


def new_record(merged: JobSpec, site: SiteConfig, job: ResolvedJob, n_points: int, where: SweepDirs) -> SweepRecord:
    """The record of a new sweep, in memory (its arrays still to come)."""
    return SweepRecord(
        id=where.sweep_id, directory=where.base, n_points=n_points,
        job=merged.model_dump(mode="json", exclude_unset=True), site=site.model_dump(mode="json", exclude_unset=True),
        image={"path": job.image, "ref": job.image_ref, "digest": job.image_digest},
        cwd=where.workdir, throttle=job.array_throttle, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )  # fmt: skip
