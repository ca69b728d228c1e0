"""What every scheduler backend returns and promises, plus the parts they share.

Job ids are strings: ``"123"`` for a job (or a whole job array), ``"123_4"`` for one array task.
``status()`` answers for every id it was asked about, and for an array job id also adds one
entry per task (``"123_0"``, ``"123_1"``, ...) next to the array's summary entry ``"123"``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hpcjobs.errors import JobNotFound, SchedulerError, WaitTimeout
from hpcjobs.schedulers.states import JobState

NOT_FOUND_REASON = "unknown to Slurm (not in the queue, nor in job history)"
_JOB_ID = re.compile(r"(\d+)(?:_(\d+))?\Z")
MAX_JOB_ID = 0xFFFFFFFD  # below NO_VAL (0xfffffffe) and INFINITE (0xffffffff)


@dataclass(frozen=True)
class JobStatus:
    """One job's (or array task's, or whole array's) state as Slurm reports it.

    ``exit_code`` is the job script's real exit status (``exit 3`` → 3), never a raw wait
    status; it is None while the job has not ended, and when the job was killed by a signal
    (then ``signal`` holds the signal number). ``raw_state`` is Slurm's own state text ("" when
    Slurm does not know the job at all).
    """

    job_id: str
    state: JobState
    exit_code: int | None
    signal: int | None
    reason: str | None
    raw_state: str
    stdout_path: str | None
    name: str | None
    elapsed_s: int | None = None  # run time so far (or in all, once ended), where Slurm says

    @property
    def known(self) -> bool:
        """False when Slurm knows nothing about this job id (neither queue nor history)."""
        return self.raw_state != ""

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def is_success(self) -> bool:
        return self.state.is_success


@dataclass(frozen=True)
class ArrayLimits:
    """What the cluster allows: task ids stay below ``max_array_size``; ``max_job_count`` jobs in
    the controller at once (every task becomes a job as it runs); ``max_submit_jobs`` per user
    (association or QoS limit, None where none is visible)."""

    max_array_size: int
    max_job_count: int
    max_submit_jobs: int | None = None
    submit_limit_source: str | None = None
    jobs_now: int | None = None  # job records in the controller now, every array task counted


@runtime_checkable
class Scheduler(Protocol):
    """A batch scheduler backend (Slurm through its CLI, or through pyslurm)."""

    name: str

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        """Submit a batch script (its ``#SBATCH`` lines are honoured); return the job id (for a job
        array, the array job id). The job runs in ``cwd`` (default: the caller's cwd)."""
        ...

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """State of every job in ``job_ids`` with one Slurm query (a second one only for jobs
        the controller has already forgotten)."""
        ...

    def wait(
        self, job_ids: Sequence[str], *, poll_s: float = 5.0, timeout_s: float | None = None
    ) -> dict[str, JobStatus]:
        """Poll ``status`` until every job has ended; raises WaitTimeout or JobNotFound."""
        ...

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs; ids Slurm does not know (any more) are ignored."""
        ...

    def log_path(self, job_id: str) -> str | None:
        """The job's stdout file while the controller knows the job; None otherwise."""
        ...

    def cluster_version(self) -> str:
        """Slurm's version, e.g. ``22.05.8``."""
        ...


# ---------------------------------------------------------------------------------------- helpers


def check_job_ids(job_ids: Iterable[str]) -> list[str]:
    """Validate and de-duplicate job ids (order kept); raise SchedulerError on a malformed one."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in job_ids:
        jid = str(raw).strip()
        m = _JOB_ID.fullmatch(jid)
        if not m:
            raise SchedulerError(f"not a Slurm job id: {raw!r} (expected 123 or 123_4)")
        if not 0 < int(m.group(1)) <= MAX_JOB_ID or (m.group(2) is not None and int(m.group(2)) > MAX_JOB_ID):
            # Slurm's ids are 32-bit; squeue and sacct answer differently for one that overflows
            raise SchedulerError(f"not a Slurm job id: {raw!r} (out of range 1..{MAX_JOB_ID})")
        if jid not in seen:
            seen.add(jid)
            out.append(jid)
    return out


def decode_wait_status(raw: int) -> tuple[int | None, int | None]:
    """A raw wait status (what ``squeue`` prints as exit_code: 768 for ``exit 3``) →
    (exit code, signal). A signalled job has exit code None."""
    sig = raw & 0x7F
    if sig == 0:
        return (raw >> 8) & 0xFF, None
    return None, sig


def parse_exit_pair(text: str) -> tuple[int | None, int | None]:
    """Slurm's ``EXIT:SIGNAL`` (``scontrol``/``sacct`` ExitCode=3:0) → (exit code, signal).
    A signalled job (``0:15``) has exit code None; unreadable text gives (None, None)."""
    code, _, sig = text.strip().partition(":")
    try:
        exit_code = int(code)
        signal = int(sig) if sig else 0
    except ValueError:
        return None, None
    if signal:
        return (exit_code or None), signal
    return exit_code, None


def parse_squeue_exit(text: str) -> tuple[int | None, int | None]:
    """squeue's ``exit_code`` column → (exit code, signal), whichever form this Slurm prints:
    up to 23.02 the raw wait status (``768`` for ``exit 3``, ``15`` for SIGTERM), from 23.11 on
    ``EXIT:SIGNAL`` like scontrol and sacct (``3:0``, ``0:15``). Unreadable text gives
    (None, None)."""
    text = text.strip()
    if ":" in text:
        return parse_exit_pair(text)
    try:
        raw = int(text)
    except ValueError:
        return None, None
    if raw < 0:
        return None, None
    return decode_wait_status(raw)


def none_if_null(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in ("", "None") or value.lower() in ("(null)", "n/a") else value


@dataclass(frozen=True)
class JobRecord:
    """One row of job information from any source (squeue, scontrol, sacct, pyslurm)."""

    raw_id: str  # Slurm's own job id (each array task has one too)
    array_job_id: str | None  # set for array tasks only
    array_task_id: str | None
    raw_state: str
    exit_code: int | None
    signal: int | None
    reason: str | None
    stdout_path: str | None
    name: str | None
    elapsed_s: int | None = None

    @property
    def display_id(self) -> str:
        if self.array_job_id is not None and self.array_task_id is not None:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.raw_id

    def to_status(self, job_id: str | None = None) -> JobStatus:
        state = JobState.from_slurm(self.raw_state)
        exit_code, signal = (self.exit_code, self.signal) if state.is_terminal else (None, None)
        return JobStatus(
            job_id=job_id or self.display_id,
            state=state,
            exit_code=exit_code,
            signal=signal,
            reason=self.reason,
            raw_state=self.raw_state,
            stdout_path=self.stdout_path,
            name=self.name,
            elapsed_s=self.elapsed_s,
        )


def not_found(job_id: str) -> JobStatus:
    return JobStatus(job_id, JobState.UNKNOWN, None, None, NOT_FOUND_REASON, "", None, None)


_ACTIVE_ORDER = (JobState.RUNNING, JobState.COMPLETING, JobState.CONFIGURING, JobState.SUSPENDED,
                 JobState.REQUEUED, JobState.PENDING)  # fmt: skip


def aggregate_array(array_id: str, tasks: Sequence[JobStatus]) -> JobStatus:
    """One summary status for a whole job array from its tasks' statuses.

    While any task is not finished the array is in the most advanced active state of its tasks
    (RUNNING before PENDING). Once all have ended it is COMPLETED if every task succeeded, else it
    takes the state and exit code of the first (lowest task id) task that did not succeed.
    ``reason`` counts the tasks per state.
    """
    ordered = sorted(tasks, key=lambda s: _task_key(s.job_id))
    counts: dict[str, int] = {}
    for t in ordered:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    summary = f"{len(ordered)} tasks: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    name = next((t.name for t in ordered if t.name), None)
    unfinished = [t for t in ordered if not t.state.is_terminal]
    if unfinished:
        states = {t.state for t in unfinished}
        state = next((s for s in _ACTIVE_ORDER if s in states), unfinished[0].state)
        pick = next(t for t in unfinished if t.state is state)
        return JobStatus(array_id, state, None, None, summary, pick.raw_state, None, name)
    failed = [t for t in ordered if not t.state.is_success]
    if not failed:
        return JobStatus(array_id, JobState.COMPLETED, 0, None, summary, "COMPLETED", None, name)
    first = failed[0]
    return JobStatus(array_id, first.state, first.exit_code, first.signal, summary, first.raw_state,
                     None, name)  # fmt: skip


def _task_key(job_id: str) -> tuple[int, int]:
    m = _JOB_ID.match(job_id)
    if not m:
        return (0, 0)
    return int(m.group(1)), int(m.group(2) or -1)


def match_records(
    job_ids: Sequence[str], records: Iterable[JobRecord]
) -> tuple[dict[str, JobStatus], list[str]]:
    """Answer each requested id from the records: ``123`` matches a plain job with that id, an
    array (then all its tasks are added plus a summary under ``123``), or an array task whose
    own job id is 123; ``123_4`` matches that task. Returns (statuses, ids not found)."""
    by_raw: dict[str, JobRecord] = {}
    by_display: dict[str, JobRecord] = {}
    by_array: dict[str, list[JobRecord]] = {}
    for record in records:
        by_raw.setdefault(record.raw_id, record)
        by_display[record.display_id] = record
        if record.array_job_id is not None:
            by_array.setdefault(record.array_job_id, []).append(record)
    out: dict[str, JobStatus] = {}
    missing: list[str] = []
    for jid in job_ids:
        if "_" in jid:
            rec = by_display.get(jid)
            if rec is None:
                missing.append(jid)
            else:
                out[jid] = rec.to_status(jid)
            continue
        tasks = by_array.get(jid)
        if tasks:
            task_statuses = [t.to_status() for t in tasks]
            for ts in task_statuses:
                out.setdefault(ts.job_id, ts)
            out[jid] = aggregate_array(jid, task_statuses)
            continue
        rec = by_display.get(jid) or by_raw.get(jid)
        if rec is None:
            missing.append(jid)
        else:
            out[jid] = rec.to_status(jid)
    return out, missing


def wait_loop(
    status: Callable[[Sequence[str]], Mapping[str, JobStatus]],
    job_ids: Sequence[str],
    *,
    poll_s: float,
    timeout_s: float | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, JobStatus]:
    """Call ``status(job_ids)`` once per poll until every requested job has ended."""
    ids = check_job_ids(job_ids)
    if not ids:
        return {}
    if poll_s <= 0:
        raise SchedulerError(f"poll_s must be positive, got {poll_s}")
    deadline = None if timeout_s is None else clock() + timeout_s
    while True:
        current = dict(status(ids))
        unknown = [j for j in ids if not current.get(j, not_found(j)).known]
        if unknown:
            raise JobNotFound(f"Slurm does not know job(s) {', '.join(unknown)}: "
                              "not in the queue nor in job history")  # fmt: skip
        if all(current[j].is_terminal for j in ids):
            return current
        if deadline is not None and clock() >= deadline:
            waiting = [f"{j} ({current[j].state.value})" for j in ids if not current[j].is_terminal]
            raise WaitTimeout(
                f"jobs still not finished after {timeout_s:g} s: {', '.join(waiting[:10])}"
                + (f" and {len(waiting) - 10} more" if len(waiting) > 10 else ""),
                statuses=dict[str, object](current),
            )
        delay = poll_s if deadline is None else max(0.0, min(poll_s, deadline - clock()))
        sleep(delay)


class PollingWait:
    """Mixin giving a backend the protocol's ``wait()``: :func:`wait_loop` over its own
    ``status()``, sleeping with its ``_sleep`` and timing with its ``_clock``."""

    _sleep: Callable[[float], None]
    _clock: Callable[[], float]

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        raise NotImplementedError

    def wait(
        self, job_ids: Sequence[str], *, poll_s: float = 5.0, timeout_s: float | None = None
    ) -> dict[str, JobStatus]:
        """Poll ``status`` until every job has ended; raises WaitTimeout or JobNotFound."""
        return wait_loop(self.status, job_ids, poll_s=poll_s, timeout_s=timeout_s,
                         sleep=self._sleep, clock=self._clock)  # fmt: skip


def default_cwd(cwd: str | None) -> str:
    return os.path.abspath(cwd) if cwd is not None else os.getcwd()


__all__ = [
    "NOT_FOUND_REASON",
    "ArrayLimits",
    "JobRecord",
    "JobStatus",
    "PollingWait",
    "Scheduler",
    "aggregate_array",
    "check_job_ids",
    "decode_wait_status",
    "match_records",
    "not_found",
    "parse_exit_pair",
    "parse_squeue_exit",
    "wait_loop",
]
