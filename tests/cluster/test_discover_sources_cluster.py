"""``hpcjobs site discover`` reads the live cluster through pyslurm when the backend choice picks it,
and through the CLI otherwise: both give the same draft, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clusterenv import Cluster

from tests.cluster.conftest import require_real_pyslurm

pytestmark = pytest.mark.cluster


def test_discover_through_pyslurm_and_through_the_cli_agree(cluster: Cluster, tmp_path: Path) -> None:
    require_real_pyslurm()
    drafts = {}
    for choice, source in (("cli", "cli"), ("auto", "pyslurm")):
        env = {**os.environ, "HPCJOBS_SCHEDULER": choice}
        r = subprocess.run([sys.executable, "-m", "hpcjobs", "-v", "site", "discover"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"site.discover.source' source='{source}'" in r.stderr, r.stderr
        drafts[source] = r.stdout
    assert drafts["pyslurm"] == drafts["cli"]
    assert "name: hpcjobs-dev" in drafts["cli"] and "max_gpus_per_node: 2" in drafts["cli"]
