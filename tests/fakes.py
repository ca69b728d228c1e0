"""Helpers for the fake Runners of the unit tests (see :class:`hpcjobs.runner.RecordingRunner`)."""

from __future__ import annotations

from typing import NoReturn

from hpcjobs.runner import Call


def unexpected(call: Call) -> NoReturn:
    """An answer for a RecordingRunner: fail the test, nothing may be run here."""
    raise AssertionError(f"unexpected command {list(call.argv)}")
