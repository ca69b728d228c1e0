"""The one I/O seam for processes: every external program is run through a Runner.

A Runner takes an argv list (never a shell string) and returns the exit code and output. ``env``
holds changes to the caller's environment: a value sets a variable, None removes it.
Production uses :class:`SubprocessRunner`; :class:`RecordingRunner` wraps one to record (count
Slurm queries, say) or to answer calls itself (dry runs, and the fakes tests inject here).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from hpcjobs.errors import RunnerError


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> Completed: ...


class SubprocessRunner:
    """Runs argv lists with subprocess, never through a shell."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> Completed:
        args = [str(a) for a in argv]
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            for key, value in env.items():
                if value is None:
                    full_env.pop(key, None)
                else:
                    full_env[key] = value
        try:
            proc = subprocess.run(
                args,
                input=input_text,
                capture_output=True,
                text=True,
                env=full_env,
                cwd=cwd,
                timeout=timeout_s,
                check=False,
                stdin=None if input_text is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise RunnerError(f"{args[0]}: program not found on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise RunnerError(f"{args[0]}: no answer within {timeout_s} s") from exc
        return Completed(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def default_runner() -> Runner:
    return SubprocessRunner()


@dataclass(frozen=True)
class Call:
    """One call a :class:`RecordingRunner` received, with the keyword arguments it came with."""

    argv: tuple[str, ...]
    input_text: str | None = None
    env: Mapping[str, str | None] | None = None
    cwd: str | None = None
    timeout_s: float | None = None

    def replay(self, runner: Runner) -> Completed:
        """Make the same call to ``runner``."""
        return runner(self.argv, input_text=self.input_text, env=self.env, cwd=self.cwd, timeout_s=self.timeout_s)


class RecordingRunner:
    """A Runner that records every call in :attr:`calls`, then answers it or passes it on.

    ``answer(call)`` is asked first: a :class:`Completed` it returns is the result and nothing is
    run; ``None`` passes the call to ``inner`` (default: a :class:`SubprocessRunner`). An answer may
    also raise, e.g. :class:`RunnerError`, or in a test an ``AssertionError`` for a call that must
    not happen. The call is recorded before it is answered, so a call that raised is recorded too.
    """

    def __init__(
        self,
        inner: Runner | None = None,
        answer: Callable[[Call], Completed | None] | None = None,
    ) -> None:
        self.inner: Runner = inner if inner is not None else SubprocessRunner()
        self.answer = answer
        self.calls: list[Call] = []
        # each call with its start and end (time.perf_counter() seconds), in the order they ended
        # (calls may come from several threads): where a submission waits on Slurm
        self.spans: list[tuple[Call, float, float]] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> Completed:
        call = Call(tuple(str(a) for a in argv), input_text, None if env is None else dict(env), cwd, timeout_s)
        self.calls.append(call)
        started = time.perf_counter()
        try:
            if self.answer is not None:
                result = self.answer(call)
                if result is not None:
                    return result
            return call.replay(self.inner)
        finally:
            self.spans.append((call, started, time.perf_counter()))

    def argvs(self) -> list[tuple[str, ...]]:
        """The argv of every call so far, in order."""
        return [c.argv for c in self.calls]

    def programs(self) -> list[str]:
        """The program (``argv[0]``) of every call so far, in order."""
        return [c.argv[0] for c in self.calls]
