"""Structured log events (structlog) that cost nothing until somebody listens.

hpcjobs is a library: it never configures logging globally. Events go to the stdlib logger
``hpcjobs.<area>``; structlog renders them, and is imported only when an event is actually
emitted at an enabled level (importing structlog costs more than a whole ``sbatch`` call).
The CLI turns them on with ``-v`` (see :func:`configure_cli_logging`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any


class EventLogger:
    """``log.info("image.hit", digest=...)``: an event name plus key/value fields."""

    def __init__(self, name: str) -> None:
        self._std = logging.getLogger(name)
        self._bound: Any = None

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if not self._std.isEnabledFor(level):
            return
        if self._bound is None:
            import structlog

            self._bound = structlog.wrap_logger(
                self._std,
                processors=[
                    structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.KeyValueRenderer(key_order=["timestamp", "event"], sort_keys=True),
                ],
                wrapper_class=structlog.stdlib.BoundLogger,
            )
        self._bound.log(level, event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)


def get_logger(area: str) -> EventLogger:
    return EventLogger(area if area.startswith("hpcjobs") else f"hpcjobs.{area}")


def configure_cli_logging(verbosity: int) -> None:
    """CLI only: warnings by default, events with -v, debug with -vv; always on stderr."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger("hpcjobs")
    root.setLevel(level)
    if not any(getattr(h, "_hpcjobs", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hpcjobs: %(message)s"))
        handler._hpcjobs = True  # type: ignore[attr-defined]
        root.addHandler(handler)
