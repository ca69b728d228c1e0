"""The core's unit tests see the core's plugins (built-ins, and the test distributions some tests
put on sys.path), not the distributions of plugins/ that scripts/venv installs next to it: those
add runtimes, GPU flags and site sections that would change the names the core's tests expect.
The plugins' own tests (plugins/*/tests) run with them installed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcjobs import plugins

ROOT = Path(__file__).resolve().parents[2]


def plugin_dist_names() -> list[str]:
    names = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        m = re.search(r'^name\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
        if m:
            names.append(m.group(1))
    return names


@pytest.fixture(autouse=True)
def _core_plugins_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(plugins.DISABLE_ENV, ",".join(plugin_dist_names()))
    plugins._reset()
    yield
    plugins._reset()
