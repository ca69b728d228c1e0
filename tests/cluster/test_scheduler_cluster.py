"""The scheduler layer against the real dev cluster (``scripts/dev-cluster up``), every test
through both backends (the ``sched`` fixture: the Slurm CLI, and real pyslurm) with the same
expected answers.

Jobs are tiny (one-minute limit, scripts rather than --wrap), write their output into a fresh
temporary directory, and everything a test submits is cancelled when it ends.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterenv import Cluster

from hpcjobs.errors import ControllerUnreachable, JobNotFound, SchedulerError
from hpcjobs.runner import Call, Completed, RecordingRunner, SubprocessRunner
from hpcjobs.schedulers import describe_backend, get_scheduler
from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend
from hpcjobs.schedulers.slurm_cli import SlurmCli
from hpcjobs.schedulers.states import JobState

pytestmark = pytest.mark.cluster

WAIT_S = 120


class TrackingCli(SlurmCli):
    """SlurmCli remembering what it submitted, so that the fixture can clean up."""

    submitted: list[str]

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        job_id = super().submit(script, cwd=cwd)
        self.submitted.append(job_id)
        return job_id


@pytest.fixture
def runner() -> RecordingRunner:
    """The real runner, recording the Slurm processes it starts."""
    return RecordingRunner()


class TrackingPyslurm(PyslurmBackend):
    """PyslurmBackend (real pyslurm) remembering what it submitted."""

    submitted: list[str]

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        job_id = super().submit(script, cwd=cwd)
        self.submitted.append(job_id)
        return job_id


Sched = TrackingCli | TrackingPyslurm


@pytest.fixture
def cli(cluster: Cluster, runner: RecordingRunner, backend: str) -> Iterator[Sched]:
    """The backend under test (named ``cli`` for history: it is either one)."""
    sched: Sched = TrackingCli(runner) if backend == "cli" else TrackingPyslurm(runner)
    sched.submitted = []
    yield sched
    if sched.submitted:
        SlurmCli().cancel(sched.submitted)


def history_of(sched: Sched) -> SlurmCli:
    return sched.cli if isinstance(sched, PyslurmBackend) else sched


def query_programs(sched: Sched, *cli_programs: str) -> list[str]:
    """The processes a query starts: the CLI's, none at all through pyslurm."""
    return [] if isinstance(sched, PyslurmBackend) else list(cli_programs)


def script(body: str, *directives: str) -> str:
    lines = ["#!/bin/bash", "#SBATCH -t 1", *(f"#SBATCH {d}" for d in directives), body, ""]
    return "\n".join(lines)


def wait_running(cli: Sched, job_id: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        state = cli.status([job_id])[job_id].state
        if state is JobState.RUNNING:
            return
        assert not state.is_terminal, f"job {job_id} ended before it ran: {state}"
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not start within {WAIT_S} s")


def test_exit_code_is_the_real_exit_code(cli: Sched, job_dir: Path) -> None:
    job_id = cli.submit(script("exit 3"), cwd=str(job_dir))
    st = cli.wait([job_id], poll_s=0.2, timeout_s=WAIT_S)[job_id]
    assert st.state is JobState.FAILED
    assert st.is_terminal and not st.is_success
    assert (st.exit_code, st.signal) == (3, None)  # squeue says 768: decoded
    assert st.raw_state == "FAILED" and st.reason == "NonZeroExitCode"
    # the jobcomp record (what status() falls back to after MinJobAge) agrees
    deadline = time.monotonic() + 10
    records = history_of(cli).lookup_history([job_id])
    while not records and time.monotonic() < deadline:
        time.sleep(0.2)
        records = history_of(cli).lookup_history([job_id])
    assert [(r.raw_id, r.raw_state, r.exit_code) for r in records] == [(job_id, "FAILED", 3)]


def test_successful_job_and_log_path(cli: Sched, job_dir: Path) -> None:
    job_id = cli.submit(script('echo "hello from $SLURM_JOB_ID in $PWD"'), cwd=str(job_dir))
    st = cli.wait([job_id], poll_s=0.2, timeout_s=WAIT_S)[job_id]
    assert st.state is JobState.COMPLETED and st.exit_code == 0
    expected = str(job_dir / f"slurm-{job_id}.out")
    assert cli.log_path(job_id) == expected
    assert st.stdout_path == expected
    assert Path(expected).read_text() == f"hello from {job_id} in {job_dir}\n"  # ran in cwd


def test_status_of_50_jobs_is_one_query(cli: Sched, runner: RecordingRunner, job_dir: Path) -> None:
    ids = [cli.submit(script("true", "--hold"), cwd=str(job_dir)) for _ in range(50)]
    runner.calls.clear()
    st = cli.status(ids)
    assert runner.programs() == query_programs(cli, "squeue")
    assert set(ids) <= set(st)
    assert all(st[j].state is JobState.PENDING and st[j].reason == "JobHeldUser" for j in ids)
    cli.cancel(ids)
    runner.calls.clear()
    done = cli.wait(ids, poll_s=0.2, timeout_s=WAIT_S)
    assert all(done[j].state is JobState.CANCELLED for j in ids)
    assert set(runner.programs()) == set(query_programs(cli, "squeue"))


def test_cancel_running_job(cli: Sched, job_dir: Path) -> None:
    # exec: one process, so the signal is what ends the job (with `sleep` under bash, bash may
    # instead exit 143 after its child died, depending on which of the two the signal reaches first)
    job_id = cli.submit(script("exec sleep 60"), cwd=str(job_dir))
    wait_running(cli, job_id)
    cli.cancel([job_id])
    st = cli.wait([job_id], poll_s=0.2, timeout_s=WAIT_S)[job_id]
    assert st.state is JobState.CANCELLED
    assert st.exit_code is None and st.signal is not None  # killed, not exited
    cli.cancel([job_id])  # cancelling a finished job again is fine


def test_array_job_status_per_task(cli: Sched, job_dir: Path) -> None:
    job_id = cli.submit(script("exit $SLURM_ARRAY_TASK_ID", "--array=0-2"), cwd=str(job_dir))
    st = cli.wait([job_id], poll_s=0.2, timeout_s=WAIT_S)
    assert [st[f"{job_id}_{i}"].exit_code for i in range(3)] == [0, 1, 2]
    assert st[f"{job_id}_0"].state is JobState.COMPLETED
    assert st[f"{job_id}_2"].state is JobState.FAILED
    assert st[job_id].state is JobState.FAILED and st[job_id].exit_code == 1
    for i in range(3):  # squeue misreports these paths for arrays; ours are the real files
        path = st[f"{job_id}_{i}"].stdout_path
        assert path == str(job_dir / f"slurm-{job_id}_{i}.out")
        assert Path(path).exists()
    assert cli.log_path(f"{job_id}_1") == str(job_dir / f"slurm-{job_id}_1.out")
    assert cli.log_path(f"{job_id}_0") == str(job_dir / f"slurm-{job_id}_0.out")
    one = cli.status([f"{job_id}_1"])
    assert set(one) == {f"{job_id}_1"} and one[f"{job_id}_1"].exit_code == 1
    zero = cli.status([f"{job_id}_0"])  # task 0: pyslurm 22.5.3 reports its task id as None
    assert set(zero) == {f"{job_id}_0"} and zero[f"{job_id}_0"].state is JobState.COMPLETED


def test_names_with_spaces_and_hash_and_output_patterns(cli: Sched, job_dir: Path) -> None:
    """%x %j %A %a in output paths, a name with a space and '#': status and log_path name the files
    the jobs really wrote, through both backends."""
    name = "a b #c"
    plain = cli.submit(script('echo "plain $SLURM_JOB_NAME"', "--job-name='a b #c'", "--output='o-%x-%j.out'"),
                       cwd=str(job_dir))  # fmt: skip
    array = cli.submit(script('echo "task $SLURM_ARRAY_TASK_ID"', "--job-name='a b #c'",
                              "--output='%x-%A_%a.out'", "--array=0-1"), cwd=str(job_dir))  # fmt: skip
    pending = cli.submit(script("true", "--hold", "--output='%x-%A_%a.out'", "--array=0-1"), cwd=str(job_dir))
    held = cli.status([pending])  # the pending array's tasks, each with its own file
    assert held[f"{pending}_0"].stdout_path == str(job_dir / f"sbatch-{pending}_0.out")
    assert held[f"{pending}_1"].stdout_path == str(job_dir / f"sbatch-{pending}_1.out")
    assert held[pending].state is JobState.PENDING
    st = cli.wait([plain, array], poll_s=0.2, timeout_s=WAIT_S)
    plain_file = job_dir / f"o-{name}-{plain}.out"
    assert st[plain].stdout_path == str(plain_file) == cli.log_path(plain)
    assert plain_file.read_text() == f"plain {name}\n"  # SLURM_JOB_NAME set on the node
    assert st[plain].name == name
    for task in (0, 1):
        task_file = job_dir / f"{name}-{array}_{task}.out"
        assert st[f"{array}_{task}"].stdout_path == str(task_file) == cli.log_path(f"{array}_{task}")
        assert task_file.read_text() == f"task {task}\n"
        assert st[f"{array}_{task}"].name == name
    assert st[array].state is JobState.COMPLETED and st[array].reason == "2 tasks: 2 COMPLETED"


def test_dependency_gpu_and_time_limit(cli: Sched, job_dir: Path) -> None:
    """A job depending on a failed one ends (never pending forever); a GPU job sees its GPU; a time
    limit in whole minutes (--time=5, which pyslurm's own submission rejects) is what Slurm records."""
    failing = cli.submit(script("exit 1"), cwd=str(job_dir))
    dependent = cli.submit(script("true", f"--dependency=afterok:{failing}", "--kill-on-invalid-dep=yes"),
                           cwd=str(job_dir))  # fmt: skip
    gpu = cli.submit(script('echo "gpus=$CUDA_VISIBLE_DEVICES"', "-p gpu", "--gpus=1", "--time=5"),
                     cwd=str(job_dir))  # fmt: skip
    shown = subprocess.run(["scontrol", "show", "job", "-o", gpu], capture_output=True, text=True).stdout
    assert "TimeLimit=00:05:00" in shown and "Partition=gpu" in shown
    st = cli.wait([failing, dependent, gpu], poll_s=0.2, timeout_s=WAIT_S)
    assert (st[failing].state, st[failing].exit_code) == (JobState.FAILED, 1)
    assert st[dependent].state is JobState.CANCELLED and st[dependent].reason == "DependencyNeverSatisfied"
    assert st[gpu].state is JobState.COMPLETED
    assert Path(str(cli.log_path(gpu))).read_text().strip() in ("gpus=0", "gpus=1")  # one of the two


def test_job_beyond_the_node_config_is_refused(
    cli: Sched, runner: RecordingRunner, job_dir: Path
) -> None:
    with pytest.raises(SchedulerError) as info:
        cli.submit(script("true", "-p gpu", "--gpus=3"), cwd=str(job_dir))
    assert not isinstance(info.value, ControllerUnreachable)
    assert "Requested node configuration is not available" in str(info.value)
    assert "\n" not in str(info.value)
    assert runner.programs() == ["sbatch"]  # refused: no retry


def test_ambiguous_failure_does_not_submit_twice(cluster: Cluster, job_dir: Path, backend: str) -> None:
    """sbatch really submits, but the answer is 'lost' (as after a socket timeout): the job is
    found by its token and returned; sbatch ran once."""

    real = SubprocessRunner()
    real_ids: list[str] = []

    def lose_first_sbatch(call: Call) -> Completed | None:
        if call.argv[0] != "sbatch" or real_ids:
            return None
        result = call.replay(real)
        assert result.ok, result.stderr
        real_ids.append(result.stdout.strip())
        msg = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n"
        return Completed(result.argv, 1, "", msg)

    lossy = RecordingRunner(real, answer=lose_first_sbatch)
    cli: SlurmCli | PyslurmBackend = SlurmCli(lossy, backoff_s=0.1)
    if backend == "pyslurm":
        cli = PyslurmBackend(lossy, cli=SlurmCli(lossy, backoff_s=0.1))
    job_id = cli.submit(script("true", "--hold"), cwd=str(job_dir))
    try:
        assert job_id == real_ids[0]
        assert lossy.programs() == ["sbatch", "squeue"]
    finally:
        SlurmCli().cancel([*real_ids, job_id])


def test_unreachable_controller_is_retried_then_reported(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real sbatch against a controller port nobody listens on (a copy of slurm.conf, so the shared
    cluster is untouched): Slurm's own connect failure, retried, then ControllerUnreachable."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    for f in conf.parent.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    lines = [ln for ln in conf.read_text().splitlines() if not ln.strip().lower().startswith("slurmctldport")]
    (tmp_path / conf.name).write_text("\n".join([*lines, "SlurmctldPort=1"]) + "\n")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / conf.name))
    runner = RecordingRunner()
    sleeps: list[float] = []
    cli = SlurmCli(runner, retries=1, backoff_s=0.1, sleep=lambda s: (sleeps.append(s), time.sleep(s))[1])
    with pytest.raises(ControllerUnreachable) as info:
        cli.submit(script("true", "--hold"), cwd=str(tmp_path))
    assert "Unable to contact slurm controller" in str(info.value)
    assert "no job was submitted" in str(info.value)
    assert runner.programs() == ["sbatch", "sbatch"]
    assert sleeps == [0.1]


def test_unknown_job(cli: Sched) -> None:
    st = cli.status(["59999999", "59999999_0"])
    assert st["59999999"].state is JobState.UNKNOWN and not st["59999999"].known
    assert not st["59999999_0"].known
    assert cli.log_path("59999999") is None
    assert cli.log_path("59999999_3") is None
    with pytest.raises(JobNotFound, match="59999999"):
        cli.wait(["59999999"], poll_s=0.2, timeout_s=10)
    cli.cancel(["59999999", "59999999_1"])  # unknown ids: nothing to do, no error


_DOWN = """
import sys
from hpcjobs.errors import ControllerUnreachable
from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend
from hpcjobs.schedulers.slurm_cli import SlurmCli
cli = SlurmCli(retries=0)
sched = cli if sys.argv[1] == "cli" else PyslurmBackend(cli=cli)
try:
    sched.status(["1"])
except ControllerUnreachable as exc:
    print("status:", exc)
"""


def test_controller_down_reads_the_same_through_both_backends(
    cli: Sched, backend: str, tmp_path: Path
) -> None:
    """Status with slurmctld unreachable (a copy of slurm.conf pointing at a dead port, in a
    subprocess: libslurm reads SLURM_CONF once): ControllerUnreachable with Slurm's reason."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    for f in conf.parent.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    lines = [ln for ln in conf.read_text().splitlines() if not ln.strip().lower().startswith("slurmctldport")]
    (tmp_path / conf.name).write_text("\n".join([*lines, "SlurmctldPort=1"]) + "\n")
    env = {**os.environ, "SLURM_CONF": str(tmp_path / conf.name)}
    r = subprocess.run([sys.executable, "-c", _DOWN, backend], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("status: Slurm controller unreachable")
    assert "Unable to contact slurm controller" in r.stdout


def test_backend_selection_on_the_dev_cluster(cluster: Cluster, job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto submits without choosing; the first query chooses (pyslurm where it is installed and
    matches) and that backend answers."""
    monkeypatch.delenv("HPCJOBS_SCHEDULER", raising=False)
    sched = get_scheduler()
    job_id = sched.submit(script("true", "-H"), cwd=str(job_dir))
    try:
        assert sched.name == "auto"  # a submission chooses nothing
        st = sched.status([job_id])[job_id]
        assert st.state is JobState.PENDING and st.reason == "JobHeldUser"
    finally:
        SlurmCli().cancel([job_id])
    assert sched.name in ("slurm-cli", "pyslurm")
    if importlib.util.find_spec("pyslurm") is not None:  # real pyslurm (scripts/pyslurm-wheel) matches
        assert sched.name == "pyslurm"
    line = describe_backend()
    assert line.startswith(sched.name) and "\n" not in line
    assert re.fullmatch(r"\d+\.\d+\.\d+", sched.cluster_version())
