"""SlurmCli against a fake Runner: argv recorded, outputs captured from the real dev cluster
(Debian slurm-wlm 22.05.8, ``scripts/dev-cluster up``)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from hpcjobs.errors import (
    ControllerUnreachable,
    HpcjobsError,
    JobNotFound,
    RunnerError,
    SchedulerError,
    WaitTimeout,
)
from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.schedulers.base import JobStatus, aggregate_array, decode_wait_status, parse_exit_pair
from hpcjobs.schedulers.slurm_cli import (
    SEP,
    SlurmCli,
    classify,
    expand_stdout,
    parse_sacct,
    parse_sbatch_output,
    parse_squeue,
)
from hpcjobs.schedulers.states import JobState
from tests.fakes import unexpected

# --------------------------------------------------------------------------- real cluster output

# squeue -h -r -t all -j 172,173,174,181,182,183 -O <SQUEUE_FORMAT>  (\x1f after every field)
SQUEUE_REAL = "\n".join(line.replace("|", SEP) for line in [
    "174|174|N/A|CANCELLED|15|None|root|/tmp/x|vm|/tmp/x/slurm-174.out|sbatch|",
    "175|173|0|COMPLETED|0|None|root|/tmp/x|vm|/tmp/x/arr-%A_%a.out|sbatch|",
    "172|172|N/A|FAILED|768|NonZeroExitCode|root|/tmp/x|vm|/tmp/x/slurm-172.out|sbatch|",
    "176|173|1|FAILED|256|NonZeroExitCode|root|/tmp/x|vm|/tmp/x/arr-%A_%a.out|sbatch|",
    "173|173|2|FAILED|512|NonZeroExitCode|root|/tmp/x|vm|/tmp/x/arr-%A_%a.out|sbatch|",
    "183|183|0|PENDING|0|JobHeldUser|root|/tmp/x|n/a|/tmp/x/arr-%A_%a.out|sbatch|",
    "183|183|1|PENDING|0|JobHeldUser|root|/tmp/x|n/a|/tmp/x/arr-%A_%a.out|sbatch|",
    "183|183|2|PENDING|0|JobHeldUser|root|/tmp/x|n/a|/tmp/x/arr-%A_%a.out|sbatch|",
    "182|182|N/A|PENDING|0|JobHeldUser|root|/tmp/x|n/a|/tmp/x/slurm-182.out|held|",
    "181|181|N/A|RUNNING|0|None|root|/tmp/x|vm|/tmp/x/slurm-181.out|sleeper|",
]) + "\n"  # fmt: skip

# an array submitted without --output: squeue prints slurm-<own job id>.out for every task
SQUEUE_ARRAY_DEFAULT_OUT = "\n".join(line.replace("|", SEP) for line in [
    "7|5|0|COMPLETED|0|None|root|/tmp/e|vm|/tmp/e/slurm-7.out|sbatch|",
    "8|5|1|FAILED|256|NonZeroExitCode|root|/tmp/e|vm|/tmp/e/slurm-8.out|sbatch|",
    "5|5|2|FAILED|512|NonZeroExitCode|root|/tmp/e|vm|/tmp/e/slurm-5.out|sbatch|",
]) + "\n"  # fmt: skip

# sacct -c -n -P -X --delimiter=\x1f -o jobid,jobidraw,state,exitcode,reason,jobname -j 172,173,175,174
SACCT_C_REAL_STDOUT = "\n".join(line.replace("|", SEP) for line in [
    "175|175|COMPLETED|0:0||sbatch",
    "172|172|FAILED|3:0||sbatch",
    "173|173|FAILED|2:0||sbatch",
    "174|174|CANCELLED|0:0||sbatch",
]) + "\n"  # fmt: skip
SACCT_C_REAL_STDERR = (
    "sacct: error: Unknown type ArrayJobId: 173\nsacct: error: Unknown type ArrayTaskId: 0\n"
    "sacct: error: Unknown type ArrayJobId: 173\nsacct: error: Unknown type ArrayTaskId: 2\n"
)
SCONTROL_172 = (
    "JobId=172 JobName=sbatch UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901605 Nice=0 "
    "Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 "
    "Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=00:01:00 TimeMin=N/A "
    "Partition=cpu AllocNode:Sid=localhost:4907 ReqNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 "
    "ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* "
    "Command=(null) WorkDir=/tmp/x Comment=hpcjobs:a81d9206866940d18dde8106f6e6c5a8  "
    "StdErr=/tmp/x/slurm-172.out StdIn=/dev/null StdOut=/tmp/x/slurm-172.out Power= \n"
)


def scontrol_array_task(raw: int, task: int) -> str:
    return (f"JobId={raw} ArrayJobId=173 ArrayTaskId={task} JobName=sbatch UserId=root(0) JobState=FAILED "
            f"Reason=NonZeroExitCode ExitCode={task}:0 WorkDir=/tmp/x StdErr=/tmp/x/arr-173_{task}.out "
            f"StdIn=/dev/null StdOut=/tmp/x/arr-173_{task}.out Power= \n")  # fmt: skip


CONNECT_FAILURE = (
    "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n"
)
SOCKET_TIMEOUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n"
NODE_CONFIG = "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
BAD_PARTITION = (
    "sbatch: error: invalid partition specified: nope\n"
    "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
)
INVALID_JOB = "slurm_load_jobs error: Invalid job id specified\n"
ACCOUNTING_OFF = "Slurm accounting storage is disabled\n"

# --------------------------------------------------------------------------- the fake runner


Response = Completed | Exception | Callable[[Call], "Completed | Exception"]


class FakeRunner(RecordingRunner):
    """A Runner that records calls and answers from per-program queues, then handlers."""

    def __init__(
        self,
        queues: dict[str, list[Response]] | None = None,
        handlers: dict[str, Callable[[Call], Completed | Exception]] | None = None,
    ) -> None:
        super().__init__(answer=self._answer)
        self.queues = queues if queues is not None else {}
        self.handlers = handlers if handlers is not None else {}

    def _answer(self, call: Call) -> Completed:
        prog = call.argv[0]
        queue = self.queues.get(prog)
        resp: Response
        if queue:
            resp = queue.pop(0)
        elif prog in self.handlers:
            resp = self.handlers[prog]
        else:
            unexpected(call)
        if callable(resp) and not isinstance(resp, Completed):
            resp = resp(call)
        if isinstance(resp, Exception):
            raise resp
        assert isinstance(resp, Completed)
        return Completed(call.argv, resp.returncode, resp.stdout, resp.stderr)

    def of(self, prog: str) -> list[Call]:
        return [c for c in self.calls if c.argv[0] == prog]


def ok(stdout: str = "", stderr: str = "") -> Completed:
    return Completed((), 0, stdout, stderr)


def fail(stderr: str, rc: int = 1) -> Completed:
    return Completed((), rc, "", stderr)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 0.0

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def make(runner: FakeRunner, **kw: object) -> tuple[SlurmCli, Sleeps]:
    sleeps = Sleeps()
    return SlurmCli(runner, sleep=sleeps, clock=sleeps.clock, **kw), sleeps  # type: ignore[arg-type]


def token_of(call: Call) -> str:
    (comment,) = [a for a in call.argv if a.startswith("--comment=")]
    return comment.split("=", 1)[1]


def queue_row(array_job_id: str, comment: str) -> str:
    return f"{array_job_id}{SEP}{comment}{SEP}\n"


# --------------------------------------------------------------------------- submit


def test_submit_argv_stdin_cwd_and_token(tmp_path: object) -> None:
    runner = FakeRunner(queues={"sbatch": [ok("4242\n")]})
    cli, sleeps = make(runner)
    script = "#!/bin/bash\nexit 3\n"
    assert cli.submit(script, cwd=str(tmp_path)) == "4242"
    (call,) = runner.calls
    assert call.argv[:3] == ("sbatch", "--parsable", f"--chdir={tmp_path}")
    assert re.fullmatch(r"hpcjobs:[0-9a-f]{32}", token_of(call))
    assert call.input_text == script
    assert call.cwd == str(tmp_path)
    assert sleeps.calls == []


def test_submit_defaults_to_callers_cwd(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(str(tmp_path))
    runner = FakeRunner(queues={"sbatch": [ok("7\n")]})
    cli, _ = make(runner)
    cli.submit("#!/bin/sh\ntrue\n")
    assert f"--chdir={tmp_path}" in runner.calls[0].argv


def test_submit_into_missing_directory_runs_nothing(tmp_path: object) -> None:
    runner = FakeRunner()
    cli, _ = make(runner)
    with pytest.raises(SchedulerError, match="does not exist"):
        cli.submit("#!/bin/sh\n", cwd=f"{tmp_path}/nope")
    assert runner.calls == []


def test_each_submission_gets_its_own_token() -> None:
    runner = FakeRunner(handlers={"sbatch": lambda c: ok("1\n")})
    cli, _ = make(runner)
    cli.submit("#!/bin/sh\n")
    cli.submit("#!/bin/sh\n")
    assert token_of(runner.calls[0]) != token_of(runner.calls[1])


@pytest.mark.parametrize(
    ("out", "job_id"), [("123\n", "123"), ("123;hpcjobs-dev\n", "123"), ("\n55\n", "55")]
)
def test_parse_sbatch_output(out: str, job_id: str) -> None:
    assert parse_sbatch_output(out) == job_id


def test_parse_sbatch_output_without_id() -> None:
    with pytest.raises(SchedulerError, match="no job id"):
        parse_sbatch_output("Submitted batch job\n")


@pytest.mark.parametrize("stderr", [NODE_CONFIG, BAD_PARTITION])
def test_refused_submission_raises_at_once_with_slurms_message(stderr: str) -> None:
    runner = FakeRunner(queues={"sbatch": [fail(stderr)]})
    cli, sleeps = make(runner)
    with pytest.raises(SchedulerError) as info:
        cli.submit("#!/bin/bash\n#SBATCH --gpus=3\n")
    message = str(info.value)
    assert not isinstance(info.value, ControllerUnreachable)
    assert "\n" not in message
    assert "sbatch: error" not in message
    last_line = stderr.strip().splitlines()[-1].split("error: ", 1)[1]
    assert last_line in message
    assert runner.programs() == ["sbatch"]
    assert sleeps.calls == []


def test_connect_failure_retries_with_backoff_then_controller_unreachable() -> None:
    runner = FakeRunner(handlers={"sbatch": lambda c: fail(CONNECT_FAILURE)})
    cli, sleeps = make(runner, retries=4, backoff_s=0.5)
    with pytest.raises(ControllerUnreachable) as info:
        cli.submit("#!/bin/sh\ntrue\n")
    assert sleeps.calls == [0.5, 1.0, 2.0, 4.0]
    assert runner.programs() == ["sbatch"] * 5  # connect failure: nothing reached slurmctld, no queue check
    message = str(info.value)
    assert "Unable to contact slurm controller (connect failure)" in message
    assert "5 time(s)" in message and "no job was submitted" in message
    assert isinstance(info.value, SchedulerError) and isinstance(info.value, HpcjobsError)


def test_connect_failure_then_success() -> None:
    runner = FakeRunner(queues={"sbatch": [fail(CONNECT_FAILURE), fail(CONNECT_FAILURE), ok("99\n")]})
    cli, sleeps = make(runner)
    assert cli.submit("#!/bin/sh\n") == "99"
    assert sleeps.calls == [0.5, 1.0]
    tokens = {token_of(c) for c in runner.calls}
    assert len(tokens) == 1  # the same submission, resent


def test_temporarily_unable_is_retried() -> None:
    msg = (
        "sbatch: error: Batch job submission failed: "
        "Slurm temporarily unable to accept job, sleeping and retrying\n"
    )
    runner = FakeRunner(queues={"sbatch": [fail(msg), ok("3\n")]})
    cli, _ = make(runner)
    assert cli.submit("#!/bin/sh\n") == "3"


def test_ambiguous_failure_finds_the_job_by_token_and_never_submits_twice() -> None:
    runner = FakeRunner(queues={"sbatch": [fail(SOCKET_TIMEOUT)]})

    def squeue(call: Call) -> Completed:
        token = token_of(runner.of("sbatch")[0])
        assert call.argv[:2] == ("squeue", "--me")
        return ok(queue_row("17", "(null)") + queue_row("18", token) + queue_row("19", "hpcjobs:other"))

    runner.handlers["squeue"] = squeue
    cli, sleeps = make(runner)
    assert cli.submit("#!/bin/sh\n") == "18"
    assert runner.programs() == ["sbatch", "squeue"]
    assert sleeps.calls == [0.5]


def test_ambiguous_failure_token_absent_resends_same_token() -> None:
    runner = FakeRunner(
        queues={"sbatch": [fail(SOCKET_TIMEOUT), ok("21\n")]},
        handlers={"squeue": lambda c: ok(queue_row("17", "(null)"))},
    )
    cli, _ = make(runner)
    assert cli.submit("#!/bin/sh\n") == "21"
    assert runner.programs() == ["sbatch", "squeue", "sbatch"]
    first, second = runner.of("sbatch")
    assert token_of(first) == token_of(second)


def test_ambiguous_failure_and_queue_unreachable_waits_instead_of_resending() -> None:
    runner = FakeRunner(queues={
        "sbatch": [fail(SOCKET_TIMEOUT)],
        "squeue": [fail("squeue: error: Unable to contact slurm controller (connect failure)\n")],
    })  # fmt: skip
    runner.handlers["squeue"] = lambda c: ok(queue_row("30", token_of(runner.of("sbatch")[0])))
    cli, _ = make(runner)
    assert cli.submit("#!/bin/sh\n") == "30"
    assert runner.programs() == ["sbatch", "squeue", "squeue"]


def test_ambiguous_failure_never_resolved_says_job_may_exist() -> None:
    runner = FakeRunner(
        queues={"sbatch": [fail(SOCKET_TIMEOUT)]},
        handlers={
            "squeue": lambda c: fail("squeue: error: Unable to contact slurm controller (connect failure)\n")
        },
    )
    cli, sleeps = make(runner, retries=3)
    with pytest.raises(ControllerUnreachable, match="may or may not have been submitted") as info:
        cli.submit("#!/bin/sh\n")
    assert runner.programs().count("sbatch") == 1
    assert token_of(runner.calls[0]) in str(info.value)
    assert sleeps.calls == [0.5, 1.0, 2.0, 4.0]


def test_runner_timeout_is_ambiguous() -> None:
    runner = FakeRunner(queues={"sbatch": [RunnerError("sbatch: no answer within 120.0 s")]})
    runner.handlers["squeue"] = lambda c: ok(queue_row("44", token_of(runner.of("sbatch")[0])))
    cli, _ = make(runner)
    assert cli.submit("#!/bin/sh\n") == "44"
    assert runner.programs() == ["sbatch", "squeue"]


def test_missing_sbatch_is_not_retried() -> None:
    runner = FakeRunner(queues={"sbatch": [RunnerError("sbatch: program not found on PATH")]})
    cli, sleeps = make(runner)
    with pytest.raises(RunnerError, match="not found"):
        cli.submit("#!/bin/sh\n")
    assert sleeps.calls == []


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Unable to contact slurm controller (connect failure)", "not_sent"),
        ("Slurm temporarily unable to accept job, sleeping and retrying", "not_sent"),
        ("Socket timed out on send/recv operation", "ambiguous"),
        ("Zero Bytes were transmitted or received", "ambiguous"),
        ("Requested node configuration is not available", "refused"),
        ("Invalid partition name specified", "refused"),
        ("Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)", "refused"),
    ],
)
def test_classify(message: str, kind: str) -> None:
    assert classify(message) == kind


# --------------------------------------------------------------------------- status


def test_status_from_real_squeue_output() -> None:
    runner = FakeRunner(queues={"squeue": [ok(SQUEUE_REAL)]})
    cli, _ = make(runner)
    st = cli.status(["172", "173", "174", "181", "182", "183_1"])
    assert runner.programs() == ["squeue"]
    argv = runner.calls[0].argv
    assert argv[:5] == ("squeue", "-h", "-r", "-t", "all")
    assert argv[argv.index("-j") + 1] == "172,173,174,181,182,183_1"

    assert st["172"] == JobStatus("172", JobState.FAILED, 3, None, "NonZeroExitCode", "FAILED",
                                  "/tmp/x/slurm-172.out", "sbatch")  # fmt: skip
    assert st["174"].state is JobState.CANCELLED
    assert (st["174"].exit_code, st["174"].signal) == (None, 15)
    assert st["181"].state is JobState.RUNNING and st["181"].exit_code is None
    assert st["182"].state is JobState.PENDING and st["182"].reason == "JobHeldUser"
    assert st["182"].name == "held"
    assert st["183_1"].state is JobState.PENDING
    assert st["183_1"].stdout_path == "/tmp/x/arr-183_1.out"
    assert "183_0" not in st  # only what was asked for (and the tasks of asked-for arrays)
    # the array: one entry per task plus the summary
    assert [st[f"173_{i}"].exit_code for i in range(3)] == [0, 1, 2]
    assert st["173_0"].state is JobState.COMPLETED
    assert st["173_2"].stdout_path == "/tmp/x/arr-173_2.out"
    assert st["173"].state is JobState.FAILED
    assert st["173"].exit_code == 1
    assert st["173"].reason == "3 tasks: 1 COMPLETED, 2 FAILED"


def test_status_array_default_output_path_is_fixed() -> None:
    runner = FakeRunner(queues={"squeue": [ok(SQUEUE_ARRAY_DEFAULT_OUT)]})
    cli, _ = make(runner)
    st = cli.status(["5"])
    assert st["5_0"].stdout_path == "/tmp/e/slurm-5_0.out"
    assert st["5_2"].stdout_path == "/tmp/e/slurm-5_2.out"


def test_status_array_task_by_its_own_job_id() -> None:
    runner = FakeRunner(queues={"squeue": [ok(SQUEUE_REAL)]})
    cli, _ = make(runner)
    st = cli.status(["176"])
    assert st["176"].state is JobState.FAILED and st["176"].exit_code == 1


def test_status_of_1000_jobs_is_one_query() -> None:
    ids = [str(10_000 + i) for i in range(1000)]
    rows = "".join(
        SEP.join([j, j, "N/A", "PENDING", "0", "JobHeldUser", "u", "/w", "n/a", f"/w/slurm-{j}.out", "b"])
        + SEP
        + "\n"
        for j in ids
    )
    runner = FakeRunner(queues={"squeue": [ok(rows)]})
    cli, _ = make(runner)
    st = cli.status(ids)
    assert len(runner.calls) == 1
    assert len(st) == 1000 and all(s.state is JobState.PENDING for s in st.values())
    assert runner.calls[0].argv[runner.calls[0].argv.index("-j") + 1] == ",".join(ids)


def test_status_of_empty_list_runs_nothing() -> None:
    runner = FakeRunner()
    cli, _ = make(runner)
    assert cli.status([]) == {}
    assert runner.calls == []


def test_status_rejects_malformed_ids() -> None:
    cli, _ = make(FakeRunner())
    with pytest.raises(SchedulerError, match="not a Slurm job id"):
        cli.status(["12;rm -rf /"])


def test_forgotten_jobs_fall_back_to_one_jobcomp_query() -> None:
    runner = FakeRunner(queues={
        "squeue": [fail(INVALID_JOB), ok(""), ok("")],
        "sacct": [fail(ACCOUNTING_OFF), ok(SACCT_C_REAL_STDOUT, SACCT_C_REAL_STDERR),
                  ok(SACCT_C_REAL_STDOUT, SACCT_C_REAL_STDERR)],
    })  # fmt: skip
    cli, _ = make(runner)
    st = cli.status(["172"])
    assert st["172"].state is JobState.FAILED and st["172"].exit_code == 3
    assert runner.programs() == ["squeue", "sacct", "sacct"]  # first time: learns accounting is off
    assert "-c" not in runner.calls[1].argv and "-c" in runner.calls[2].argv
    st = cli.status(["172", "174"])
    assert runner.programs()[3:] == ["squeue", "sacct"]  # afterwards: one jobcomp query
    sacct = runner.calls[-1].argv
    assert sacct[sacct.index("-j") + 1] == "172,174"
    assert st["174"].state is JobState.CANCELLED


def test_history_with_accounting_uses_plain_sacct() -> None:
    out = "".join(SEP.join(r) + "\n" for r in [
        ["300", "300", "COMPLETED", "0:0", "None", "a"],
        ["301_1", "303", "CANCELLED by 0", "0:15", "None", "b"],
        ["301_1.batch", "303.batch", "CANCELLED", "0:15", "", "batch"],
    ])  # fmt: skip
    runner = FakeRunner(queues={"squeue": [ok("")], "sacct": [ok(out)]})
    cli, _ = make(runner)
    st = cli.status(["300", "301_1"])
    assert runner.programs() == ["squeue", "sacct"]
    assert st["300"].state is JobState.COMPLETED and st["300"].exit_code == 0
    assert st["301_1"].state is JobState.CANCELLED and st["301_1"].signal == 15
    assert cli.history == "sacct"


def test_jobcomp_lookup_maps_array_tasks_seen_earlier() -> None:
    runner = FakeRunner(queues={
        "squeue": [ok(SQUEUE_REAL), ok("")],
        "sacct": [ok(SACCT_C_REAL_STDOUT, SACCT_C_REAL_STDERR)],
    })  # fmt: skip
    cli, _ = make(runner, history="jobcomp")
    cli.status(["173"])  # squeue sees the tasks: 175 = 173_0, 176 = 173_1, 173 = 173_2
    st = cli.status(["173", "173_0"])  # now purged from the controller
    sacct = runner.calls[-1].argv
    assert "-c" in sacct
    assert sorted(sacct[sacct.index("-j") + 1].split(",")) == ["173", "175", "176"]
    assert st["173_0"].state is JobState.COMPLETED
    assert st["173_0"].stdout_path == "/tmp/x/arr-173_0.out"  # remembered from squeue
    assert st["173_2"].exit_code == 2
    assert "173_1" not in st  # 176 is not in this jobcomp sample: the summary covers what is known
    assert st["173"].state is JobState.FAILED


def test_unknown_job_is_unknown_and_not_known() -> None:
    runner = FakeRunner(queues={"squeue": [fail(INVALID_JOB)], "sacct": [ok("")]})
    cli, _ = make(runner, history="jobcomp")
    st = cli.status(["999999"])
    assert st["999999"].state is JobState.UNKNOWN
    assert not st["999999"].known


def test_squeue_transient_error_is_retried() -> None:
    err = "squeue: error: Unable to contact slurm controller (connect failure)\n"
    runner = FakeRunner(queues={"squeue": [fail(err), fail(err), ok(SQUEUE_REAL)]})
    cli, sleeps = make(runner)
    assert cli.status(["172"])["172"].exit_code == 3
    assert sleeps.calls == [0.5, 1.0]


def test_squeue_transient_error_gives_controller_unreachable() -> None:
    err = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    runner = FakeRunner(handlers={"squeue": lambda c: fail(err)})
    cli, sleeps = make(runner, retries=2, backoff_s=1.0)
    with pytest.raises(ControllerUnreachable, match="connect failure"):
        cli.status(["1"])
    assert sleeps.calls == [1.0, 2.0]


def test_squeue_other_error_is_not_retried() -> None:
    runner = FakeRunner(queues={"squeue": [fail("squeue: error: Invalid user: nobody2\n")]})
    cli, sleeps = make(runner)
    with pytest.raises(SchedulerError, match="Invalid user") as info:
        cli.status(["1"])
    assert not isinstance(info.value, ControllerUnreachable)
    assert sleeps.calls == []


# --------------------------------------------------------------------------- wait


def squeue_row(job: str, state: str, raw_exit: int = 0) -> str:
    return (
        SEP.join([job, job, "N/A", state, str(raw_exit), "None", "u", "/w", "vm", f"/w/slurm-{job}.out", "j"])
        + SEP
        + "\n"
    )


def test_wait_polls_once_per_poll_until_terminal() -> None:
    runner = FakeRunner(queues={"squeue": [
        ok(squeue_row("1", "PENDING") + squeue_row("2", "PENDING")),
        ok(squeue_row("1", "RUNNING") + squeue_row("2", "COMPLETED")),
        ok(squeue_row("1", "FAILED", 768) + squeue_row("2", "COMPLETED")),
    ]})  # fmt: skip
    cli, sleeps = make(runner)
    st = cli.wait(["1", "2"], poll_s=2.0)
    assert runner.programs() == ["squeue"] * 3
    assert sleeps.calls == [2.0, 2.0]
    assert st["1"].exit_code == 3 and st["1"].state is JobState.FAILED
    assert st["2"].is_success


def test_wait_timeout() -> None:
    runner = FakeRunner(handlers={"squeue": lambda c: ok(squeue_row("1", "RUNNING"))})
    cli, sleeps = make(runner)
    with pytest.raises(WaitTimeout, match="1 \\(RUNNING\\)") as info:
        cli.wait(["1"], poll_s=1.0, timeout_s=3.0)
    assert sum(sleeps.calls) == pytest.approx(3.0)
    status = info.value.statuses["1"]
    assert isinstance(status, JobStatus) and status.state is JobState.RUNNING


def test_wait_for_unknown_job_raises_job_not_found() -> None:
    runner = FakeRunner(handlers={"squeue": lambda c: fail(INVALID_JOB), "sacct": lambda c: ok("")})
    cli, _ = make(runner, history="jobcomp")
    with pytest.raises(JobNotFound, match="424242"):
        cli.wait(["424242"], poll_s=1.0)


# --------------------------------------------------------------------------- cancel, log_path, version


def test_cancel_one_call() -> None:
    runner = FakeRunner(handlers={"scancel": lambda c: ok()})
    cli, _ = make(runner)
    cli.cancel(["5", "6_1", "5"])
    assert [c.argv for c in runner.calls] == [("scancel", "5", "6_1")]
    cli.cancel([])
    assert len(runner.calls) == 1


def test_log_path_from_scontrol() -> None:
    runner = FakeRunner(queues={"scontrol": [ok(SCONTROL_172)]})
    cli, _ = make(runner)
    assert cli.log_path("172") == "/tmp/x/slurm-172.out"
    assert runner.calls[0].argv == ("scontrol", "show", "job", "-o", "172")


def test_log_path_of_array_task() -> None:
    out = scontrol_array_task(176, 1)
    runner = FakeRunner(queues={"scontrol": [ok(out)]})
    cli, _ = make(runner)
    assert cli.log_path("173_1") == "/tmp/x/arr-173_1.out"


def test_log_path_of_forgotten_job_is_none() -> None:
    runner = FakeRunner(queues={"scontrol": [fail(INVALID_JOB)]})
    cli, _ = make(runner)
    assert cli.log_path("5") is None


def test_cluster_version() -> None:
    runner = FakeRunner(queues={"sinfo": [ok("slurm-wlm 22.05.8\n")]})
    cli, _ = make(runner)
    assert cli.cluster_version() == "22.05.8"
    assert cli.cluster_version() == "22.05.8"
    assert len(runner.calls) == 1


# --------------------------------------------------------------------------- parsing helpers


@pytest.mark.parametrize(
    ("raw", "pair"),
    [(0, (0, None)), (768, (3, None)), (256, (1, None)), (15, (None, 15)), (9, (None, 9)),
     (65280, (255, None))],
)
def test_decode_wait_status(raw: int, pair: tuple[int | None, int | None]) -> None:
    assert decode_wait_status(raw) == pair


@pytest.mark.parametrize(("text", "pair"), [("3:0", (3, None)), ("0:0", (0, None)), ("0:15", (None, 15)),
                                            ("", (None, None)), ("x:y", (None, None))])  # fmt: skip
def test_parse_exit_pair(text: str, pair: tuple[int | None, int | None]) -> None:
    assert parse_exit_pair(text) == pair


def test_parse_squeue_skips_garbage_and_keeps_odd_names() -> None:
    line = SEP.join(["9", "9", "N/A", "PENDING", "0", "None", "u", "/w", "n/a", "/w/o", "a|b c"]) + SEP
    recs = parse_squeue("warning: something\n" + line + "\n")
    assert len(recs) == 1 and recs[0].name == "a|b c" and recs[0].raw_id == "9"


def test_parse_sacct_skips_steps() -> None:
    recs = parse_sacct(
        f"5{SEP}5{SEP}COMPLETED{SEP}0:0{SEP}{SEP}x\n5.batch{SEP}5.batch{SEP}COMPLETED{SEP}0:0{SEP}{SEP}batch\n"
    )
    assert [r.raw_id for r in recs] == ["5"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/w/arr-%A_%a.out", "/w/arr-10_3.out"),
        ("/w/o-%j-%u-%x.log", "/w/o-12-alice-job.log"),
        ("/w/o-%4a-%%.log", "/w/o-0003-%.log"),
        ("/w/o-%N-%n-%t-%s.log", "/w/o-node1-0-0-batch.log"),
        ("/w/z\\%j.out", "/w/z%j.out"),
        ("/w/slurm-12.out", "/w/slurm-10_3.out"),  # squeue's wrong default for array tasks
        ("(null)", None),
    ],
)
def test_expand_stdout(pattern: str, expected: str | None) -> None:
    assert expand_stdout(pattern, "12", "10", "3", "alice", "/w", "node1", "job") == expected


def test_expand_stdout_plain_job_unknown_host_left_alone() -> None:
    assert expand_stdout("/w/%N-%j.out", "12", None, None, "u", "/w", None, "n") == "/w/%N-12.out"


def test_aggregate_array_running_wins() -> None:
    tasks = [
        JobStatus("9_0", JobState.COMPLETED, 0, None, None, "COMPLETED", None, "n"),
        JobStatus("9_1", JobState.RUNNING, None, None, None, "RUNNING", None, "n"),
        JobStatus("9_2", JobState.PENDING, None, None, None, "PENDING", None, "n"),
    ]
    agg = aggregate_array("9", tasks)
    assert agg.state is JobState.RUNNING and agg.exit_code is None and not agg.is_terminal


def test_aggregate_array_all_completed() -> None:
    tasks = [JobStatus(f"9_{i}", JobState.COMPLETED, 0, None, None, "COMPLETED", None, "n") for i in range(3)]
    agg = aggregate_array("9", tasks)
    assert agg.is_success and agg.exit_code == 0 and agg.reason == "3 tasks: 3 COMPLETED"
