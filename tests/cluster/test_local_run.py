"""``hpcjobs run --local`` as the test user with the Apptainer runtime: the job specs of
tests/local_cases.py, run on this machine without Slurm (the Podman and Docker runtimes run the same
cases in plugins/hpcjobs-podman)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterenv import Cluster

from tests.local_cases import CASES
from tests.usercli import UserCli, user_cli_fixture

pytestmark = pytest.mark.cluster
SITE = str(Path(__file__).resolve().parents[2] / "site-configs" / "dev-cluster.yaml")


@pytest.fixture(scope="module")
def cli(cluster: Cluster) -> Iterator[UserCli]:
    yield from user_cli_fixture(cluster.test_user)


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_run_apptainer(cluster: Cluster, job_dir: Path, cli: UserCli, case: str) -> None:
    c = CASES[case]
    (job_dir / "job.yaml").write_text(json.dumps(c.spec(cluster.tiny_ref, job_dir)))
    r = cli("run", "--local", "job.yaml", "--site", SITE, cwd=job_dir)
    out = r.stdout + r.stderr
    assert r.returncode == c.exit_code, out
    assert c.check(out), out
    assert not list(job_dir.glob("hpcjobs-*.out"))  # no batch output file: output came here


def test_run_without_local_is_refused(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    (job_dir / "job.yaml").write_text(f"image: {cluster.tiny_ref}\n")
    r = cli("run", "job.yaml", "--site", SITE, cwd=job_dir)
    assert r.returncode == 2 and r.stderr.startswith("hpcjobs: error: ") and "--local" in r.stderr
