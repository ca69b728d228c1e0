"""The pyslurm backend and backend selection, against the FAKE ``pyslurm`` of tests/fake_pyslurm.py.

The fake models job records as real pyslurm 22.5.3 shows them (quirks included); the contract test
tests/cluster/test_pyslurm_contract.py compares it with real pyslurm on the dev cluster, and the
cluster tests run every scheduler test through real pyslurm too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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
from hpcjobs.schedulers import AutoScheduler, Scheduler, describe_backend, get_scheduler
from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend, expand_task_ranges, pyslurm_usable
from hpcjobs.schedulers.slurm_cli import SEP, SlurmCli
from hpcjobs.schedulers.states import JobState
from tests.fake_pyslurm import FakePyslurm, make_fake_pyslurm
from tests.fakes import unexpected

CLI_QUERIES = "status/wait/cancel/logs via squeue/sacct/scancel/scontrol"


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
    assert auto(get_scheduler(VersionRunner())).backend.name == "slurm-cli"  # and selection survives it
    monkeypatch.delitem(sys.modules, "pyslurm", raising=False)


def test_pyslurm_without_the_new_api_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, make_fake_pyslurm("22.5.1", with_job_load=False))
    usable, why = pyslurm_usable("22.05.8")
    assert not usable and "Job.load" in why


def test_unknown_slurm_version_is_not_usable(fake_pyslurm: FakePyslurm) -> None:
    usable, why = pyslurm_usable(None)
    assert not usable and "unknown" in why


# ------------------------------------------------------------------------------------ selection


def auto(sched: Scheduler) -> AutoScheduler:
    """The scheduler ``auto`` gives, with its query backend not chosen yet."""
    assert isinstance(sched, AutoScheduler), sched
    return sched


def test_get_scheduler_without_pyslurm_is_the_cli_and_cheap(no_pyslurm: None) -> None:
    runner = VersionRunner()
    sched = get_scheduler(runner)
    assert isinstance(auto(sched).backend, SlurmCli)
    assert runner.calls == []  # no pyslurm: not even sinfo --version
    assert describe_backend(runner) == f"slurm-cli: submit via sbatch, {CLI_QUERIES} (pyslurm not importable)"


def test_get_scheduler_with_matching_pyslurm(fake_pyslurm: FakePyslurm) -> None:
    runner = VersionRunner("slurm-wlm 22.05.8")
    sched = get_scheduler(runner)
    assert isinstance(auto(sched).backend, PyslurmBackend)
    assert sched.name == "pyslurm"
    assert describe_backend(runner) == (
        "pyslurm: submit via sbatch, status/wait/cancel/logs via pyslurm (pyslurm 22.5.3 matches Slurm 22.05.8)"
    )


def test_get_scheduler_with_mismatched_pyslurm(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, make_fake_pyslurm("25.11.2"))
    runner = VersionRunner("slurm-wlm 22.05.8")
    assert isinstance(auto(get_scheduler(runner)).backend, SlurmCli)
    line = describe_backend(runner)
    assert line.startswith(f"slurm-cli: submit via sbatch, {CLI_QUERIES} (pyslurm 25.11.2 does not match Slurm 22.05.8")
    assert "\n" not in line


def test_get_scheduler_when_sinfo_is_missing(fake_pyslurm: FakePyslurm) -> None:
    from hpcjobs.errors import RunnerError

    def runner(argv: Sequence[str], **kw: Any) -> Completed:
        raise RunnerError("sinfo: program not found on PATH")

    assert isinstance(auto(get_scheduler(runner)).backend, SlurmCli)
    assert "Slurm version is unknown" in describe_backend(runner)


def test_env_forces_cli(fake_pyslurm: FakePyslurm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "cli")
    assert isinstance(get_scheduler(VersionRunner()), SlurmCli)
    line = describe_backend(VersionRunner())
    assert line == f"slurm-cli: submit via sbatch, {CLI_QUERIES} (forced by HPCJOBS_SCHEDULER=cli)"


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


def backend_events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "scheduler.backend" in r.getMessage()]


def test_auto_submits_without_choosing_and_the_first_query_chooses_pyslurm(
    fake_pyslurm: FakePyslurm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="hpcjobs")
    job_id = fake_pyslurm.sbatch(workdir=str(tmp_path))
    runner = VersionRunner(answers={"sbatch": sbatch_ok(str(job_id))})
    sched = auto(get_scheduler(runner))
    assert sched.submit("#!/bin/bash\nexit 3\n", cwd=str(tmp_path)) == str(job_id)
    assert [c.argv[0] for c in runner.calls] == ["sbatch"]  # no sinfo --version for a submission
    assert sched.chosen is None and backend_events(caplog) == []
    fake_pyslurm.finish(job_id, 3)
    st = sched.wait([str(job_id)], poll_s=0.01, timeout_s=5)[str(job_id)]
    assert (st.state, st.exit_code) == (JobState.FAILED, 3)
    assert [c.argv for c in runner.calls[1:]] == [("sinfo", "--version")]  # the wait itself: no process
    chosen = sched.chosen
    assert chosen is not None and chosen[0] == "pyslurm" and "matches Slurm 22.05.8" in chosen[1]
    assert isinstance(sched.backend, PyslurmBackend) and sched.backend.cli is sched.cli
    (event,) = backend_events(caplog)
    assert "backend='pyslurm'" in event and "queries='pyslurm'" in event and "submit='sbatch'" in event
    assert sched.status([str(job_id)])[str(job_id)].state is JobState.FAILED
    assert len(runner.calls) == 2 and len(backend_events(caplog)) == 1  # chosen once, then kept


def test_auto_with_mismatched_pyslurm_queries_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="hpcjobs")
    install(monkeypatch, make_fake_pyslurm("25.11.2"))
    runner = VersionRunner(answers={"sbatch": sbatch_ok("51"), "scancel": Completed(("scancel",), 0, "", "")})
    sched = auto(get_scheduler(runner))
    sched.submit("#!/bin/bash\ntrue\n")
    assert sched.chosen is None and sched.name == "auto"
    sched.cancel(["51"])
    assert [c.argv[0] for c in runner.calls] == ["sbatch", "sinfo", "scancel"]
    assert sched.backend is sched.cli and sched.name == "slurm-cli"
    (event,) = backend_events(caplog)
    assert "backend='cli'" in event and "does not match Slurm 22.05.8" in event


def test_forced_unusable_pyslurm_fails_before_anything_is_submitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit request is checked when the scheduler is asked for: no job is submitted that the
    requested backend could then not follow."""
    install(monkeypatch, make_fake_pyslurm("25.11.2"))
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "pyslurm")
    runner = VersionRunner()
    with pytest.raises(BackendUnavailable) as info:
        get_scheduler(runner)
    assert [c.argv for c in runner.calls] == [("sinfo", "--version")]  # no sbatch
    assert "\n" not in str(info.value) and "HPCJOBS_SCHEDULER=pyslurm" in str(info.value)


def test_the_environment_is_read_when_the_scheduler_is_made(fake_pyslurm: FakePyslurm, tmp_path: Path) -> None:
    sched = auto(get_scheduler(VersionRunner()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPCJOBS_SCHEDULER", "cli")  # too late: this scheduler was made for auto
        assert sched.name == "auto"
        assert sched.backend.name == sched.name == "pyslurm"


_FRESH_PROCESS = """
import sys
from hpcjobs.runner import Completed, RecordingRunner
from hpcjobs.schedulers import get_scheduler

def answer(call):
    if call.argv[0] == "sbatch":
        return Completed(call.argv, 0, "77\\n", "")
    if call.argv == ("sinfo", "--version"):
        return Completed(call.argv, 0, "slurm-wlm 22.05.8\\n", "")
    if call.argv[0] == "scancel":
        return Completed(call.argv, 0, "", "")
    raise AssertionError(call.argv)

runner = RecordingRunner(answer=answer)
sched = get_scheduler(runner)
job_id = sched.submit("#!/bin/bash\\ntrue\\n")
print(job_id, [c.argv[0] for c in runner.calls], "pyslurm" in sys.modules)
sched.cancel([job_id + "_1"])  # a task id: scancel, through either backend
print(sched.name, [c.argv[0] for c in runner.calls], "pyslurm" in sys.modules)
"""

_MATCHING_PYSLURM = """
__version__ = "22.5.3"
class RPCError(Exception):
    pass
class Job:
    def __init__(self, job_id):
        self.id = job_id
    @staticmethod
    def load(job_id):
        raise RPCError("Invalid job id")
    def cancel(self):
        pass
class Jobs(dict):
    @staticmethod
    def load():
        return Jobs()
"""


def test_a_submission_imports_no_pyslurm_in_a_fresh_process(tmp_path: Path) -> None:
    """With a matching pyslurm installed, a submission neither imports it nor runs ``sinfo``;
    the first query does both, once."""
    (tmp_path / "pyslurm").mkdir()
    (tmp_path / "pyslurm" / "__init__.py").write_text(_MATCHING_PYSLURM)
    root = Path(schedulers.__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "HPCJOBS_SCHEDULER"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(root)])
    out = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], capture_output=True, text=True, cwd=root,
                         env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "77 ['sbatch'] False",
        "pyslurm ['sbatch', 'sinfo', 'scancel'] True",
    ]


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


def sbatch_ok(job_id: str) -> Completed:
    return Completed(("sbatch",), 0, f"{job_id}\n", "")


@pytest.mark.parametrize("script", [
    "#!/bin/bash\n#SBATCH --job-name='a b #c'\n#SBATCH --partition=gpu\n#SBATCH --time=5\ntrue\n",
    "#!/bin/bash\n#SBATCH --gpus-per-node=1\n#SBATCH --hint=nomultithread\nexit 3\n",
])  # fmt: skip
def test_submit_goes_through_sbatch_with_the_script_untouched(
    fake_pyslurm: FakePyslurm, tmp_path: Path, script: str
) -> None:
    """pyslurm's own submission is unfaithful (docs/benchmarks.md): sbatch reads the #SBATCH lines."""
    runner = VersionRunner(answers={"sbatch": sbatch_ok("4242")})
    job_id = backend(fake_pyslurm, runner).submit(script, cwd=str(tmp_path))
    assert job_id == "4242"
    (call,) = runner.calls
    assert call.argv[:3] == ("sbatch", "--parsable", f"--chdir={tmp_path}")
    assert call.input_text == script
    assert not hasattr(fake_pyslurm, "JobSubmitDescription")  # nothing else could have been used


def test_submit_refusal_is_sbatch_s(fake_pyslurm: FakePyslurm, tmp_path: Path) -> None:
    msg = "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
    runner = VersionRunner(answers={"sbatch": Completed(("sbatch",), 1, "", msg)})
    with pytest.raises(SchedulerError, match="Requested node configuration") as info:
        backend(fake_pyslurm, runner).submit("#!/bin/bash\ntrue\n", cwd=str(tmp_path))
    assert not isinstance(info.value, ControllerUnreachable)


def test_status_is_one_rpc_with_real_exit_codes(fake_pyslurm: FakePyslurm) -> None:
    b = backend(fake_pyslurm)
    raw = [fake_pyslurm.sbatch(workdir="/w") for _ in range(50)]
    ids = [str(r) for r in raw]
    fake_pyslurm.finish(raw[0], 3)
    fake_pyslurm.finish(raw[1], signal=15)
    fake_pyslurm.store[raw[2]].state = "RUNNING"
    before = fake_pyslurm.counters["jobs_load"]
    st = b.status(ids)
    assert fake_pyslurm.counters["jobs_load"] - before == 1
    assert len(st) == 50
    assert (st[ids[0]].state, st[ids[0]].exit_code) == (JobState.FAILED, 3)
    assert (st[ids[1]].state, st[ids[1]].exit_code, st[ids[1]].signal) == (JobState.CANCELLED, None, 15)
    assert st[ids[2]].state is JobState.RUNNING and st[ids[2]].exit_code is None
    assert st[ids[3]].state is JobState.PENDING


def test_status_of_arrays_with_task_zero(fake_pyslurm: FakePyslurm) -> None:
    b = backend(fake_pyslurm)
    arr = fake_pyslurm.sbatch(workdir="/w", name="arr", output="%x-%A_%a.out", array=[0, 1, 2], held=True)
    pending = str(arr)
    st = b.status([pending, f"{pending}_1"])
    assert set(st) == {pending, f"{pending}_0", f"{pending}_1", f"{pending}_2"}
    assert st[pending].state is JobState.PENDING
    assert st[f"{pending}_0"].stdout_path == f"/w/arr-{pending}_0.out"
    # a split, finished array: one job record per task; task 0's array_task_id is None (real pyslurm)
    raws = fake_pyslurm.finish(arr, {0: 0, 1: 1, 2: 0})
    assert fake_pyslurm.store[raws[0]].array_task_id is None
    st = b.status([pending])
    assert set(st) == {pending, f"{pending}_0", f"{pending}_1", f"{pending}_2"}
    assert st[f"{pending}_0"].is_success and st[f"{pending}_1"].exit_code == 1
    assert st[pending].state is JobState.FAILED and st[pending].exit_code == 1
    assert st[pending].reason == "3 tasks: 2 COMPLETED, 1 FAILED"
    assert b.status([f"{pending}_0"])[f"{pending}_0"].state is JobState.COMPLETED
    assert b.log_path(f"{pending}_0") == f"/w/arr-{pending}_0.out"


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
    job = str(fake_pyslurm.sbatch(workdir="/w"))
    b.cancel([job, "999999", "555_1"])
    assert runner.argvs() == [("scancel", "555_1")]  # array tasks go through scancel
    st = b.wait([job], poll_s=0.01, timeout_s=5)
    assert st[job].state is JobState.CANCELLED


def test_controller_errors_are_retried_then_unreachable(fake_pyslurm: FakePyslurm) -> None:
    sleeps: list[float] = []
    b = PyslurmBackend(VersionRunner(), module=fake_pyslurm, sleep=sleeps.append)
    job = str(fake_pyslurm.sbatch(workdir="/w"))
    fake_pyslurm.next_error = "Unable to contact slurm controller (connect failure)"
    assert b.status([job])[job].state is JobState.PENDING  # one failure, then the retry answers
    assert sleeps == [0.5]

    def down() -> None:
        raise fake_pyslurm.RPCError("Unable to contact slurm controller (connect failure)")

    fake_pyslurm.Jobs.load = staticmethod(down)
    with pytest.raises(ControllerUnreachable, match="failed 5 time"):
        b.status([job])
    with pytest.raises(ControllerUnreachable):
        b.log_path(job + "_1")


def test_other_rpc_errors_are_scheduler_errors(fake_pyslurm: FakePyslurm) -> None:
    fake_pyslurm.next_error = "Access/permission denied"
    with pytest.raises(SchedulerError, match="permission denied") as info:
        backend(fake_pyslurm).status(["1"])
    assert not isinstance(info.value, ControllerUnreachable)


def test_log_path(fake_pyslurm: FakePyslurm, tmp_path: Path) -> None:
    b = backend(fake_pyslurm)
    job = fake_pyslurm.sbatch(workdir=str(tmp_path), name="a b #c", output="o-%x-%j.out")
    assert b.log_path(str(job)) == f"{tmp_path}/o-a b #c-{job}.out"
    assert b.log_path("424242") is None  # RPCError "Invalid job id specified"


def test_cluster_version_via_cli(fake_pyslurm: FakePyslurm) -> None:
    assert backend(fake_pyslurm, VersionRunner("slurm 22.05.11")).cluster_version() == "22.05.11"


@pytest.mark.parametrize(
    ("text", "tasks"),
    [("0-2", [0, 1, 2]), ("1,3,5-6", [1, 3, 5, 6]), ("0-10:5%2", [0, 5, 10]), ("[4]", [4]),
     ("(null)", []), ("x-y", []), (None, [])],
)  # fmt: skip
def test_expand_task_ranges(text: str | None, tasks: list[int]) -> None:
    assert expand_task_ranges(text) == tasks


def test_status_reads_only_the_asked_for_jobs(fake_pyslurm: FakePyslurm) -> None:
    """Another user's big pending array is not expanded into records on every poll."""
    mine = fake_pyslurm.sbatch(workdir="/w")
    theirs = fake_pyslurm.sbatch(workdir="/o", array=list(range(5000)), held=True)
    b = backend(fake_pyslurm)
    records = b._records_of([str(mine)])
    assert [r.raw_id for r in records] == [str(mine)]
    assert len(b._records_of([f"{theirs}_7"])) == 5000  # asking for it: its tasks, as squeue -r shows them
