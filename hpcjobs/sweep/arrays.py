"""Submitting a sweep's job arrays: the cluster's limits, one script per array, cancel on refusal."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hpcjobs.errors import HpcjobsError
from hpcjobs.sweep.plan import ArrayPlan
from hpcjobs.sweep.record import ArrayEntry, SweepRecord
from hpcjobs.sweep.script import ARGS_WORD, task_lines

if TYPE_CHECKING:
    from hpcjobs.plugin_api import ResolvedJob
    from hpcjobs.runner import Pending, Runner
    from hpcjobs.schedulers.base import ArrayLimits, Scheduler
    from hpcjobs.sweep.pointfile import PointWriter

# sbatch processes a sweep keeps running at once: array k+1's sbatch starts as soon as its files
# are written, without waiting for array k's answer (docs/benchmarks.md, "Pipelined submission")
SBATCH_IN_FLIGHT = 2

def array_limits(scheduler: Scheduler, runner: Runner | None, qos: str | None) -> ArrayLimits:
    """The cluster's limits, MaxArraySize and MaxJobCount kept per configuration key (no Slurm
    call while slurm.conf is unchanged); per-user and QoS limits asked every time."""
    from hpcjobs.sweep.limitcache import cached_config_limits

    cli = _limits_backend(scheduler, runner)
    config = getattr(cli, "config_limits", None)
    if config is None:  # a backend that only offers the whole answer
        limits: ArrayLimits = cli.array_limits(qos)
        return limits
    # the runner that actually asks Slurm: the backend's own (the CLI one inside pyslurm's)
    # (a backend whose runner cannot be seen is asked every time)
    asks = getattr(cli, "runner", None) or getattr(getattr(cli, "_cli", None), "runner", None)
    kept = cached_config_limits(config, asks) if asks is not None else config()
    return cast("ArrayLimits", cli.array_limits(qos, kept))


def job_records(scheduler: Scheduler, runner: Runner | None) -> int:
    """How many job records the controller holds now (counted against MaxJobCount). One Slurm query."""
    return int(_limits_backend(scheduler, runner).job_records())


def job_records_start(scheduler: Scheduler, runner: Runner | None) -> Pending[int]:
    """:func:`job_records` begun: its query runs while the caller works (a backend that cannot
    begin one is asked when the answer is wanted)."""
    from hpcjobs.runner import Pending

    backend = _limits_backend(scheduler, runner)
    begin = getattr(backend, "job_records_start", None)
    if begin is not None:
        return cast("Pending[int]", begin())
    return Pending(lambda: int(backend.job_records()))


def cluster_limits(scheduler: Scheduler, runner: Runner | None, qos: str | None) -> ArrayLimits:
    """The limits, and how many job records the controller holds now."""
    return replace(array_limits(scheduler, runner, qos), jobs_now=job_records(scheduler, runner))


def _limits_backend(scheduler: Scheduler, runner: Runner | None) -> Any:
    from hpcjobs.schedulers.slurm_cli import SlurmCli

    if getattr(scheduler, "array_limits", None) is None or getattr(scheduler, "job_records", None) is None:
        return SlurmCli(runner)  # a backend without them: ask the CLI
    return scheduler


def array_scripts(record: SweepRecord, job: ResolvedJob, plans: Sequence[ArrayPlan], *, attempt: int) -> list[str]:
    """The batch script of each plan (pure): the first rendered, the others derived from it where
    :func:`same_but_range` can."""
    scripts: list[str] = []
    first_script: tuple[ArrayPlan, str] | None = None
    for plan in plans:
        script = None if first_script is None else same_but_range(*first_script, plan, record.throttle)
        if script is None:
            script = array_script(job, record.directory, record.id, plan, attempt=attempt, throttle=record.throttle)
            first_script = first_script or (plan, script)
        scripts.append(script)
    return scripts


def submit_arrays(
    record: SweepRecord, job: ResolvedJob, plans: Sequence[ArrayPlan], *, attempt: int, scheduler: Scheduler,
    scripts: Sequence[str] | None = None, points: PointWriter | None = None,
) -> list[ArrayEntry]:
    """Submit one script per plan, started in order, up to :data:`SBATCH_IN_FLIGHT` ``sbatch``
    processes at once. What an array needs on disk (its script; with ``points``, the group files
    holding its points) is written, whole, before its ``sbatch`` starts: array 0's before anything
    is submitted, array k+1's while the ``sbatch`` calls before it run. Each array's job id is its
    own ``sbatch``'s answer (ids may come back in any order; nothing assumes they increase).
    ``scripts``: :func:`array_scripts`' answer, made earlier. On a refusal, or an error writing an
    array's files, every ``sbatch`` in flight is collected (it may have submitted), every array
    this call submitted is cancelled (one accepted after an earlier one was refused too) and the
    error says how many."""
    first = len(record.arrays)
    n = len(plans)
    if scripts is None:
        scripts = array_scripts(record, job, plans, attempt=attempt)
    ids: list[str | None] = [None] * n
    flying: deque[tuple[int, Pending[str]]] = deque()

    def ready(k: int) -> None:
        if points is not None:
            points.upto(plans[k].point_of(plans[k].count - 1))
        (record.directory / f"array-{first + k}.sh").write_text(scripts[k], encoding="utf-8")

    def land() -> None:
        """The oldest sbatch in flight collected: its job id, or its refusal raised."""
        k, pending = flying.popleft()
        try:
            ids[k] = pending.result()
        except HpcjobsError as exc:
            raise undo(f"array {k + 1} of {n} refused", exc) from exc

    def undo(what: str, exc: BaseException) -> HpcjobsError:
        while flying:  # every sbatch still in flight may have submitted: collect it
            k, pending = flying.popleft()
            try:
                ids[k] = pending.result()
            except HpcjobsError:
                pass
        done = [i for i in ids if i is not None]
        if done:
            scheduler.cancel(done)
        undone = f" (cancelled the {len(done)} array(s) already submitted)" if done else ""
        kind = type(exc) if isinstance(exc, HpcjobsError) else HpcjobsError
        return kind(f"{what}: {exc}{undone}")

    ready(0)  # an error here: nothing submitted yet
    flying.append((0, _begin(scheduler, scripts[0], record.cwd)))
    for k in range(1, n):
        try:
            ready(k)  # while the sbatch calls before it run
        except Exception as exc:
            raise undo(f"writing the files of array {k + 1} of {n} failed", exc) from exc
        if len(flying) >= SBATCH_IN_FLIGHT:
            land()
        flying.append((k, _begin(scheduler, scripts[k], record.cwd)))
    while flying:
        land()
    return [ArrayEntry(cast(str, job_id), attempt, plan) for job_id, plan in zip(ids, plans, strict=True)]


def _begin(scheduler: Scheduler, script: str, cwd: str) -> Pending[str]:
    """The scheduler's submission of ``script``, begun where it can begin one (else made now);
    a refusal, even one made before anything ran, comes from :meth:`Pending.result`."""
    from hpcjobs.runner import Pending

    begin = getattr(scheduler, "submit_start", None)
    try:
        if begin is not None:
            return cast("Pending[str]", begin(script, cwd=cwd))
        job_id = scheduler.submit(script, cwd=cwd)
    except HpcjobsError as exc:
        refused = exc

        def fail() -> str:
            raise refused

        return Pending(fail)
    return Pending.done(job_id)


def same_but_range(rendered: ArrayPlan, script: str, plan: ArrayPlan, throttle: int | None) -> str | None:
    """The script of ``plan`` from the rendered script of another array of the same sweep and attempt:
    contiguous arrays differ only in two lines of numbers (``--array`` and the first point), so
    they are not rendered again. None where that is not certain (a retry's list of points, a line
    not found exactly once): render it. Equal to rendering it (a unit test compares)."""
    if rendered.start is None or plan.start is None:
        return None
    swaps = [
        (f"\n#SBATCH --array={rendered.array_spec(throttle)}\n", f"\n#SBATCH --array={plan.array_spec(throttle)}\n"),
        (f"\nhpcjobs_point=$(({rendered.start} + SLURM_ARRAY_TASK_ID))\n",
         f"\nhpcjobs_point=$(({plan.start} + SLURM_ARRAY_TASK_ID))\n"),
    ]  # fmt: skip
    for old, new in swaps:
        if script.count(old) != 1:
            return None
        script = script.replace(old, new)
    return script


def array_script(
    job: ResolvedJob, directory: Path, sweep_id: str, plan: ArrayPlan, *, attempt: int, throttle: int | None,
    explain: bool = False,
    environ: Iterable[str] = (),
    job_dir: str | None = None,
) -> str:
    """The batch script of one array of a sweep (pure); ``job_dir``: where it will start, for --explain."""
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
    return render(array_job, explain=explain, environ=environ, task_lines=lines, task_args=ARGS_WORD,
                  job_dir=job_dir)



def _shown(source: str) -> str:
    return "CLI override (--set)" if source == "cli" else source
