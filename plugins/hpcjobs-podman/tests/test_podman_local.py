"""``hpcjobs run --local`` with the Podman runtime and with a ``docker`` CLI (Debian's podman-docker,
/usr/bin/docker), as the test user: the same job specs as the Apptainer runtime's local runs
(tests/local_cases.py in the core), without Slurm."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # the core's tests package: its dev-cluster helpers
    sys.path.insert(0, str(REPO))
import tests.clusterenv as clusterenv  # noqa: E402
from tests.clusterenv import Cluster  # noqa: E402
from tests.local_cases import CASES  # noqa: E402
from tests.usercli import UserCli, user_cli_fixture  # noqa: E402

cluster, job_dir = clusterenv.cluster, clusterenv.job_dir  # the core's dev-cluster fixtures

pytestmark = pytest.mark.cluster
SITE = str(REPO / "plugins" / "hpcjobs-podman" / "site-configs" / "dev-cluster-podman.yaml")
# podman-docker's docker: /usr/local/bin may hold another docker CLI without a daemon
DOCKER_PATH = {"PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def cli(cluster: Cluster) -> Iterator[UserCli]:
    yield from user_cli_fixture(cluster.test_user)


@pytest.mark.parametrize("runtime", ["podman", "docker"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_local_run(cluster: Cluster, job_dir: Path, cli: UserCli, case: str, runtime: str) -> None:
    if runtime == "docker":
        assert shutil.which("docker", path=DOCKER_PATH["PATH"]), "no docker CLI in /usr/bin (podman-docker)"
    c = CASES[case]
    (job_dir / "job.yaml").write_text(json.dumps(c.spec(cluster.tiny_ref, job_dir)))
    args = ["run", "--local", "job.yaml", "--site", SITE] + (["--runtime", "docker"] if runtime == "docker" else [])
    r = cli(*args, cwd=job_dir, extra_env=DOCKER_PATH if runtime == "docker" else None)
    out = r.stdout + r.stderr
    assert r.returncode == c.exit_code, out
    assert c.check(out), out
