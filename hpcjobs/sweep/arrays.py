"""Submitting a sweep's job arrays: the cluster's limits, one script per array, cancel on refusal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hpcjobs.errors import HpcjobsError
from hpcjobs.sweep.plan import ArrayPlan
from hpcjobs.sweep.record import ArrayEntry, SweepRecord
from hpcjobs.sweep.script import ARGS_WORD, task_lines

if TYPE_CHECKING:
    from hpcjobs.plugin_api import ResolvedJob
    from hpcjobs.runner import Runner
    from hpcjobs.schedulers.base import ArrayLimits, Scheduler


def cluster_limits(scheduler: Scheduler, runner: Runner | None, qos: str | None) -> ArrayLimits:
    """The limits, and how many job records the controller holds now (counted against MaxJobCount)."""
    from hpcjobs.schedulers.slurm_cli import SlurmCli

    probe = getattr(scheduler, "array_limits", None)
    count = getattr(scheduler, "job_records", None)
    if probe is None or count is None:  # a backend without them: ask the CLI
        probe, count = SlurmCli(runner).array_limits, SlurmCli(runner).job_records
    limits: ArrayLimits = probe(qos)
    return replace(limits, jobs_now=int(count()))


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
    environ: Iterable[str] = (),
) -> str:
    """The batch script of one array of a sweep (pure)."""
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
    lines = task_lines(str(directory), sweep_id, attempt, start=plan.start, points=plan.points)
    return render(array_job, explain=explain, environ=environ, task_lines=lines, task_args=ARGS_WORD)



def _shown(source: str) -> str:
    return "CLI override (--set)" if source == "cli" else source
