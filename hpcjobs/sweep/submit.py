"""Submitting a sweep: check the limits, prepare the image once, write the points, render and
submit one script per job array. Nothing is submitted when a check fails; when Slurm refuses an
array part-way, the arrays already submitted are cancelled again."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcjobs.errors import ConfigError
from hpcjobs.sweep.arrays import array_limits, job_records, submit_arrays
from hpcjobs.sweep.envcarry import env_carrier, plain_prefix
from hpcjobs.sweep.plan import check_room, plan_arrays
from hpcjobs.sweep.pointfile import encode_plain, encode_points, write_points
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
    sched = scheduler or get_scheduler(runner)
    # counting the controller's job records (one squeue, 20-50 ms) runs while everything up to the
    # first sbatch is done here; it is awaited, and its "not now" refusal made, before any file is
    # written or anything submitted
    with ThreadPoolExecutor(max_workers=1) as pool:
        counted = pool.submit(job_records, sched, runner)
        try:
            limits = array_limits(sched, runner, resolved.qos)  # slurm.conf's: kept per configuration key
            raw = points if type(points) is list else list(points)
            groups = encode_plain(raw, plain_prefix(resolved))  # the common points, checked per group
            if groups is None:  # checks each value; refuses what cannot travel unchanged, saying why
                groups = encode_points(to_points(raw), env_carrier(resolved))
            n_points = len(raw)
            plans = plan_arrays(range(n_points), limits, contiguous=True)  # refuses what can never fit
            job = prepare(spec, site, overrides, runner=runner, scheduler=sched)  # the one image preparation
        except BaseException:
            counted.cancel()
            raise
        check_room(n_points, replace(limits, jobs_now=counted.result()))
    from hpcjobs.launchers.binding import warn_binding

    warn_binding(job, sched, runner)  # srun binding on a cluster that cannot bind: say so, once

    workdir = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
    sweep_id = new_id(job.name)
    base = Path(directory) if directory is not None else Path(workdir) / SWEEP_DIRS / sweep_id
    base = Path(os.path.abspath(base))
    bad = [c for c in ('"', "\n", "%", "\\") if c in str(base)]
    if bad:
        # the directory is written into #SBATCH --output, where these would change its meaning
        raise ConfigError(f"sweep directory {str(base)!r} may not contain {bad[0]!r}: choose another directory")
    if (base / "sweep.json").exists():
        raise ConfigError(f"{base} already holds a sweep: choose another directory")
    (base / "logs").mkdir(parents=True, exist_ok=True)
    write_points(base, groups)
    record = SweepRecord(
        id=sweep_id, directory=base, n_points=n_points,
        job=merged.model_dump(mode="json", exclude_unset=True), site=site.model_dump(mode="json", exclude_unset=True),
        image={"path": job.image, "ref": job.image_ref, "digest": job.image_digest},
        cwd=workdir, throttle=job.array_throttle, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )  # fmt: skip
    record.arrays = submit_arrays(record, job, plans, attempt=0, scheduler=sched)
    record.save()
    record.register()
    return Sweep(record, sched)
