"""Submitting a sweep: check the limits, prepare the image once, write the points, render and
submit one script per job array. Nothing is submitted when a check fails; when Slurm refuses an
array part-way, the arrays already submitted are cancelled again."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcjobs.errors import ConfigError, HpcjobsError
from hpcjobs.sweep.plan import ArrayPlan, plan_arrays
from hpcjobs.sweep.pointfile import encode_points, write_points
from hpcjobs.sweep.points import Point, to_points
from hpcjobs.sweep.record import ArrayEntry, SweepRecord, new_id
from hpcjobs.sweep.script import ARGS_WORD, task_lines

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.resolve import ResolvedJob
    from hpcjobs.runner import Runner
    from hpcjobs.schedulers.base import ArrayLimits, Scheduler
    from hpcjobs.spec import JobSpec
    from hpcjobs.sweep.handle import Sweep

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


def cluster_limits(scheduler: Scheduler, runner: Runner | None, qos: str | None) -> ArrayLimits:
    """The limits, and how many job records the controller holds now (counted against MaxJobCount)."""
    from hpcjobs.schedulers.slurm_cli import SlurmCli

    probe = getattr(scheduler, "array_limits", None)
    count = getattr(scheduler, "job_records", None)
    if probe is None or count is None:  # a backend without them: ask the CLI
        probe, count = SlurmCli(runner).array_limits, SlurmCli(runner).job_records
    limits: ArrayLimits = probe(qos)
    return replace(limits, jobs_now=int(count()))


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
) -> Sweep:
    from hpcjobs.api import prepare
    from hpcjobs.resolve import apply_overrides, resolve
    from hpcjobs.schedulers import get_scheduler
    from hpcjobs.sweep.handle import Sweep

    merged, _ = apply_overrides(spec, overrides or {})
    refuse_own_fields(merged)
    resolved = resolve(spec, site, overrides)  # refuses bad jobs before asking Slurm anything
    sched = scheduler or get_scheduler(runner)
    # the two Slurm queries run while the points are checked and encoded (they wait on slurmctld)
    with ThreadPoolExecutor(max_workers=1) as pool:
        asked = pool.submit(cluster_limits, sched, runner, resolved.qos)
        pts = to_points(points)
        groups = encode_points(pts)  # refuses values that cannot travel unchanged
        limits = asked.result()
    plans = plan_arrays(range(len(pts)), limits, contiguous=True)

    job = prepare(spec, site, overrides, runner=runner, scheduler=sched)  # the one image preparation
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
        id=sweep_id, directory=base, n_points=len(pts),
        job=merged.model_dump(mode="json", exclude_unset=True), site=site.model_dump(mode="json", exclude_unset=True),
        image={"path": job.image, "ref": job.image_ref, "digest": job.image_digest},
        cwd=workdir, throttle=job.array_throttle, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )  # fmt: skip
    record.arrays = submit_arrays(record, job, plans, attempt=0, scheduler=sched)
    record.save()
    record.register()
    return Sweep(record, sched)


def submit_arrays(
    record: SweepRecord, job: ResolvedJob, plans: Sequence[ArrayPlan], *, attempt: int, scheduler: Scheduler
) -> list[ArrayEntry]:
    """Render and submit one script per plan; on a refusal, cancel what this call submitted."""
    done: list[ArrayEntry] = []
    first = len(record.arrays)
    for k, plan in enumerate(plans):
        script = array_script(job, record.directory, record.id, plan, attempt=attempt, throttle=record.throttle)
        path = record.directory / f"array-{first + k}.sh"
        path.write_text(script, encoding="utf-8")
        try:
            job_id = scheduler.submit(script, cwd=record.cwd)
        except HpcjobsError as exc:
            if done:
                scheduler.cancel([e.job_id for e in done])
            undone = f" (cancelled the {len(done)} array(s) already submitted)" if done else ""
            raise type(exc)(f"array {k + 1} of {len(plans)} refused: {exc}{undone}") from exc
        done.append(ArrayEntry(job_id, attempt, plan))
    return done


def array_script(
    job: ResolvedJob, directory: Path, sweep_id: str, plan: ArrayPlan, *, attempt: int, throttle: int | None,
    explain: bool = False,
) -> str:
    """The batch script of one array of a sweep (pure)."""
    from hpcjobs.plugins import get_runtime
    from hpcjobs.render import render

    what = f"points {plan.start}…{plan.start + plan.count - 1}" if plan.start is not None else "failed points"
    why_array = f"sweep: {what}, task ids below MaxArraySize"
    if throttle:
        why_array += f"; %{throttle}: array_throttle from {_shown(job.provenance.get('array_throttle', 'the record'))}"
    provenance = {
        **job.provenance,
        "array": why_array,
        "output": "sweep: Slurm's own messages; the program's output goes to logs/point-N.out",
        f"extra_sbatch[{len(job.extra_sbatch)}]": "sweep: every task appends to the one file",
    }
    array_job = replace(
        job,
        array=plan.array_spec(throttle),
        # Slurm's own messages (time limit, cancel) for all tasks of the array; the program's
        # output goes to the point's log
        output=str(directory / "slurm-%A.out"),
        extra_sbatch=(*job.extra_sbatch, "--open-mode=append"),
        provenance=provenance,
    )
    prefix = get_runtime(job.runtime).env_prefix
    lines = task_lines(str(directory), sweep_id, attempt, prefix, start=plan.start, points=plan.points)
    return render(array_job, explain=explain, task_lines=lines, task_args=ARGS_WORD)


def points_of(record: SweepRecord) -> list[Point]:
    from hpcjobs.sweep.pointfile import read_point

    return [read_point(record.directory, i) for i in range(record.n_points)]


def _shown(source: str) -> str:
    return "CLI override (--set)" if source == "cli" else source
