"""Slurm through pyslurm (>= 22.5, the ``Job`` / ``Jobs`` API) for queries, sbatch for submission.

pyslurm must be built against the site's Slurm: its major.minor has to match Slurm's
(pyslurm 22.5.x ↔ Slurm 22.05). No PyPI release matches every Slurm, so pyslurm is optional:
:func:`pyslurm_usable` says whether an importable, matching pyslurm is present, and never raises.
``pyslurm`` is imported only inside these functions, never when this module is imported.

Submission always goes through ``sbatch`` (:class:`SlurmCli`): sbatch is the reference parser of
the ``#SBATCH`` lines ``render`` writes, and pyslurm's ``JobSubmitDescription.load_sbatch_options``
is not faithful to it (measured with pyslurm 22.5.3, see docs/benchmarks.md): it takes a file path
only, maps ``--partition`` and ``--gpus-per-node`` to attributes that do not exist, rejects
``--time=5`` and quoted values, cuts values at ``#``, drops options it does not know, and jobs it
submits lack ``SLURM_JOB_NAME`` (so ``%x`` in an output path becomes ``(null)`` on the node).
Status, wait, cancel and log paths go through pyslurm: one RPC in-process, no process per poll.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from hpcjobs.errors import BackendUnavailable, ControllerUnreachable, SchedulerError
from hpcjobs.runner import Pending, Runner
from hpcjobs.schedulers.base import (
    ArrayLimits,
    JobRecord,
    JobStatus,
    PollingWait,
    check_job_ids,
    match_records,
    none_if_null,
    not_found,
)
from hpcjobs.schedulers.slurm_cli import TRANSIENT_AMBIGUOUS, TRANSIENT_NOT_SENT, SlurmCli, parse_version

_NO_TASK = 4294967294  # NO_VAL - 1: the task id Slurm reports for a not yet split array
SUBMIT_VIA = "sbatch"
QUERY_VIA = "pyslurm"
_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def _major_minor(version: str) -> tuple[int, int] | None:
    try:
        parts = parse_version(version).split(".")
    except SchedulerError:
        return None
    return int(parts[0]), int(parts[1])


def pyslurm_usable(cluster_version: str | None) -> tuple[bool, str]:
    """(True, why) when ``import pyslurm`` works, offers the API hpcjobs uses, and its
    major.minor equals Slurm's (``cluster_version``, e.g. "22.05.8"); else (False, why).
    Never raises: a broken pyslurm installation is a reason, not an error."""
    try:
        if importlib.util.find_spec("pyslurm") is None:
            return False, "pyslurm not importable"
    except (ImportError, ValueError) as exc:
        return False, f"pyslurm not importable: {exc}"
    try:
        mod = importlib.import_module("pyslurm")
    except Exception as exc:  # pyslurm raises on a Slurm library mismatch at import time
        return False, f"pyslurm not importable: {type(exc).__name__}: {_first_line(exc)}"
    version = str(getattr(mod, "__version__", "") or "")
    ours = _major_minor(version)
    if ours is None:
        return False, f"pyslurm has no readable __version__ ({version!r})"
    if cluster_version is None:
        return False, f"pyslurm {version} present but the Slurm version is unknown"
    theirs = _major_minor(cluster_version)
    if theirs is None:
        return False, f"cannot read the Slurm version {cluster_version!r}"
    if ours != theirs:
        return False, (f"pyslurm {version} does not match Slurm {cluster_version} "
                       f"(needs pyslurm {theirs[0]}.{theirs[1]}.x)")  # fmt: skip
    missing = [
        name
        for name, obj in (
            ("Job.load", getattr(getattr(mod, "Job", None), "load", None)),
            ("Job.cancel", getattr(getattr(mod, "Job", None), "cancel", None)),
            ("Jobs.load", getattr(getattr(mod, "Jobs", None), "load", None)),
            ("RPCError", getattr(mod, "RPCError", None)),
        )
        if obj is None
    ]  # fmt: skip
    if missing:
        return False, f"pyslurm {version} lacks {', '.join(missing)} (needs the pyslurm >= 22.5.2 API)"
    return True, f"pyslurm {version} matches Slurm {cluster_version}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class PyslurmBackend(PollingWait):
    """The :class:`~hpcjobs.schedulers.base.Scheduler` protocol: submission through ``sbatch``
    (see the module docstring for why), everything else through pyslurm's C API bindings.

    Status is one ``Jobs.load()`` RPC for any number of jobs; jobs the controller has already
    forgotten are looked up in the job history through the CLI (one ``sacct`` call), like
    :class:`SlurmCli` does.
    """

    name = "pyslurm"

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        module: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        cli: SlurmCli | None = None,
    ) -> None:
        self._mod: Any = module if module is not None else _import_pyslurm()
        self._sleep = sleep
        self._clock = clock
        self._cli = cli if cli is not None else SlurmCli(runner, sleep=sleep, clock=clock)

    @property
    def cli(self) -> SlurmCli:
        """The CLI backend this one submits through and reads job history with."""
        return self._cli

    @property
    def version(self) -> str:
        return str(getattr(self._mod, "__version__", "?"))

    def _rpc(self, action: str, call: Callable[[], Any]) -> Any:
        """``call()``, retrying transient controller errors with :class:`SlurmCli`'s backoff, so
        that a controller restart reads the same through both backends."""
        start = self._clock()
        attempts = self._cli.retries + 1
        for attempt in range(attempts):
            try:
                return call()
            except self._mod.RPCError as exc:
                error = self._rpc_error(action, exc)
                if not isinstance(error, ControllerUnreachable):
                    raise error from exc
                if attempt + 1 == attempts:
                    raise ControllerUnreachable(
                        f"Slurm controller unreachable: {action} via pyslurm failed {attempts} time(s) in "
                        f"{self._clock() - start:.1f} s: {_one_line(exc)} (is slurmctld up? try: scontrol ping)"
                    ) from exc
                self._sleep(self._cli.backoff_s * (2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _rpc_error(self, action: str, exc: BaseException) -> SchedulerError:
        message = _one_line(exc)
        low = message.lower()
        if any(m in low for m in (*TRANSIENT_NOT_SENT, *TRANSIENT_AMBIGUOUS)):
            return ControllerUnreachable(f"Slurm controller unreachable ({action} via pyslurm): {message}")
        return SchedulerError(f"{action} refused by Slurm: {message}")

    # ------------------------------------------------------------------------------- protocol

    def config_limits(self) -> tuple[int, int, bool]:
        return self._cli.config_limits()

    def task_plugin(self) -> str:
        return self._cli.task_plugin()

    def array_limits(self, qos: str | None = None, config: tuple[int, int, bool] | None = None) -> ArrayLimits:
        """The cluster's array and job limits (read through the CLI: configuration, not an RPC hot path)."""
        return self._cli.array_limits(qos, config)

    def job_records(self) -> int:
        return self._cli.job_records()

    def job_records_start(self) -> Pending[int]:
        return self._cli.job_records_start()

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        """Through ``sbatch`` (:meth:`SlurmCli.submit`): the job Slurm records is the one the
        script's ``#SBATCH`` lines describe, with sbatch's environment (``SLURM_JOB_NAME``...),
        and a lost answer never submits twice."""
        return self._cli.submit(script, cwd=cwd)

    def submit_start(self, script: str, *, cwd: str | None = None) -> Pending[str]:
        """:meth:`SlurmCli.submit_start`: sbatch begun, its job id collected later."""
        return self._cli.submit_start(script, cwd=cwd)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = check_job_ids(job_ids)
        if not ids:
            return {}
        records = self._records_of(ids)
        out, missing = match_records(ids, records)
        if missing:
            self._cli.remember_records(records)
            found, still_missing = match_records(missing, self._cli.lookup_history(missing))
            out.update(found)
            for jid in still_missing:
                out[jid] = not_found(jid)
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``Job(id).cancel()`` per job (an array job id cancels the whole array). Array task ids
        (``123_4``) go through ``scancel``: pyslurm's cancel takes whole job ids only."""
        ids = check_job_ids(job_ids)
        tasks = [jid for jid in ids if "_" in jid]
        for jid in ids:
            if "_" in jid:
                continue
            try:
                self._rpc(f"cancel of job {jid}", self._mod.Job(int(jid)).cancel)
            except SchedulerError as exc:
                low = str(exc).lower()
                if "already" in low or "invalid job id" in low:
                    continue  # finished or unknown: like scancel, nothing to do
                raise
        if tasks:
            self._cli.cancel(tasks)

    def log_path(self, job_id: str) -> str | None:
        (jid,) = check_job_ids([job_id])
        if "_" in jid:
            rec = next((r for r in self._records_of([jid]) if r.display_id == jid), None)
            return rec.stdout_path if rec is not None else None
        try:
            job = self._rpc(f"query of job {jid}", lambda: self._mod.Job.load(int(jid)))
        except SchedulerError as exc:
            if "invalid job id" in str(exc).lower():
                return None  # unknown to the controller (RPCError, errno 2017), as scontrol says
            raise
        return none_if_null(_str(getattr(job, "standard_output", None)))

    def cluster_version(self) -> str:
        return self._cli.cluster_version()

    # ------------------------------------------------------------------------------- helpers

    def _records_of(self, ids: Sequence[str]) -> list[JobRecord]:
        """Records of the jobs ``ids`` can match (their own or their array's id is asked for), from
        one ``Jobs.load()``. The controller sends every job; reading only the asked-for ones keeps
        a poll's cost independent of other users' pending arrays (each expands to its tasks)."""
        wanted = {int(jid.split("_", 1)[0]) for jid in ids}
        jobs = self._rpc("job query", self._mod.Jobs.load)
        return [rec for job in _job_objects(jobs)
                if _int(getattr(job, "id", None)) in wanted or _int(getattr(job, "array_id", None)) in wanted
                for rec in self._records(job)]  # fmt: skip

    @staticmethod
    def _records(job: Any) -> list[JobRecord]:
        """One record per job; a pending array's meta record (task id NO_VAL-1) becomes one
        record per waiting task, as ``squeue -r`` shows them."""
        raw_id = str(getattr(job, "id", None) or getattr(job, "job_id", ""))
        array_id = getattr(job, "array_id", None)
        task = getattr(job, "array_task_id", None)
        is_array = array_id not in (None, 0, "")
        exit_code = getattr(job, "exit_code", None)
        signal = getattr(job, "exit_code_signal", None)
        base = JobRecord(
            raw_id=raw_id,
            array_job_id=None,
            array_task_id=None,
            raw_state=_str(getattr(job, "state", None)) or "UNKNOWN",
            exit_code=None if signal else (int(exit_code) if exit_code is not None else None),
            signal=int(signal) if signal else None,
            reason=none_if_null(_str(getattr(job, "state_reason", None))),
            stdout_path=none_if_null(_str(getattr(job, "standard_output", None))),
            name=none_if_null(_str(getattr(job, "name", None))),
        )
        if not is_array:
            return [base]
        if task not in (None, "", _NO_TASK, str(_NO_TASK)):
            return [replace(base, array_job_id=str(array_id), array_task_id=str(task))]
        waiting = expand_task_ranges(_str(getattr(job, "array_tasks_waiting", None)))
        if not waiting:
            # pyslurm 22.5.3 reads task id 0 as None (its "unset" for 0); a pending array's
            # meta record always has tasks waiting, so an array record without any is task 0
            return [replace(base, array_job_id=str(array_id), array_task_id="0")]
        return [replace(base, array_job_id=str(array_id), array_task_id=str(t),
                        stdout_path=_task_path(base.stdout_path, t)) for t in waiting]  # fmt: skip

    def __repr__(self) -> str:
        return f"PyslurmBackend(pyslurm {self.version})"


def expand_task_ranges(text: str | None) -> list[int]:
    """Slurm's array index list (``0-3,7,10-20:5%2``) → task ids; unreadable text gives []."""
    text = none_if_null(text)
    if text is None:
        return []
    text = text.strip("[]").split("%", 1)[0]
    out: list[int] = []
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if m is None:
            return []
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if hi < lo or step < 1 or hi - lo > 1_000_000:
            return []
        out.extend(range(lo, hi + 1, step))
    return out


def _task_path(path: str | None, task: int) -> str | None:
    # Slurm fills a not yet split task's id with NO_VAL-1 in the expanded path
    return path.replace(str(_NO_TASK), str(task)) if path else path


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _job_objects(jobs: Any) -> Iterable[Any]:
    """``Jobs.load()`` is a dict of id → Job (22.5) or of cluster → {id → Job} (>= 23.2)."""
    values = list(jobs.values()) if hasattr(jobs, "values") else list(jobs)
    out: list[Any] = []
    for value in values:
        if hasattr(value, "values") and not hasattr(value, "state"):
            out.extend(value.values())
        else:
            out.append(value)
    return out


def _import_pyslurm() -> Any:
    try:
        return importlib.import_module("pyslurm")
    except Exception as exc:
        raise BackendUnavailable(f"pyslurm not importable: {type(exc).__name__}: {_first_line(exc)}") from exc


__all__ = ["QUERY_VIA", "SUBMIT_VIA", "PyslurmBackend", "expand_task_ranges", "pyslurm_usable"]
