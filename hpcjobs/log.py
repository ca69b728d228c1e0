"""Structured log events (structlog) that cost nothing until somebody listens.

hpcjobs is a library: it never configures logging globally. Events go to the stdlib logger
``hpcjobs.<area>``; structlog renders them, and is imported only when an event is actually
emitted at an enabled level (importing structlog costs more than a whole ``sbatch`` call).
The CLI turns them on with ``-v`` (see :func:`configure_cli_logging`).

The ``logging`` module itself is imported only when something could be emitted: a warning or
worse, or any event once a program has imported ``logging`` (only then can a logger be set below
the default WARNING). A CLI call that logs nothing (``render``, ``submit``) does not import it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

# logging's level numbers (fixed by its documentation), so that an event below WARNING can be
# dropped without importing logging when nobody imported it
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

_cli_level: int | None = None  # a CLI configuration not applied yet (see configure_cli_logging)


def std_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, after applying the CLI's configuration if one is pending."""
    import logging

    apply_pending()
    return logging.getLogger(name)


class EventLogger:
    """``log.info("image.hit", digest=...)``: an event name plus key/value fields."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._std: logging.Logger | None = None
        self._bound: Any = None

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._std is None:
            if level < WARNING and "logging" not in sys.modules:
                return  # no logger can be set below WARNING before logging is imported
            self._std = std_logger(self._name)
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
        self._emit(DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(ERROR, event, fields)


def get_logger(area: str) -> EventLogger:
    return EventLogger(area if area.startswith("hpcjobs") else f"hpcjobs.{area}")


def configure_cli_logging(verbosity: int) -> None:
    """CLI only: warnings by default, events with -v, debug with -vv; always on stderr.

    Without ``-v``, and while nothing has imported ``logging``, the configuration is applied when
    ``logging`` is first needed (:func:`std_logger`, :func:`apply_pending`): until then nothing
    below WARNING can be enabled, and a warning goes through :func:`std_logger` first."""
    global _cli_level
    level = WARNING if verbosity <= 0 else INFO if verbosity == 1 else DEBUG
    _cli_level = level
    if verbosity > 0 or "logging" in sys.modules:
        apply_pending()


def apply_pending() -> None:
    """Apply the CLI's logging configuration now, if :func:`configure_cli_logging` left one pending."""
    global _cli_level
    if _cli_level is None:
        return
    import logging

    level, _cli_level = _cli_level, None
    root = logging.getLogger("hpcjobs")
    root.setLevel(level)
    if not any(getattr(h, "_hpcjobs", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hpcjobs: %(message)s"))
        handler._hpcjobs = True  # type: ignore[attr-defined]
        root.addHandler(handler)
