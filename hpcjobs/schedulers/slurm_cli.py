"""Slurm through its command-line tools (sbatch, squeue, sacct, scontrol, scancel).

Every command goes through the injected :class:`~hpcjobs.runner.Runner` as an argv list.

Errors: messages that mean "the controller is busy or unreachable" are retried with
exponential backoff and end as :class:`ControllerUnreachable`; anything else Slurm refuses
(bad partition, "Requested node configuration is not available", limits) is a
:class:`SchedulerError` carrying Slurm's message on one line, without retrying.

Submission is never doubled: each ``sbatch`` carries ``--comment=hpcjobs:<uuid>``; after a
failure that may have reached the controller (a socket timeout, no answer) the queue is searched
for that token before sbatch is run again, and the job found there is returned instead. (The one
window left: a request still queued inside a very busy slurmctld when the queue is searched; the
backoff before the search makes it unlikely.) Connect failures never reached the controller and
are re-sent without a search.

Status is one ``squeue`` call for any number of jobs (it knows pending, running and, until
MinJobAge, finished jobs); only ids squeue no longer knows are looked up in the job history with
one ``sacct`` call (``sacct -c``, the jobcomp record, when the cluster has no accounting database).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from hpcjobs.directives import option_vars, sbatch_env
from hpcjobs.errors import ControllerUnreachable, RunnerError, SchedulerError
from hpcjobs.log import get_logger
from hpcjobs.runner import Completed, Done, Pending, Runner, Started, default_runner
from hpcjobs.runner import start as start_call
from hpcjobs.schedulers.base import (
    ArrayLimits,
    JobRecord,
    JobStatus,
    PollingWait,
    check_job_ids,
    default_cwd,
    match_records,
    none_if_null,
    not_found,
    parse_exit_pair,
    parse_squeue_exit,
)

History = Literal["auto", "sacct", "jobcomp", "none"]
log = get_logger("slurm")

SEP = "\x1f"  # ASCII unit separator: squeue -O suffix and sacct --delimiter; never in Slurm values
TOKEN_PREFIX = "hpcjobs:"  # noqa: S105  (a submission tag, not a secret)

# squeue -O fields, in this order. "Field:<SEP>" = no padding, no truncation, SEP after the value.
SQUEUE_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "State", "exit_code", "Reason", "UserName",
                 "WorkDir", "BatchHost", "STDOUT", "Name", "TimeUsed")  # fmt: skip
_SQUEUE_REQUIRED = len(SQUEUE_FIELDS) - 1  # TimeUsed may be missing (older fakes, older output)
SQUEUE_FORMAT = ",".join(f"{f}:{SEP}" for f in SQUEUE_FIELDS)
SACCT_FIELDS = "jobid,jobidraw,state,exitcode,reason,jobname"

# Failures where the request never reached the controller, or the controller said "not now"
# without creating anything: safe to send again.
TRANSIENT_NOT_SENT = (
    "unable to contact slurm controller",
    "connect failure",
    "connection refused",
    "temporarily unable to accept job",
    "resource temporarily unavailable",
    "slurmctld is not responding",
    "controller is not responding",
)
# Failures after the request may have reached the controller: it may have acted on it.
TRANSIENT_AMBIGUOUS = (
    "socket timed out",
    "zero bytes were transmitted or received",
    "connection reset",
    "communication connection failure",
    "transport endpoint is not connected",
    "no answer within",  # our runner's own timeout
)
_INVALID_JOB = "invalid job id"
_ACCOUNTING_OFF = ("accounting storage is disabled", "accounting_storage/none")
_ARGV_BUDGET = 100_000  # one argv string must stay below Linux's 128 KiB MAX_ARG_STRLEN
_SCANCEL_CHUNK = 5_000
_CACHE_MAX = 200_000

_DISPLAY_ID = re.compile(r"^(\d+)(?:_(\d+))?$")
_SCONTROL_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_FNAME_SPEC = re.compile(r"%(\d*)([%AaJjNnstux])")


def classify(message: str) -> Literal["not_sent", "ambiguous", "refused"]:
    low = message.lower()
    if any(m in low for m in TRANSIENT_AMBIGUOUS):
        return "ambiguous"
    if any(m in low for m in TRANSIENT_NOT_SENT):
        return "not_sent"
    return "refused"


def one_line(result: Completed) -> str:
    """Slurm's error as one line: stderr lines without the ``prog: error:`` prefix, joined."""
    prog = result.argv[0] if result.argv else ""
    lines: list[str] = []
    for line in (result.stderr or result.stdout).splitlines():
        text = line.strip()
        for prefix in (f"{prog}: error:", f"{prog}: fatal:", f"{prog}:", "error:"):
            if text.lower().startswith(prefix.lower()):
                text = text[len(prefix) :].strip()
                break
        if text and text not in lines:
            lines.append(text)
    return "; ".join(lines) if lines else f"exit status {result.returncode}"


def parse_sbatch_output(stdout: str) -> str:
    """``sbatch --parsable`` prints ``ID`` or ``ID;cluster``."""
    for line in stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        job_id = line.split(";", 1)[0].strip()
        if job_id.isdigit():
            return job_id
    raise SchedulerError(f"sbatch printed no job id: {stdout.strip()!r}")


def expand_stdout(pattern: str | None, rec_raw_id: str, array_job_id: str | None,
                  array_task_id: str | None, user: str | None, work_dir: str | None,
                  batch_host: str | None, name: str | None) -> str | None:  # fmt: skip
    """The file a batch job writes its stdout to, from squeue's unexpanded STDOUT field.

    squeue prints ``--output`` patterns unexpanded, and for arrays without ``--output`` it prints
    ``slurm-<jobid>.out`` where the job really writes ``slurm-<array>_<task>.out``. Expands the
    way slurmstepd does for the batch step: %A %a %j %J %u %x %N %n %s %t %%, with zero padding
    (``%4a``); a pattern containing a backslash is taken literally (backslashes removed).
    """
    pattern = none_if_null(pattern)
    if pattern is None:
        return None
    is_task = array_job_id is not None and array_task_id is not None
    if is_task and work_dir and pattern == f"{work_dir.rstrip('/')}/slurm-{rec_raw_id}.out":
        return f"{work_dir.rstrip('/')}/slurm-{array_job_id}_{array_task_id}.out"
    if "\\" in pattern:
        return pattern.replace("\\", "")
    values: dict[str, str | None] = {
        "%": "%",
        "A": array_job_id if is_task else rec_raw_id,
        "a": array_task_id if is_task else "4294967294",
        "j": rec_raw_id,
        "J": rec_raw_id,
        "u": user,
        "x": name,
        "N": batch_host,
        "n": "0",
        "s": "batch",
        "t": "0",
    }

    def sub(m: re.Match[str]) -> str:
        width, spec = m.group(1), m.group(2)
        value = values.get(spec)
        if value is None:
            return m.group(0)
        if spec == "%":
            return "%"
        if width and value.isdigit():
            return value.zfill(min(int(width), 10))
        return value

    return _FNAME_SPEC.sub(sub, pattern)


def parse_squeue(stdout: str) -> list[JobRecord]:
    """Rows of ``squeue -h -O <SQUEUE_FORMAT>`` → JobRecords. The exit_code column is a raw wait
    status on Slurm 22.05 (768 for ``exit 3``) and ``EXIT:SIGNAL`` on 24.11 (``3:0``): both read."""
    records: list[JobRecord] = []
    for line in stdout.splitlines():
        if SEP not in line:
            continue
        parts = line.split(SEP)
        if len(parts) < _SQUEUE_REQUIRED:
            continue
        row = dict(zip(SQUEUE_FIELDS, (p.strip() for p in parts), strict=False))
        raw_id = row["JobID"]
        if not raw_id.isdigit():
            continue
        task = none_if_null(row["ArrayTaskID"])
        array_id = none_if_null(row["ArrayJobID"]) if task is not None else None
        if task is not None and not task.isdigit():
            continue  # an unexpanded range ("[0-9]"); squeue -r prints tasks one per line
        exit_code, signal = parse_squeue_exit(row["exit_code"])
        name = none_if_null(row["Name"])
        records.append(JobRecord(
            raw_id=raw_id,
            array_job_id=array_id,
            array_task_id=task,
            raw_state=row["State"],
            exit_code=exit_code,
            signal=signal,
            reason=none_if_null(row["Reason"]),
            stdout_path=expand_stdout(row["STDOUT"], raw_id, array_id, task, none_if_null(row["UserName"]),
                                      none_if_null(row["WorkDir"]), none_if_null(row["BatchHost"]), name),
            name=name,
            elapsed_s=parse_duration_s(row.get("TimeUsed", "")),
        ))  # fmt: skip
    return records


def parse_duration_s(text: str) -> int | None:
    """Slurm's ``[D-][HH:]MM:SS`` (squeue TimeUsed, sacct Elapsed) → seconds; None if unreadable."""
    text = text.strip()
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return days * 86400 + seconds


def parse_array_limits(config_text: str) -> tuple[int, int, bool]:
    """``scontrol show config`` → (MaxArraySize, MaxJobCount, accounting storage enabled)."""
    values: dict[str, str] = {}
    for line in config_text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    try:
        max_array = int(values["MaxArraySize"])
        max_jobs = int(values["MaxJobCount"])
    except (KeyError, ValueError):
        raise SchedulerError("scontrol show config printed no MaxArraySize/MaxJobCount") from None
    # no accounting storage: "accounting_storage/none" on 22.05, "(null)" on 24.11
    storage = values.get("AccountingStorageType", "")
    accounting = none_if_null(storage) is not None and storage != "accounting_storage/none"
    return max_array, max_jobs, accounting


def parse_config_value(config_text: str, name: str) -> str:
    """One setting of ``scontrol show config`` (``TaskPlugin``), as printed."""
    for line in config_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    raise SchedulerError(f"scontrol show config printed no {name}")


_JOB_LINE = re.compile(r"\d+(?:_\d+|\+\d+)?")
_PENDING_ARRAY = re.compile(r"\d+_\[([0-9,-]+)(?:%\d+)?\]")


def count_job_records(squeue_ids: str) -> int | None:
    """Lines of ``squeue -h -t all -o %i`` (not ``-r``) → job records, a pending array's tasks each
    counted (Slurm counts them against MaxJobCount from submission). None: a line it cannot read
    (a truncated task list, a form it does not know)."""
    total = 0
    for raw in squeue_ids.splitlines():
        line = raw.strip()
        if not line:
            continue
        if _JOB_LINE.fullmatch(line):
            total += 1
            continue
        m = _PENDING_ARRAY.fullmatch(line)
        if m is None:
            return None
        for part in m.group(1).split(","):
            low, dash, high = part.partition("-")
            if not low.isdigit() or (dash and not high.isdigit()) or (dash and int(high) < int(low)):
                return None
            total += int(high) - int(low) + 1 if dash else 1
    return total


def parse_submit_limit(sacctmgr_text: str) -> int | None:
    """Rows of ``sacctmgr -n -P show assoc|qos format=MaxSubmit…`` → the smallest limit set, or None."""
    found = [int(f) for line in sacctmgr_text.splitlines() for f in line.split("|") if f.strip().isdigit()]
    return min(found) if found else None


def parse_sacct(stdout: str) -> list[JobRecord]:
    """Rows of ``sacct -n -P -X --delimiter=<SEP> -o <SACCT_FIELDS>`` (with or without ``-c``).

    One record per job: when a job id occurs more than once the last row wins. ``sacct -c`` prints
    every jobcomp line in the order written, and job ids come round again after the controller's
    state is lost (24.11's dev cluster did that on every restart), so the older rows are
    other, earlier jobs."""
    latest: dict[str, JobRecord] = {}
    for line in stdout.splitlines():
        parts = line.split(SEP)
        if len(parts) < 6:
            continue
        jobid, raw_id, state, exitcode, reason = (p.strip() for p in parts[:5])
        name = SEP.join(parts[5:]).strip()
        m = _DISPLAY_ID.match(jobid)
        if m is None:
            continue  # steps (123.batch) or pending ranges (123_[1-5])
        if not raw_id.isdigit():
            raw_id = m.group(1) if m.group(2) is None else raw_id
        if not raw_id.isdigit():
            continue
        exit_code, signal = parse_exit_pair(exitcode)
        rec = JobRecord(
            raw_id=raw_id,
            array_job_id=m.group(1) if m.group(2) is not None else None,
            array_task_id=m.group(2),
            raw_state=state,
            exit_code=exit_code,
            signal=signal,
            reason=none_if_null(reason),
            stdout_path=None,
            name=none_if_null(name),
        )  # fmt: skip
        latest.pop(rec.display_id, None)  # re-insert: the order is that of the latest rows
        latest[rec.display_id] = rec
    return list(latest.values())


def scontrol_fields(line: str) -> dict[str, str]:
    """One ``scontrol show job -o`` line → {key: value}. Values may contain spaces."""
    keys = list(_SCONTROL_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(line)
        out.setdefault(m.group(1), line[m.end() : end].strip())
    return out


def parse_version(text: str) -> str:
    m = _VERSION.search(text)
    if m is None:
        raise SchedulerError(f"cannot read a Slurm version from {text.strip()!r}")
    return m.group(0)


class SlurmCli(PollingWait):
    """The :class:`~hpcjobs.schedulers.base.Scheduler` protocol over Slurm's CLI tools."""

    name = "slurm-cli"

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        retries: int = 4,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        history: History = "auto",
        command_timeout_s: float | None = 120.0,
    ) -> None:
        if retries < 0:
            raise SchedulerError(f"retries must be >= 0, got {retries}")
        self.runner: Runner = runner if runner is not None else default_runner()
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._clock = clock
        self.history: History = history
        self.command_timeout_s = command_timeout_s
        self._version: str | None = None
        # what squeue told us earlier, so that the history lookup can map array tasks
        # (sacct -c knows only raw job ids) and keep the stdout path
        self._seen: dict[str, JobRecord] = {}
        self._array_tasks: dict[str, dict[str, None]] = {}

    # ------------------------------------------------------------------------------- running

    def _run(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> Completed:
        try:
            if env is not None:
                return self.runner(argv, input_text=input_text, cwd=cwd, env=env, timeout_s=self.command_timeout_s)
            return self.runner(argv, input_text=input_text, cwd=cwd, timeout_s=self.command_timeout_s)
        except RunnerError as exc:
            if "not found on PATH" in str(exc):
                raise
            # no answer in time: the command may have reached the controller
            return Completed(tuple(argv), -1, "", f"{argv[0]}: error: {exc} (no answer within limit)")

    def _start(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> Started:
        """:meth:`_run` begun (:func:`hpcjobs.runner.start`); collect it with :meth:`_collect`."""
        try:
            if env is not None:
                return start_call(self.runner, argv, input_text=input_text, cwd=cwd, env=env,
                             timeout_s=self.command_timeout_s)  # fmt: skip
            return start_call(self.runner, argv, input_text=input_text, cwd=cwd, timeout_s=self.command_timeout_s)
        except RunnerError as exc:
            if "not found on PATH" in str(exc):
                raise
            return Done(Completed(tuple(argv), -1, "", f"{argv[0]}: error: {exc} (no answer within limit)"))

    @staticmethod
    def _collect(started: Started, argv: Sequence[str]) -> Completed:
        """The answer of ``argv``, which :meth:`_start` began, read as :meth:`_run` reads one."""
        try:
            return started.wait()
        except RunnerError as exc:
            if "not found on PATH" in str(exc):
                raise
            return Completed(tuple(argv), -1, "", f"{argv[0]}: error: {exc} (no answer within limit)")

    def _delay(self, attempt: int) -> float:
        return float(self.backoff_s * (2**attempt))

    def _unreachable(
        self, prog: str, attempts: int, elapsed: float, message: str, extra: str = ""
    ) -> ControllerUnreachable:
        return ControllerUnreachable(
            f"Slurm controller unreachable: {prog} failed {attempts} time(s) in {elapsed:.1f} s: "
            f"{message}{extra} (is slurmctld up? try: scontrol ping)"
        )

    def _query(
        self, argv: Sequence[str], *, accept: Sequence[str] = (), env: Mapping[str, str | None] | None = None,
        first: Started | None = None,
    ) -> Completed:
        """Run an idempotent command (query or cancel), retrying transient controller errors.
        A failure whose message contains one of ``accept`` is returned instead of raised.
        ``first``: its first attempt, already begun by :meth:`_start`."""
        start = self._clock()
        message = ""
        for attempt in range(self.retries + 1):
            result = self._collect(first, argv) if attempt == 0 and first is not None else self._run(argv, env=env)
            if result.ok:
                return result
            message = one_line(result)
            low = message.lower()
            if any(a in low for a in accept):
                return result
            if classify(message) == "refused":
                raise SchedulerError(f"{argv[0]} failed: {message}")
            if attempt < self.retries:
                self._sleep(self._delay(attempt))
        raise self._unreachable(argv[0], self.retries + 1, self._clock() - start, message)

    # ------------------------------------------------------------------------------- submit

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        """``sbatch --parsable`` with the script on stdin; the job runs in ``cwd`` (default: ours).

        The submission token goes in ``--comment``, which overrides a ``#SBATCH --comment`` line.
        sbatch runs without Slurm's input variables (``SBATCH_PARTITION``, ``SLURM_MPI_TYPE`` …,
        see :func:`hpcjobs.directives.slurm_input_vars`): they would override the script's
        directives, and srun inside the job would read the ones the job inherits.
        """
        return self.submit_start(script, cwd=cwd).result()

    def submit_start(self, script: str, *, cwd: str | None = None) -> Pending[str]:
        """:meth:`submit` begun: the first ``sbatch`` is started and this returns at once; the
        answer's :meth:`~hpcjobs.runner.Pending.result` is the job id, after the same retries and
        token search, or the same error. Refusals made before anything runs (a missing working
        directory) are raised here. Always collect it: it may have submitted."""
        workdir = default_cwd(cwd)
        env = sbatch_env(os.environ)
        if env:
            names = list(env)
            chosen = option_vars(names)
            if chosen:  # the user meant these to choose job options: say so where they will see it
                log.warning("sbatch.input_env_cleared", variables=chosen,
                            why="hpcjobs writes every option into the script; set them in the job or site config")
            log.info("sbatch.env_cleared", variables=names)
        if not os.path.isdir(workdir):
            raise SchedulerError(f"working directory for the job does not exist: {workdir}")
        token = f"{TOKEN_PREFIX}{uuid.uuid4().hex}"
        argv = ["sbatch", "--parsable", f"--chdir={workdir}", f"--comment={token}"]
        began = self._clock()
        first = self._start(argv, input_text=script, cwd=workdir, env=env or None)
        return Pending(lambda: self._submitted(first, argv, script, workdir, env or None, token, began))

    def _submitted(
        self, first: Started, argv: list[str], script: str, workdir: str, env: Mapping[str, str | None] | None,
        token: str, start: float,
    ) -> str:
        """The job id of a submission :meth:`submit_start` began with ``first``."""
        maybe_sent = False  # an earlier attempt may have been accepted: look before sending again
        message = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self._delay(attempt - 1))
            if maybe_sent:
                found, check_msg = self._find_token(token)
                if found is not None:
                    return found
                if check_msg is not None:  # could not look: do not risk a second job
                    message = check_msg
                    continue
                maybe_sent = False
            if attempt == 0:
                result = self._collect(first, argv)
            else:
                result = self._run(argv, input_text=script, cwd=workdir, env=env)
            if result.ok:
                return parse_sbatch_output(result.stdout)
            message = one_line(result)
            kind = classify(message)
            if kind == "refused":
                raise SchedulerError(f"sbatch refused the job: {message}")
            if kind == "ambiguous":
                maybe_sent = True
        if maybe_sent:
            self._sleep(self._delay(self.retries))
            found, check_msg = self._find_token(token)
            if found is not None:
                return found
            if check_msg is not None:
                raise self._unreachable(
                    "sbatch", self.retries + 1, self._clock() - start, message,
                    f"; the job may or may not have been submitted: look for comment {token} "
                    "(squeue --me -o '%i %k')",
                )  # fmt: skip
        elapsed = self._clock() - start
        raise self._unreachable("sbatch", self.retries + 1, elapsed, message, "; no job was submitted")

    def _find_token(self, token: str) -> tuple[str | None, str | None]:
        """(job id carrying ``token``, None) / (None, None) when absent / (None, why) if unknown."""
        argv = ["squeue", "--me", "-h", "-t", "all", "-O", f"ArrayJobID:{SEP},Comment:{SEP}"]
        result = self._run(argv)
        if not result.ok:
            message = one_line(result)
            if classify(message) == "refused":
                raise SchedulerError(f"squeue failed while checking for a submitted job: {message}")
            return None, message
        for line in result.stdout.splitlines():
            parts = line.split(SEP)
            if len(parts) >= 2 and parts[1].strip() == token and parts[0].strip().isdigit():
                return parts[0].strip(), None
        return None, None

    # ------------------------------------------------------------------------------- status

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = check_job_ids(job_ids)
        if not ids:
            return {}
        joined = ",".join(ids)
        argv = ["squeue", "-h", "-r", "-t", "all"]
        if len(joined) <= _ARGV_BUDGET:
            argv += ["-j", joined]  # else: all jobs, filtered here (still one query)
        argv += ["-O", SQUEUE_FORMAT]
        result = self._query(argv, accept=(_INVALID_JOB,))
        records = parse_squeue(result.stdout) if result.ok else []
        self.remember_records(records)
        out, missing = match_records(ids, records)
        if missing:
            found, still_missing = match_records(missing, self.lookup_history(missing))
            out.update(found)
            for jid in still_missing:
                out[jid] = not_found(jid)
        return out

    def remember_records(self, records: Sequence[JobRecord]) -> None:
        """Keep what the controller reported, for later history lookups of the same jobs."""
        if len(self._seen) > _CACHE_MAX:
            self._seen.clear()
            self._array_tasks.clear()
        for rec in records:
            self._seen[rec.display_id] = rec
            if rec.array_job_id is not None:
                self._array_tasks.setdefault(rec.array_job_id, {})[rec.display_id] = None

    def lookup_history(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Jobs the controller has forgotten, from ONE sacct call (``-c``: jobcomp records)."""
        if self.history == "none":
            return []
        if self.history == "auto":
            records = self._sacct(job_ids, completion=False)
            if records is not None:
                self.history = "sacct"
                return records
            self.history = "jobcomp"  # accounting storage disabled: use the jobcomp records
        if self.history == "sacct":
            return self._sacct(job_ids, completion=False) or []
        return self._jobcomp(job_ids)

    def _sacct(self, job_ids: Sequence[str], *, completion: bool) -> list[JobRecord] | None:
        """None when Slurm has no accounting storage (only for completion=False)."""
        argv = ["sacct", "-n", "-P", "-X", f"--delimiter={SEP}", "-o", SACCT_FIELDS]
        if completion:
            argv.insert(1, "-c")
        argv += ["-j", ",".join(job_ids)]
        result = self._query(argv, accept=(*_ACCOUNTING_OFF, _INVALID_JOB))
        if not result.ok:
            if any(m in one_line(result).lower() for m in _ACCOUNTING_OFF):
                return None
            return []
        if not completion and any(m in result.stderr.lower() for m in _ACCOUNTING_OFF):
            return None
        return parse_sacct(result.stdout)

    def _jobcomp(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """``sacct -c`` knows only raw job ids (no array fields; ``-j 5_1`` silently means 5),
        so array ids are translated to raw ids with what squeue showed earlier."""
        raw_ids: dict[str, None] = {}
        for jid in job_ids:
            if "_" in jid:
                seen = self._seen.get(jid)
                if seen is not None:
                    raw_ids[seen.raw_id] = None
                continue  # a task we never saw in the queue: its raw id is unknowable here
            tasks = self._array_tasks.get(jid)
            if tasks:
                for task in tasks:
                    raw_ids[self._seen[task].raw_id] = None
            else:
                raw_ids[jid] = None
        if not raw_ids:
            return []
        records = self._sacct(list(raw_ids), completion=True) or []
        by_raw = {rec.raw_id: rec for rec in self._seen.values()}
        out: list[JobRecord] = []
        for rec in records:
            seen = by_raw.get(rec.raw_id)
            state = rec.raw_state
            reason = rec.reason
            if not state:
                state, reason = "UNREADABLE", "finished, but sacct -c could not read its state"
            if seen is not None:
                rec = JobRecord(rec.raw_id, seen.array_job_id, seen.array_task_id, state, rec.exit_code,
                                rec.signal, reason, seen.stdout_path, seen.name or rec.name)  # fmt: skip
            else:
                rec = JobRecord(rec.raw_id, None, None, state, rec.exit_code, rec.signal, reason,
                                None, rec.name)  # fmt: skip
            out.append(rec)
        return out

    # ------------------------------------------------------------------------------- others

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``scancel``; ids Slurm does not know exit 0 there and are fine here."""
        ids = check_job_ids(job_ids)
        for start in range(0, len(ids), _SCANCEL_CHUNK):
            self._query(["scancel", *ids[start : start + _SCANCEL_CHUNK]], accept=(_INVALID_JOB,))

    def log_path(self, job_id: str) -> str | None:
        """StdOut from ``scontrol show job`` while the controller knows the job; None otherwise."""
        (jid,) = check_job_ids([job_id])
        result = self._query(["scontrol", "show", "job", "-o", jid], accept=(_INVALID_JOB,))
        if not result.ok:
            return None
        rows = [scontrol_fields(line) for line in result.stdout.splitlines() if "JobId=" in line]
        if not rows:
            return None

        def ident(row: dict[str, str]) -> str:
            if row.get("ArrayJobId") and row.get("ArrayTaskId"):
                return f"{row['ArrayJobId']}_{row['ArrayTaskId']}"
            return row.get("JobId", "")

        pick = next((r for r in rows if ident(r) == jid), None)
        if pick is None:
            pick = next((r for r in rows if r.get("JobId") == jid), rows[0])
        return none_if_null(pick.get("StdOut"))

    def config_limits(self) -> tuple[int, int, bool]:
        """(MaxArraySize, MaxJobCount, accounting storage enabled) from ``scontrol show config``:
        set in slurm.conf, so a caller may keep them per configuration key (see
        :mod:`hpcjobs.sweep.limitcache`)."""
        return parse_array_limits(self._query(["scontrol", "show", "config"]).stdout)

    def task_plugin(self) -> str:
        """``TaskPlugin`` from ``scontrol show config`` (``task/affinity,task/cgroup``; ``task/none``):
        set in slurm.conf, so a caller may keep it per configuration key."""
        return parse_config_value(self._query(["scontrol", "show", "config"]).stdout, "TaskPlugin")

    def array_limits(self, qos: str | None = None, config: tuple[int, int, bool] | None = None) -> ArrayLimits:
        """MaxArraySize and MaxJobCount from ``scontrol show config`` (or ``config``, what
        :meth:`config_limits` returned); with accounting storage, the user's MaxSubmitJobs
        (association) and the QoS's MaxSubmitJobsPerUser from ``sacctmgr``, asked every time
        (``sacctmgr`` changes them without touching slurm.conf). Without slurmdbd (or without
        sacctmgr) those limits are not enforced, and None."""
        max_array, max_jobs, accounting = config if config is not None else self.config_limits()
        if not accounting:
            return ArrayLimits(max_array, max_jobs)
        user = os.environ.get("USER") or str(os.getuid())
        limits: list[tuple[int, str]] = []
        queries = [(["sacctmgr", "-n", "-P", "show", "assoc", f"where=user={user}", "format=MaxSubmit"],
                    "association MaxSubmitJobs")]  # fmt: skip
        if qos:
            queries.append((["sacctmgr", "-n", "-P", "show", "qos", f"where=name={qos}", "format=MaxSubmitPU"],
                            f"QoS {qos} MaxSubmitJobsPerUser"))  # fmt: skip
        for argv, what in queries:
            try:
                out = self._run(argv)
            except RunnerError:
                break  # no sacctmgr on this host: the limits are not visible
            value = parse_submit_limit(out.stdout) if out.ok else None
            if value is not None:
                limits.append((value, what))
        if not limits:
            return ArrayLimits(max_array, max_jobs)
        value, what = min(limits)
        return ArrayLimits(max_array, max_jobs, value, what)

    def job_records(self) -> int:
        """Job records the controller holds now, all users, every array task counted (what
        MaxJobCount limits: pending, running, and ended ones until MinJobAge). One ``squeue``.

        A pending array is one line, ``123_[0-6,8-1000%50]``, counted from its task list (printed
        whole: ``SLURM_BITSTR_LEN=0``): a third less time than ``squeue -r``'s line per task on the
        dev cluster with ~9,000 records (17-24 against 25-40 ms). A line that does not read as a
        job or such an array makes it ask ``squeue -r`` and count lines."""
        return self.job_records_start().result()

    def job_records_start(self) -> Pending[int]:
        """:meth:`job_records` begun: its ``squeue`` started, and this returns at once (the caller
        works while it runs, with no thread to wait for); :meth:`~hpcjobs.runner.Pending.discard`
        ends it when the count is no longer needed."""
        argv = ["squeue", "-h", "-t", "all", "-o", "%i"]
        env = {"SLURM_BITSTR_LEN": "0"}
        first = self._start(argv, env=env)
        return Pending(lambda: self._records_counted(self._query(argv, env=env, first=first)), first.discard)

    def _records_counted(self, result: Completed) -> int:
        counted = count_job_records(result.stdout)
        if counted is not None:
            return counted
        result = self._query(["squeue", "-h", "-r", "-t", "all", "-o", "%i"])
        return sum(1 for line in result.stdout.splitlines() if line.strip())

    def cluster_version(self) -> str:
        """From ``sinfo --version`` (local; needs no controller)."""
        if self._version is None:
            result = self._run(["sinfo", "--version"])
            if not result.ok:
                raise SchedulerError(f"sinfo --version failed: {one_line(result)}")
            self._version = parse_version(result.stdout)
        return self._version

    def __repr__(self) -> str:
        return f"SlurmCli(retries={self.retries}, backoff_s={self.backoff_s}, history={self.history!r})"


__all__ = ["SlurmCli", "classify", "expand_stdout", "parse_sacct", "parse_sbatch_output", "parse_squeue"]
