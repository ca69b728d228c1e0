"""Provide the dev-cluster fixtures (tests/clusterenv.py) to the cluster tests."""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # `tests` is a package; make sure it is importable however pytest is started
    sys.path.insert(0, _REPO)

import tests.clusterenv as _clusterenv  # noqa: E402
from tests.clusterenv import cluster, job_dir  # noqa: E402,F401  (fixtures)

# `import clusterenv` and `import tests.clusterenv` must give the same module (one cache, one Cluster class).
sys.modules.setdefault("clusterenv", _clusterenv)
