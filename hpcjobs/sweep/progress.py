"""Progress while waiting on a sweep: a rich bar when stderr is a terminal and rich is installed,
else one plain line whenever the counts change."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

Progress = Callable[[Mapping[str, int], int], None]


def plain(stream: TextIO | None = None) -> Progress:
    last: list[str] = []

    def show(counts: Mapping[str, int], total: int) -> None:
        line = summary_line(counts, total)
        if not last or last[0] != line:
            last[:] = [line]
            print(line, file=stream or sys.stderr, flush=True)

    return show


def summary_line(counts: Mapping[str, int], total: int) -> str:
    ended = sum(n for s, n in counts.items() if s in ENDED)
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    return f"{ended}/{total} ended: {parts}"


ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE", "UNKNOWN"})  # fmt: skip


class RichBar:
    """Context manager around a rich progress bar (rich imported only here)."""

    def __init__(self, total: int, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p: Any = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), transient=False)  # fmt: skip
        self._task = self._p.add_task(label, total=total, detail="")

    def __enter__(self) -> Progress:
        self._p.start()

        def show(counts: Mapping[str, int], total: int) -> None:
            ended = sum(n for s, n in counts.items() if s in ENDED)
            detail = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
            self._p.update(self._task, completed=ended, total=total, detail=detail)

        return show

    def __exit__(self, *exc: object) -> None:
        self._p.stop()


def use_rich(stream: TextIO | None = None) -> bool:
    s = stream or sys.stderr
    if not (hasattr(s, "isatty") and s.isatty()):
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
