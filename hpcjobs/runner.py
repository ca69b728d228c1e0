"""The one I/O seam for processes: every external program is run through a Runner.

A Runner takes an argv list (never a shell string) and returns the exit code and output.
Tests inject fakes here; production uses :class:`SubprocessRunner`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
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
        env: Mapping[str, str] | None = None,
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
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> Completed:
        args = [str(a) for a in argv]
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            full_env.update(env)
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
