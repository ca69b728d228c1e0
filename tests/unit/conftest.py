"""The core's unit tests see the core's own plugins (and the test distributions they put on the
path), not the separately installable distributions under plugins/, which have their own tests.

They never reach a real pyslurm either: with one installed (scripts/pyslurm-wheel puts it into
.venv) the automatic backend choice would ask ``sinfo --version`` through the tests' fake Runners.
Tests of the choice itself (test_pyslurm_backend.py) clear the variable and inject a fake module."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from hpcjobs import plugins


def _core_entry_points(original: Any) -> Any:
    def entry_points() -> Sequence[Any]:
        keep = []
        for ep in original():
            name = ep.dist or "hpcjobs"  # plugin_index rows carry the distribution's name
            if name == "hpcjobs" or name.startswith("hpcjobs-test-"):
                keep.append(ep)
        return keep

    return entry_points


@pytest.fixture(scope="package", autouse=True)
def _core_plugins_only() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugins, "_entry_points", _core_entry_points(plugins._entry_points))
        plugins._reset()
        yield
    plugins._reset()


@pytest.fixture(autouse=True)
def _scheduler_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_SCHEDULER", "cli")
