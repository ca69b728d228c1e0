"""Provide the dev-cluster fixtures (tests/clusterenv.py) to the cluster tests, and the ``backend``
fixture that runs a test through both scheduler backends."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # `tests` is a package; make sure it is importable however pytest is started
    sys.path.insert(0, _REPO)

import tests.clusterenv as _clusterenv  # noqa: E402
from tests.clusterenv import cluster, job_dir  # noqa: E402,F401  (fixtures)

# `import clusterenv` and `import tests.clusterenv` must give the same module (one cache, one Cluster class).
sys.modules.setdefault("clusterenv", _clusterenv)

BACKENDS = ("cli", "pyslurm")


def require_real_pyslurm() -> None:
    """Real pyslurm must be importable (scripts/pyslurm-wheel installs it into .venv): a failure
    under HPCJOBS_REQUIRE_CLUSTER=1 (CI), a skip elsewhere."""
    if importlib.util.find_spec("pyslurm") is not None:
        return
    message = "real pyslurm is not installed in this venv (run scripts/pyslurm-wheel)"
    if os.environ.get(_clusterenv.REQUIRE_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs the test once through the Slurm CLI backend (``HPCJOBS_SCHEDULER=cli``) and once with
    real pyslurm installed and ``HPCJOBS_SCHEDULER=auto``, which must then pick pyslurm: what a
    user gets after ``pip install pyslurm``. Subprocesses inherit the variable."""
    kind = str(request.param)
    request.getfixturevalue("cluster")  # the dev cluster first: without it, fail or skip as usual
    if kind == "pyslurm":
        require_real_pyslurm()
        from hpcjobs.schedulers import describe_backend

        monkeypatch.setenv("HPCJOBS_SCHEDULER", "auto")
        line = describe_backend()
        assert line.startswith("pyslurm: submit via sbatch"), line
    else:
        monkeypatch.setenv("HPCJOBS_SCHEDULER", "cli")
    yield kind
