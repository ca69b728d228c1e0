"""scripts/pyslurm-wheel builds the pyslurm wheel once per machine: a second venv gets the cached
wheel (no build, no source needed), an installed venv is left alone, and a missing source with
no cached wheel is a loud failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clusterenv import Cluster

from tests.cluster.conftest import require_real_pyslurm

pytestmark = pytest.mark.cluster

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pyslurm-wheel"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_second_venv_reuses_the_wheel_and_a_missing_source_fails(cluster: Cluster, tmp_path: Path) -> None:
    require_real_pyslurm()  # scripts/test ran the script for .venv: the wheel is cached
    if os.geteuid() != 0:
        pytest.skip("the wheel cache is root's")
    env = {k: v for k, v in os.environ.items() if k != "HPCJOBS_PYSLURM_SRC"}  # no source: cache only
    venv = tmp_path / "v"
    subprocess.run([os.path.realpath(sys._base_executable), "-m", "venv", str(venv)], check=True)  # type: ignore[attr-defined]
    r = run(str(venv), env=env)
    assert r.returncode == 0, r.stderr
    assert "installing /var/cache/hpcjobs-dev/pyslurm/" in r.stderr and "building" not in r.stderr
    version = subprocess.run([str(venv / "bin" / "python"), "-c", "import pyslurm; print(pyslurm.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    import pyslurm

    assert version == pyslurm.__version__
    again = run(str(venv), env=env)
    assert again.returncode == 0 and "already installed" in again.stderr, again.stderr

    empty = {**env, "HPCJOBS_PYSLURM_CACHE": str(tmp_path / "empty-cache")}
    bare = tmp_path / "bare"
    subprocess.run([str(venv / "bin" / "python"), "-m", "venv", "--without-pip", str(bare)], check=True)
    failed = run(str(bare), env=empty)
    assert failed.returncode == 1
    assert "HPCJOBS_PYSLURM_SRC is not set" in failed.stderr
