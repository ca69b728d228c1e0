"""The one I/O seam for processes: every external program is run through a Runner.

A Runner takes an argv list (never a shell string) and returns the exit code and output. ``env``
holds changes to the caller's environment: a value sets a variable, None removes it.
Production uses :class:`SubprocessRunner`; :class:`RecordingRunner` wraps one to record (count
Slurm queries, say) or to answer calls itself (dry runs, and the fakes tests inject here).

:func:`start` begins a call and returns at once, so that the caller works while the program runs
(a sweep writes array k+1's points while ``sbatch`` submits array k): a Runner with a ``start``
method of the same arguments is asked through it; any other Runner is called there and then, and
the answer handed back (correct, only not overlapped).
"""

from __future__ import annotations

import locale
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

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


class Started(Protocol):
    """A call that :func:`start` began: :meth:`wait` gives its :class:`Completed` (raising what
    the call would have raised); :meth:`discard` ends it without an answer (a query no longer
    needed; never a submission, which may have happened)."""

    def wait(self) -> Completed: ...

    def discard(self) -> None: ...


class Done:
    """A call already answered (a Runner without ``start``, or a fake's answer)."""

    def __init__(self, result: Completed) -> None:
        self.result = result

    def wait(self) -> Completed:
        return self.result

    def discard(self) -> None:
        pass


class Running:
    """A process :meth:`SubprocessRunner.start` started: its input already written (or being
    written by a helper thread when it does not fit in the pipe), its output read by :meth:`wait`."""

    def __init__(self, proc: subprocess.Popen[str], argv: tuple[str, ...], timeout_s: float | None,
                 writer: threading.Thread | None) -> None:  # fmt: skip
        self._proc, self._argv, self._timeout_s, self._writer = proc, argv, timeout_s, writer
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._result: Completed | None = None

    def wait(self) -> Completed:
        if self._result is not None:
            return self._result
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            stdout, stderr = self._proc.communicate(timeout=left)
        except subprocess.TimeoutExpired as exc:
            self.discard()
            raise RunnerError(f"{self._argv[0]}: no answer within {self._timeout_s} s") from exc
        if self._writer is not None:
            self._writer.join()
        self._result = Completed(self._argv, self._proc.returncode, stdout, stderr)
        return self._result

    def discard(self) -> None:
        if self._result is not None:
            return
        if self._proc.returncode is None:
            self._proc.kill()
        self._proc.communicate()  # reaps it and closes the pipes
        if self._writer is not None:
            self._writer.join()


def _feed(fd: int, data: bytes) -> threading.Thread | None:
    """Write ``data`` to the pipe ``fd`` and close it; what does not fit in the pipe at once goes
    from a helper thread (the program reads it while the caller works)."""
    os.set_blocking(fd, False)
    try:
        done = os.write(fd, data) if data else 0
    except BlockingIOError:
        done = 0
    except BrokenPipeError:  # the program ended without reading its input: its answer says why
        os.close(fd)
        return None
    if done == len(data):
        os.close(fd)
        return None
    os.set_blocking(fd, True)

    def rest() -> None:
        try:
            with open(fd, "wb", closefd=True) as pipe:
                pipe.write(data[done:])
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=rest, name="hpcjobs-runner-input", daemon=True)
    writer.start()
    return writer


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
        full_env = _full_env(env)
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

    def start(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> Running:
        """Start ``argv`` and return at once; :meth:`Running.wait` gives what ``__call__`` would
        have returned (same decoding, same errors; the timeout counts from here)."""
        args = [str(a) for a in argv]
        full_env = _full_env(env)
        data = None
        if input_text is not None:  # encoded as subprocess.run(text=True) encodes it
            data = input_text.encode(locale.getpreferredencoding(False))
        read_end, write_end = os.pipe() if data is not None else (None, None)
        try:
            proc = subprocess.Popen(
                args,
                stdin=read_end if read_end is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=full_env,
                cwd=cwd,
            )
        except FileNotFoundError as exc:
            if write_end is not None:
                os.close(write_end)
            raise RunnerError(f"{args[0]}: program not found on PATH") from exc
        finally:
            if read_end is not None:
                os.close(read_end)
        writer = _feed(write_end, data) if write_end is not None and data is not None else None
        return Running(proc, tuple(args), timeout_s, writer)


def _full_env(env: Mapping[str, str | None] | None) -> dict[str, str] | None:
    if env is None:
        return None
    full_env = dict(os.environ)
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return full_env


def start(
    runner: Runner,
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: str | None = None,
    timeout_s: float | None = None,
) -> Started:
    """Begin ``argv`` through ``runner``: its own ``start`` where it has one, else the call made
    now and its answer handed back (:class:`Done`). Raises what starting raises (program not found)."""
    own: Callable[..., Started] | None = getattr(runner, "start", None)
    if own is not None:
        return own(argv, input_text=input_text, env=env, cwd=cwd, timeout_s=timeout_s)
    return Done(runner(argv, input_text=input_text, env=env, cwd=cwd, timeout_s=timeout_s))


T = TypeVar("T")


class Pending(Generic[T]):
    """A result on its way (a scheduler's submission or query begun through :func:`start`):
    :meth:`result` waits for it, and gives the same answer (or error) each time; :meth:`discard`
    gives it up: through ``discard`` where ending it early is safe (a query), else by waiting for
    it and dropping the answer (a submission: it may have happened)."""

    def __init__(self, finish: Callable[[], T], discard: Callable[[], None] | None = None) -> None:
        self._finish: Callable[[], T] | None = finish
        self._discard = discard
        self._value: T | None = None
        self._error: BaseException | None = None

    def result(self) -> T:
        if self._finish is not None:
            finish, self._finish = self._finish, None
            try:
                self._value = finish()
            except BaseException as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when finish() returned

    def discard(self) -> None:
        if self._finish is None:
            return
        if self._discard is None:
            try:
                self.result()
            except Exception:  # noqa: S110  (given up: its answer, error or not, is not wanted)
                pass
            return
        self._finish = None
        self._discard()

    @classmethod
    def done(cls, value: T) -> Pending[T]:
        return cls(lambda: value)


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

    def start(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> Started:
        """Like a call, begun: recorded now; ``answer`` is asked now (a fake answers as the
        program would at its start, seeing what exists then), else ``inner`` starts it. Its span
        ends when its answer is collected (:meth:`Started.wait`), not when the program ended."""
        call = Call(tuple(str(a) for a in argv), input_text, None if env is None else dict(env), cwd, timeout_s)
        self.calls.append(call)
        started = time.perf_counter()
        try:
            if self.answer is not None:
                result = self.answer(call)
                if result is not None:
                    self.spans.append((call, started, time.perf_counter()))
                    return Done(result)
            inner = start(self.inner, call.argv, input_text=input_text, env=call.env, cwd=cwd, timeout_s=timeout_s)
        except BaseException:
            self.spans.append((call, started, time.perf_counter()))
            raise
        return _Spanned(inner, lambda: self.spans.append((call, started, time.perf_counter())))

    def argvs(self) -> list[tuple[str, ...]]:
        """The argv of every call so far, in order."""
        return [c.argv for c in self.calls]

    def programs(self) -> list[str]:
        """The program (``argv[0]``) of every call so far, in order."""
        return [c.argv[0] for c in self.calls]


class _Spanned:
    """A started call whose span a :class:`RecordingRunner` closes when it is collected."""

    def __init__(self, inner: Started, close: Callable[[], None]) -> None:
        self._inner, self._close = inner, close
        self._open = True

    def _end(self) -> None:
        if self._open:
            self._open = False
            self._close()

    def wait(self) -> Completed:
        try:
            return self._inner.wait()
        finally:
            self._end()

    def discard(self) -> None:
        try:
            self._inner.discard()
        finally:
            self._end()
