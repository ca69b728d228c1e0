"""The process seam's non-blocking start (hpcjobs.runner.start): real processes through
SubprocessRunner.start give what a call gives; RecordingRunner records and answers a started call;
a Runner without ``start`` is called at once; Pending keeps one answer. No timing asserts."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from hpcjobs.errors import RunnerError, SchedulerError
from hpcjobs.runner import Call, Completed, Done, Pending, RecordingRunner, SubprocessRunner, start
from hpcjobs.schedulers import SlurmCli

PY = sys.executable


def test_started_process_gives_what_a_call_gives(tmp_path: Path) -> None:
    runner = SubprocessRunner()
    code = "import os, sys; d = sys.stdin.read(); print(os.getcwd(), os.environ.get('HPCJOBS_T'), repr(d)); " \
           "print('err', file=sys.stderr); sys.exit(3)"  # fmt: skip
    kw: dict[str, object] = {"input_text": "a b\n'q' $x\n", "env": {"HPCJOBS_T": "v w"}, "cwd": str(tmp_path)}
    called = runner([PY, "-c", code], **kw)  # type: ignore[arg-type]
    started = runner.start([PY, "-c", code], **kw)  # type: ignore[arg-type]
    got = started.wait()
    assert got == called
    assert got.returncode == 3 and got.stdout == f"{tmp_path} v w \"a b\\n'q' $x\\n\"\n" and got.stderr == "err\n"
    assert started.wait() is got  # collected once


def test_input_larger_than_a_pipe_reaches_the_program_whole() -> None:
    data = "".join(f"line {i} {'x' * 50}\n" for i in range(40_000))  # ~2.4 MB, far over a pipe's 64 KiB
    started = SubprocessRunner().start([PY, "-c", "import sys; d = sys.stdin.read(); print(len(d), d[-20:])"],
                                       input_text=data)  # fmt: skip
    assert started.wait().stdout == f"{len(data)} {data[-20:]}\n"


def test_program_that_does_not_read_its_input_is_not_an_error() -> None:
    got = SubprocessRunner().start([PY, "-c", "print('ok')"], input_text="x" * 500_000).wait()
    assert (got.returncode, got.stdout) == (0, "ok\n")


def test_start_errors_and_timeout_read_as_a_calls() -> None:
    runner = SubprocessRunner()
    with pytest.raises(RunnerError, match="program not found on PATH"):
        runner.start(["hpcjobs-no-such-program"], input_text="x")
    started = runner.start([PY, "-c", "import time; time.sleep(60)"], timeout_s=0.2)
    with pytest.raises(RunnerError, match=r"no answer within 0\.2 s"):
        started.wait()
    assert started._proc.returncode is not None  # killed and reaped


def test_discard_ends_the_program() -> None:
    started = SubprocessRunner().start([PY, "-c", "import time; time.sleep(60)"])
    started.discard()
    assert started._proc.returncode == -9
    started.discard()  # twice is harmless


def test_recording_runner_records_at_start_answers_then_and_spans_until_collected() -> None:
    seen: list[str] = []

    def answer(call: Call) -> Completed | None:
        seen.append(call.argv[0])
        return Completed(call.argv, 0, "answered", "") if call.argv[0] == "fake" else None

    rec = RecordingRunner(answer=answer)
    done = rec.start(["fake", "a"], input_text="in")
    assert isinstance(done, Done) and seen == ["fake"] and rec.calls == [Call(("fake", "a"), "in")]
    assert len(rec.spans) == 1 and done.wait().stdout == "answered"
    real = rec.start([PY, "-c", "print('real')"])
    assert rec.argvs()[-1] == (PY, "-c", "print('real')") and len(rec.spans) == 1  # open until collected
    assert real.wait().stdout == "real\n"
    assert [c.argv[0] for c, _, _ in rec.spans] == ["fake", PY]
    with pytest.raises(RunnerError):
        rec.start(["hpcjobs-no-such-program"])
    assert rec.programs()[-1] == "hpcjobs-no-such-program" and len(rec.spans) == 3  # recorded, raised, timed


def test_a_runner_without_start_is_called_at_once() -> None:
    calls: list[tuple[str, ...]] = []

    def plain(argv: Sequence[str], *, input_text: str | None = None, env: Mapping[str, str | None] | None = None,
              cwd: str | None = None, timeout_s: float | None = None) -> Completed:  # fmt: skip
        calls.append(tuple(argv))
        return Completed(tuple(argv), 0, input_text or "", "")

    started = start(plain, ["x"], input_text="hi")
    assert calls == [("x",)] and started.wait().stdout == "hi"
    rec = RecordingRunner(inner=plain)  # a recording runner passes a started call on the same way
    assert rec.start(["y"]).wait().argv == ("y",) and calls[-1] == ("y",)


def test_pending_keeps_one_answer_and_discard_says_how() -> None:
    runs: list[int] = []

    def finish() -> int:
        runs.append(1)
        return 7

    p = Pending(finish)
    assert p.result() == 7 and p.result() == 7 and runs == [1]

    def fail() -> int:
        runs.append(2)
        raise SchedulerError("refused")

    bad = Pending(fail)
    for _ in range(2):
        with pytest.raises(SchedulerError, match="refused"):
            bad.result()
    assert runs == [1, 2]
    ended: list[str] = []
    q = Pending(finish, lambda: ended.append("ended"))
    q.discard()
    assert ended == ["ended"] and runs == [1, 2]  # given up without its answer
    Pending(fail).discard()  # no way to end it early: waited for, its error dropped
    assert runs == [1, 2, 2]


class Held:
    """A runner whose started calls answer only when collected: what a slow sbatch looks like."""

    def __init__(self, answer: Completed) -> None:
        self.answer = answer
        self.events: list[str] = []

    def __call__(self, argv: Sequence[str], **kw: object) -> Completed:
        self.events.append(f"call {argv[0]}")
        return self.answer

    def start(self, argv: Sequence[str], **kw: object) -> Done:
        self.events.append(f"start {argv[0]}")
        events, answer = self.events, self.answer

        class Later(Done):
            def wait(self) -> Completed:
                events.append(f"collect {argv[0]}")
                return answer

        return Later(answer)


def test_slurm_cli_submit_start_returns_before_sbatch_answers(tmp_path: Path) -> None:
    held = Held(Completed(("sbatch",), 0, "4242\n", ""))
    pending = SlurmCli(held).submit_start("#!/bin/bash\ntrue\n", cwd=str(tmp_path))
    held.events.append("caller works")
    assert pending.result() == "4242" and pending.result() == "4242"
    assert held.events == ["start sbatch", "caller works", "collect sbatch"]
    refused = Held(Completed(("sbatch",), 1, "", "sbatch: error: Invalid partition name specified"))
    pending = SlurmCli(refused).submit_start("#!/bin/bash\n", cwd=str(tmp_path))
    with pytest.raises(SchedulerError, match="sbatch refused the job: Invalid partition name"):
        pending.result()
    with pytest.raises(SchedulerError, match="working directory for the job does not exist"):
        SlurmCli(held).submit_start("#!/bin/bash\n", cwd=str(tmp_path / "absent"))


def test_slurm_cli_submit_start_retries_after_collecting(tmp_path: Path) -> None:
    """A transient failure of the started sbatch is retried (blocking) when the answer is collected."""
    answers = [Completed(("sbatch",), 1, "", "sbatch: error: Unable to contact slurm controller (connect failure)"),
               Completed(("sbatch",), 0, "77\n", "")]  # fmt: skip
    rec = RecordingRunner(answer=lambda call: answers.pop(0))
    pending = SlurmCli(rec, sleep=lambda s: None).submit_start("#!/bin/bash\n", cwd=str(tmp_path))
    assert len(rec.calls) == 1
    assert pending.result() == "77" and len(rec.calls) == 2 and rec.calls[0] == rec.calls[1]


def test_job_records_start_counts_when_collected_and_can_be_given_up() -> None:
    held = Held(Completed(("squeue",), 0, "1\n2_[0-9]\n", ""))
    pending = SlurmCli(held).job_records_start()
    assert held.events == ["start squeue"] and pending.result() == 11
    sleeper = SubprocessRunner().start([PY, "-c", "import time; time.sleep(60)"])
    given_up = Pending(sleeper.wait, sleeper.discard)  # as job_records_start makes it
    given_up.discard()
    assert sleeper._proc.returncode == -9
