"""A FAKE ``pyslurm`` module (22.5.3 API subset hpcjobs queries with), for unit tests.

It models Slurm's job records *as real pyslurm 22.5.3 shows them*, quirks included, and
``tests/cluster/test_pyslurm_contract.py`` checks exactly that on the dev cluster: it submits the
same jobs through sbatch, then compares real ``pyslurm.Jobs.load()`` / ``Job.load`` / ``Job.cancel``
with this fake after :meth:`FakePyslurm.sbatch` + :meth:`FakePyslurm.finish` of the same jobs.
The quirks modelled (measured, see docs/benchmarks.md "pyslurm"):

- ``Jobs.load()`` is a dict ``int job id -> Job``; ``Job.load(unknown id)`` raises ``RPCError``
  ("Invalid job id specified", errno 2017); ``Job(unknown id).cancel()`` does not raise.
- array task 0 has ``array_task_id`` None (pyslurm reads 0 as unset), like a pending array's meta
  record; the meta record lists its waiting tasks in ``array_tasks_waiting`` ("0-3") and its
  ``standard_output`` has task id 4294967294 in place of ``%a``.
- when an array runs, tasks 0..n-2 get new job ids and the last task keeps the array's id.
- ``standard_output`` is expanded (``%x``, ``%j``, ``%A``, ``%a``) relative to the working directory;
  ``exit_code`` is the exit status, ``exit_code_signal`` the signal; ``state_reason`` "None".

Submission is not part of it: both hpcjobs backends submit through sbatch.
"""

from __future__ import annotations

import importlib.machinery
import re
import types
from typing import Any

NO_TASK = 4294967294
_SPEC = re.compile(r"%(\d*)([%Aajx])")


class FakeJob:
    def __init__(self, job_id: int, name: str, **kw: Any) -> None:
        self.id = job_id
        self.name = name
        self.state = "PENDING"
        self.state_reason = "None"
        self.exit_code = 0
        self.exit_code_signal = 0
        self.standard_output: str | None = None
        self.array_id: int | None = None
        self.array_task_id: int | None = None
        self.array_tasks_waiting: str | None = None
        for key, value in kw.items():
            setattr(self, key, value)


def expand(pattern: str, workdir: str, *, job_id: int, array_id: int | None, task: int | None, name: str) -> str:
    values = {"%": "%", "j": str(job_id), "x": name, "A": str(array_id if array_id is not None else job_id),
              "a": str(task if task is not None else NO_TASK)}  # fmt: skip

    def sub(m: re.Match[str]) -> str:
        value = values[m.group(2)]
        return value.zfill(int(m.group(1))) if m.group(1) and value.isdigit() else value

    path = _SPEC.sub(sub, pattern)
    return path if path.startswith("/") else f"{workdir.rstrip('/')}/{path}"


class FakePyslurm(types.ModuleType):
    """The fake module; ``store`` and ``counters`` are for the tests to look into."""

    __version__: str
    store: dict[int, FakeJob]
    counters: dict[str, int]
    next_error: str | None
    specs: dict[int, dict[str, Any]]
    RPCError: type[Exception]
    Job: Any
    Jobs: Any

    def sbatch(self, *, workdir: str, name: str = "sbatch", output: str | None = None,
               array: list[int] | None = None, held: bool = False) -> int:  # fmt: skip
        """What pyslurm shows right after ``sbatch [-J name] [-o output] [--array=...] [-H]``."""
        job_id = self.counters["next_id"]
        self.counters["next_id"] += 1
        pattern = output or ("slurm-%A_%a.out" if array else "slurm-%j.out")
        self.specs[job_id] = {"workdir": workdir, "name": name, "pattern": pattern, "array": array}
        reason = "JobHeldUser" if held else "None"
        if array:
            waiting = ",".join(str(t) for t in array) if len(array) < 2 or array != list(
                range(array[0], array[-1] + 1)) else f"{array[0]}-{array[-1]}"  # fmt: skip
            self.store[job_id] = FakeJob(
                job_id, name, state_reason=reason, array_id=job_id, array_task_id=None,
                array_tasks_waiting=waiting,
                standard_output=expand(pattern, workdir, job_id=job_id, array_id=job_id, task=None, name=name),
            )  # fmt: skip
        else:
            self.store[job_id] = FakeJob(
                job_id, name, state_reason=reason,
                standard_output=expand(pattern, workdir, job_id=job_id, array_id=None, task=None, name=name),
            )  # fmt: skip
        return job_id

    def start(self, job_id: int) -> None:
        """The (plain) job runs."""
        self.store[job_id].state = "RUNNING"

    def finish(self, job_id: int, exit_codes: dict[int, int] | int = 0, *, signal: int = 0,
               state: str | None = None) -> dict[int, int]:  # fmt: skip
        """The job (every task of an array) has ended; returns {task: raw job id} for arrays."""
        spec = self.specs[job_id]
        if not spec["array"]:
            job = self.store[job_id]
            code = int(exit_codes) if isinstance(exit_codes, int) else 0
            job.exit_code, job.exit_code_signal = code, signal
            job.state = state or ("CANCELLED" if signal else "FAILED" if code else "COMPLETED")
            job.state_reason = "NonZeroExitCode" if job.state == "FAILED" else "None"
            return {}
        tasks: list[int] = spec["array"]
        out: dict[int, int] = {}
        for i, task in enumerate(tasks):
            raw = job_id if i == len(tasks) - 1 else self.counters["next_id"]
            if raw != job_id:
                self.counters["next_id"] += 1
            code = exit_codes.get(task, 0) if isinstance(exit_codes, dict) else int(exit_codes)
            self.store[raw] = FakeJob(
                raw, spec["name"], array_id=job_id, array_task_id=(task or None), exit_code=code,
                state="FAILED" if code else "COMPLETED", state_reason="NonZeroExitCode" if code else "None",
                standard_output=expand(spec["pattern"], spec["workdir"], job_id=raw, array_id=job_id, task=task,
                                       name=spec["name"]),
            )  # fmt: skip
            out[task] = raw
        return out


def make_fake_pyslurm(version: str = "22.5.3", *, with_job_load: bool = True) -> FakePyslurm:
    """A pure-Python stand-in for the pyslurm API subset (see the module docstring)."""
    mod = FakePyslurm("pyslurm")
    mod.__spec__ = importlib.machinery.ModuleSpec("pyslurm", None)
    mod.__version__ = version
    store: dict[int, FakeJob] = {}
    counters = {"next_id": 100, "jobs_load": 0, "job_load": 0, "cancel": 0}
    mod.store = store
    mod.counters = counters
    mod.specs = {}
    mod.next_error = None

    class RPCError(Exception):
        def __init__(self, msg: str = "", errno: int = 0) -> None:
            super().__init__(msg)
            self.msg = msg
            self.errno = errno

    def maybe_fail() -> None:
        if mod.next_error is not None:
            err, mod.next_error = mod.next_error, None
            raise RPCError(err)

    class Job:
        def __init__(self, job_id: int) -> None:
            self.id = job_id

        @staticmethod
        def load(job_id: int) -> FakeJob:
            counters["job_load"] += 1
            maybe_fail()
            if not isinstance(job_id, int):
                raise TypeError("job_id must be an int")
            if job_id not in store:
                raise RPCError("Invalid job id specified", 2017)
            return store[job_id]

        def cancel(self) -> None:
            counters["cancel"] += 1
            maybe_fail()
            job = store.get(self.id)
            if job is None:
                return  # real pyslurm ignores ESLURM_INVALID_JOB_ID for SIGKILL
            if job.state == "PENDING":  # never ran: no signal, the pending reason stays
                job.state = "CANCELLED"
            elif job.state == "RUNNING":
                job.state, job.state_reason, job.exit_code_signal = "CANCELLED", "None", 15

    if not with_job_load:
        del Job.load

    class Jobs(dict):  # type: ignore[type-arg]
        @staticmethod
        def load() -> Jobs:
            counters["jobs_load"] += 1
            maybe_fail()
            return Jobs(dict(store))

    mod.RPCError = RPCError
    mod.Job = Job
    mod.Jobs = Jobs
    return mod


VIEW_FIELDS = ("name", "state", "state_reason", "exit_code", "exit_code_signal", "standard_output",
               "array_id", "array_task_id", "array_tasks_waiting")  # fmt: skip


def view(job: Any, ids: dict[int, str]) -> dict[str, Any]:
    """The fields hpcjobs reads from a pyslurm Job, job ids replaced by names from ``ids`` so that
    a real and a fake record of the same job compare equal."""
    out: dict[str, Any] = {"id": ids.get(int(job.id), job.id)}
    for name in VIEW_FIELDS:
        value = getattr(job, name)
        if name == "array_id" and value is not None:
            value = ids.get(int(value), value)
        if name == "standard_output" and value is not None:
            for raw, label in ids.items():
                value = re.sub(rf"(?<!\d){raw}(?!\d)", label, value)
        out[name] = value
    return out
