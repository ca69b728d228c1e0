"""The pyslurm backend and backend selection, against a FAKE ``pyslurm`` module.

THIS IS A FAKE. No pyslurm release on PyPI matches Debian's Slurm 22.05 (PyPI has 17.x, 18.x and
25.11.x; pyslurm must match Slurm's major.minor), so the real module cannot be installed on the dev
machines. ``FakePyslurm`` below implements, in pure Python, only the documented pyslurm >= 22.5.2
API subset hpcjobs uses: ``JobSubmitDescription(script=..., working_directory=...)`` with
``load_sbatch_options()`` and ``submit()``, ``Job.load(id)`` (raises ``RPCError`` for an unknown job)
with ``state``, ``state_reason``, ``exit_code``, ``exit_code_signal``, ``standard_output``,
``array_id``, ``array_task_id``, ``array_tasks_waiting``, ``Job(id).cancel()``, ``Jobs.load()``,
``RPCError`` and ``__version__``; ``time_limit`` accepts only an int or "HH:MM:SS" (a string like
"5" raises TypeError, as real pyslurm 22.5.3 does). It is injected into ``sys.modules``; a real
pyslurm was verified by hand against the dev cluster only outside this test suite.
"""

from __future__ import annotations

import importlib.machinery
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import hpcjobs.schedulers as schedulers
from hpcjobs.errors import (
    BackendUnavailable,
    ConfigError,
    ControllerUnreachable,
    HpcjobsError,
    SchedulerError,
)
from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.schedulers import describe_backend, get_scheduler
from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend, expand_task_ranges, pyslurm_usable
from hpcjobs.schedulers.slurm_cli import SEP, SlurmCli
from hpcjobs.schedulers.states import JobState
from tests.fakes import unexpected

NO_TASK = 4294967294

# ------------------------------------------------------------------------------------ the fake


class FakeJob:
    def __init__(self, job_id: int, name: str, workdir: str, **kw: Any) -> None:
        self.id = job_id
        self.name = name
        self.state = "PENDING"
        self.state_reason = "None"
        self.exit_code = 0
        self.exit_code_signal = 0
        self.standard_output = f"{workdir}/slurm-{job_id}.out"
        self.array_id: int | None = None
        self.array_task_id: int | None = None
        self.array_tasks_waiting: str | None = None
        for key, value in kw.items():
            setattr(self, key, value)


class FakePyslurm(types.ModuleType):
    """The fake module's type: the attributes it carries (tests reach into store/counters)."""

    __version__: str
    store: dict[int, FakeJob]
    counters: dict[str, int]
    next_error: str | None
    last_desc: Any
    RPCError: type[Exception]
    JobSubmitDescription: Any
    Job: Any
    Jobs: Any


def make_fake_pyslurm(version: str = "22.5.3", *, with_sbatch_options: bool = True) -> FakePyslurm:
    """A pure-Python stand-in for the pyslurm API subset (see the module docstring)."""
    mod = FakePyslurm("pyslurm")
    mod.__spec__ = importlib.machinery.ModuleSpec("pyslurm", None)
    mod.__version__ = version
    store: dict[int, FakeJob] = {}
    counters = {"next_id": 100, "jobs_load": 0, "job_load": 0, "cancel": 0}
    mod.store = store
    mod.counters = counters
    mod.next_error = None

    class RPCError(Exception):
        pass

    class JobSubmitDescription:
        def __init__(self, **kwargs: Any) -> None:
            self.script: str | None = None
            self.working_directory: str | None = None
            self.name: str | None = None
            self.array: str | None = None
            self.time_limit: Any = None
            for key, value in kwargs.items():
                setattr(self, key, value)
            mod.last_desc = self

        def _load_sbatch_options(self, overwrite: bool = False) -> None:
            for line in (self.script or "").splitlines():
                m = re.match(r"#SBATCH\s+(--[\w-]+|-\w)(?:[=\s]+(\S+))?", line)
                if not m:
                    continue
                opt, val = m.group(1), m.group(2)
                if opt in ("--array", "-a"):
                    self.array = val
                elif opt in ("--job-name", "-J"):
                    self.name = val
                elif opt in ("--time", "-t"):
                    self.time_limit = int(val) if val and val.isdigit() else val

        def submit(self) -> int:
            if not self.script:
                raise ValueError("You need to provide a batch script.")
            if isinstance(self.time_limit, str) and not re.fullmatch(r"\d+:\d\d:\d\d", self.time_limit):
                raise TypeError(f"invalid time_limit {self.time_limit!r}")
            if mod.next_error is not None:
                err, mod.next_error = mod.next_error, None
                raise RPCError(err)
            job_id = counters["next_id"]
            counters["next_id"] += 1
            workdir = self.working_directory or "/"
            if self.array:
                store[job_id] = FakeJob(job_id, self.name or "sbatch", workdir, array_id=job_id,
                                        array_task_id=NO_TASK, array_tasks_waiting=self.array)  # fmt: skip
            else:
                store[job_id] = FakeJob(job_id, self.name or "sbatch", workdir)
            return job_id

    if with_sbatch_options:
        JobSubmitDescription.load_sbatch_options = JobSubmitDescription._load_sbatch_options  # type: ignore[attr-defined]

    class Job:
        def __init__(self, job_id: int) -> None:
            self.id = job_id

        @staticmethod
        def load(job_id: int) -> FakeJob:
            counters["job_load"] += 1
            if not isinstance(job_id, int):
                raise TypeError("job_id must be an int")
            if job_id not in store:
                raise RPCError("Invalid job id specified")
            return store[job_id]

        def cancel(self) -> None:
            counters["cancel"] += 1
            job = store.get(self.id)
            if job is None:
                return  # real pyslurm ignores ESLURM_INVALID_JOB_ID for SIGKILL
            job.state = "CANCELLED"
            job.exit_code_signal = 9

    class Jobs(dict):  # type: ignore[type-arg]
        @staticmethod
        def load() -> Jobs:
            counters["jobs_load"] += 1
            return Jobs(dict(store))

    mod.RPCError = RPCError
    mod.JobSubmitDescription = JobSubmitDescription
    mod.Job = Job
    mod.Jobs = Jobs
    return mod


class VersionRunner(RecordingRunner):
    """Fake Runner: answers ``sinfo --version`` (and records everything)."""

    def __init__(self, version: str = "slurm-wlm 22.05.8", answers: Mapping[str, Completed] | None = None):
        super().__init__(answer=self._answer)
        self.version = version
        self.answers = dict(answers or {})

    def _answer(self, call: Call) -> Completed:
        if call.argv[0] in self.answers:
            return self.answers[call.argv[0]]
        if call.argv == ("sinfo", "--version"):
            return Completed(call.argv, 0, f"{self.version}\n", "")
        unexpected(call)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCJOBS_SCHEDULER", raising=False)


@pytest.fixture
def no_pyslurm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyslurm", None)  # import pyslurm -> ImportError


@pytest.fixture
def fake_pyslurm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePyslurm]:
    mod = make_fake_pyslurm("22.5.3")
    monkeypatch.setitem(sys.modules, "pyslurm", mod)
    yield mod


def install(monkeypatch: pytest.MonkeyPatch, mod: FakePyslurm | None) -> None:
    monkeypatch.setitem(sys.modules, "pyslurm", mod)


# ------------------------------------------------------------------------------------ usability


def test_matching_pyslurm_is_usable(fake_pyslurm: FakePyslurm) -> None:
    usable, why = pyslurm_usable("22.05.8")
    assert usable
    assert why == "pyslurm 22.5.3 matches Slurm 22.05.8"


def test_mismatched_pyslurm_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, make_fake_pyslurm("25.11.2"))
    usable, why = pyslurm_usable("22.05.8")
    assert not usable
    assert "25.11.2" in why and "22.05.8" in why and "22.5.x" in why


def test_missing_pyslurm_is_not_usable(no_pyslurm: None) -> None:
    assert pyslurm_usable("22.05.8") == (False, "pyslurm not importable")


def test_pyslurm_failing_at_import_is_not_usable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pkg = tmp_path / "pyslurm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        'raise RuntimeError("Slurm version mismatch: requires Slurm 25.11, found 22.5")\n'
    )
    monkeypatch.delitem(sys.modules, "pyslurm", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    usable, why = pyslurm_usable("22.05.8")
    assert not usable
    assert "RuntimeError" in why and "version mismatch" in why
    assert get_scheduler(VersionRunner()).name == "slurm-cli"  # and selection survives it
    monkeypatch.delitem(sys.modules, "pyslurm", raising=False)


def test_pyslurm_without_the_new_api_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, make_fake_pyslurm("22.5.1", with_sbatch_options=False))
    usable, why = pyslurm_usable("22.05.8")
    assert not usable and "load_sbatch_options" in why


def test_unknown_slurm_version_is_not_usable(fake_pyslurm: FakePyslurm) -> None:
    usable, why = pyslurm_usable(None)
    assert not usable and "unknown" in why


# ------------------------------------------------------------------------------------ selection


def test_get_scheduler_without_pyslurm_is_the_cli_and_cheap(no_pyslurm: None) -> None:
    runner = VersionRunner()
    sched = get_scheduler(runner)
    assert isinstance(sched, SlurmCli)
    assert runner.calls == []  # no pyslurm: not even sinfo --version
    assert describe_backend(runner) == "slurm-cli (pyslurm not importable)"


def test_get_scheduler_with_matching_pyslurm(fake_pyslurm: FakePyslurm) -> None:
    runner = VersionRunner("slurm-wlm 22.05.8")
    sched = get_scheduler(runner)
    assert isinstance(sched, PyslurmBackend)
    assert sched.name == "pyslurm"
    assert describe_backend(runner) == "pyslurm (pyslurm 22.5.3 matches Slurm 22.05.8)"


def test_get_scheduler_with_mismatched_pyslurm(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, make_fake_pyslurm("25.11.2"))
    runner = VersionRunner("slurm-wlm 22.05.8")
    assert isinstance(get_scheduler(runner), SlurmCli)
    line = describe_backend(runner)
    assert line.startswith("slurm-cli (pyslurm 25.11.2 does not match Slurm 22.05.8")
    assert "\n" not in line


def test_get_scheduler_when_sinfo_is_missing(fake_pyslurm: FakePyslurm) -> None:
    from hpcjobs.errors import RunnerError

    def runner(argv: Sequence[str], **kw: Any) -> Completed:
        raise RunnerError("sinfo: program not found on PATH")

    assert isinstance(get_scheduler(runner), SlurmCli)
    assert "Slurm version is unknown" in describe_backend(runner)


def test_env_forces_cli(fake_pyslurm: FakePyslurm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "cli")
    assert isinstance(get_scheduler(VersionRunner()), SlurmCli)
    assert describe_backend(VersionRunner()) == "slurm-cli (forced by HPCJOBS_SCHEDULER=cli)"


def test_env_forces_pyslurm(fake_pyslurm: FakePyslurm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "pyslurm")
    assert isinstance(get_scheduler(VersionRunner()), PyslurmBackend)


@pytest.mark.parametrize("version", [None, "25.11.2"])
def test_forced_pyslurm_unusable_says_why(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    install(monkeypatch, None if version is None else make_fake_pyslurm(version))
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "pyslurm")
    with pytest.raises(BackendUnavailable) as info:
        get_scheduler(VersionRunner())
    assert isinstance(info.value, HpcjobsError)
    message = str(info.value)
    assert "HPCJOBS_SCHEDULER=pyslurm" in message
    assert ("not importable" in message) if version is None else ("does not match" in message)
    assert describe_backend(VersionRunner()).startswith("none: ")


def test_prefer_beats_env(fake_pyslurm: FakePyslurm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "pyslurm")
    assert isinstance(get_scheduler(VersionRunner(), prefer="cli"), SlurmCli)


def test_bad_backend_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "slurmrestd")
    with pytest.raises(ConfigError, match="HPCJOBS_SCHEDULER=slurmrestd"):
        get_scheduler(VersionRunner())


def test_importing_schedulers_does_not_import_pyslurm() -> None:
    code = textwrap.dedent("""
        import sys
        import hpcjobs.schedulers
        print("pyslurm" in sys.modules, "hpcjobs.schedulers.pyslurm_backend" in sys.modules)
    """)
    root = Path(schedulers.__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------------ the backend


def backend(mod: FakePyslurm, runner: VersionRunner | None = None) -> PyslurmBackend:
    return PyslurmBackend(runner or VersionRunner(), module=mod, sleep=lambda s: None)


def test_submit_reads_sbatch_lines_and_sets_workdir(fake_pyslurm: FakePyslurm, tmp_path: Path) -> None:
    b = backend(fake_pyslurm)
    job_id = b.submit("#!/bin/bash\n#SBATCH -J hello\n#SBATCH -t 00:01:00\nexit 3\n", cwd=str(tmp_path))
    assert job_id == "100"
    desc = fake_pyslurm.last_desc
    assert desc.working_directory == str(tmp_path)
    assert fake_pyslurm.store[100].name == "hello"


def test_submit_bad_time_limit_is_a_scheduler_error(fake_pyslurm: FakePyslurm) -> None:
    with pytest.raises(SchedulerError, match="time_limit"):
        backend(fake_pyslurm).submit("#!/bin/bash\n#SBATCH --time=5min\ntrue\n")


@pytest.mark.parametrize(
    ("error", "cls"),
    [("Requested node configuration is not available", SchedulerError),
     ("Unable to contact slurm controller (connect failure)", ControllerUnreachable)],
)  # fmt: skip
def test_submit_rpc_errors(fake_pyslurm: FakePyslurm, error: str, cls: type[Exception]) -> None:
    fake_pyslurm.next_error = error
    with pytest.raises(cls, match=re.escape(error)) as info:
        backend(fake_pyslurm).submit("#!/bin/bash\ntrue\n")
    if cls is SchedulerError:
        assert not isinstance(info.value, ControllerUnreachable)


def test_status_is_one_rpc_with_real_exit_codes(fake_pyslurm: FakePyslurm) -> None:
    b = backend(fake_pyslurm)
    ids = [b.submit("#!/bin/bash\ntrue\n") for _ in range(50)]
    store = fake_pyslurm.store
    store[int(ids[0])].state, store[int(ids[0])].exit_code = "FAILED", 3
    store[int(ids[1])].state, store[int(ids[1])].exit_code_signal = "CANCELLED", 15
    store[int(ids[2])].state = "RUNNING"
    before = fake_pyslurm.counters["jobs_load"]
    st = b.status(ids)
    assert fake_pyslurm.counters["jobs_load"] - before == 1
    assert len(st) == 50
    assert (st[ids[0]].state, st[ids[0]].exit_code) == (JobState.FAILED, 3)
    assert (st[ids[1]].state, st[ids[1]].exit_code, st[ids[1]].signal) == (JobState.CANCELLED, None, 15)
    assert st[ids[2]].state is JobState.RUNNING and st[ids[2]].exit_code is None
    assert st[ids[3]].state is JobState.PENDING


def test_status_of_arrays(fake_pyslurm: FakePyslurm) -> None:
    b = backend(fake_pyslurm)
    pending = b.submit("#!/bin/bash\n#SBATCH --array=0-2\ntrue\n")
    st = b.status([pending, f"{pending}_1"])
    assert {k for k in st} == {pending, f"{pending}_0", f"{pending}_1", f"{pending}_2"}
    assert st[pending].state is JobState.PENDING
    # a split, finished array: one job record per task
    store = fake_pyslurm.store
    for task, raw in enumerate((200, 201, 202)):
        store[raw] = FakeJob(raw, "arr", "/w", array_id=200, array_task_id=task, state="COMPLETED")
    store[201].state, store[201].exit_code = "FAILED", 1
    st = b.status(["200"])
    assert st["200_1"].exit_code == 1 and st["200_0"].is_success
    assert st["200"].state is JobState.FAILED and st["200"].exit_code == 1
    assert st["200"].reason == "3 tasks: 2 COMPLETED, 1 FAILED"


def test_status_falls_back_to_history_for_forgotten_jobs(fake_pyslurm: FakePyslurm) -> None:
    row = SEP.join(["77", "77", "COMPLETED", "0:0", "", "old"]) + "\n"
    runner = VersionRunner(answers={"sacct": Completed(("sacct",), 0, row, "")})
    st = backend(fake_pyslurm, runner).status(["77", "78"])
    assert st["77"].state is JobState.COMPLETED and st["77"].exit_code == 0
    assert st["78"].state is JobState.UNKNOWN and not st["78"].known
    assert runner.programs() == ["sacct"]


def test_wait_and_cancel(fake_pyslurm: FakePyslurm) -> None:
    runner = VersionRunner(answers={"scancel": Completed(("scancel",), 0, "", "")})
    b = backend(fake_pyslurm, runner)
    job = b.submit("#!/bin/bash\nsleep 60\n")
    b.cancel([job, "999999", "555_1"])
    assert runner.argvs() == [("scancel", "555_1")]  # array tasks go through scancel
    st = b.wait([job], poll_s=0.01, timeout_s=5)
    assert st[job].state is JobState.CANCELLED


def test_log_path(fake_pyslurm: FakePyslurm, tmp_path: Path) -> None:
    b = backend(fake_pyslurm)
    job = b.submit("#!/bin/bash\ntrue\n", cwd=str(tmp_path))
    assert b.log_path(job) == f"{tmp_path}/slurm-{job}.out"
    assert b.log_path("424242") is None


def test_cluster_version_via_cli(fake_pyslurm: FakePyslurm) -> None:
    assert backend(fake_pyslurm, VersionRunner("slurm 22.05.11")).cluster_version() == "22.05.11"


@pytest.mark.parametrize(
    ("text", "tasks"),
    [("0-2", [0, 1, 2]), ("1,3,5-6", [1, 3, 5, 6]), ("0-10:5%2", [0, 5, 10]), ("[4]", [4]),
     ("(null)", []), ("x-y", []), (None, [])],
)  # fmt: skip
def test_expand_task_ranges(text: str | None, tasks: list[int]) -> None:
    assert expand_task_ranges(text) == tasks
