"""Unit tests never reach a real pyslurm: with one installed (scripts/pyslurm-wheel puts it into
.venv) the automatic backend choice would ask ``sinfo --version`` through the tests' fake Runners.
Tests of the choice itself (test_pyslurm_backend.py) clear the variable and inject a fake module."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _scheduler_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "cli")
