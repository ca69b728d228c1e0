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


# one short container per task, LINES numbered lines on each stream, exiting at once (see test_podman_cluster.py)
LINES = 4
SHORT = (f'for i in $(seq {LINES}); do echo "out r=$SLURM_PROCID i=$i"; '
         'echo "err r=$SLURM_PROCID i=$i" >&2; done; exit 5')


@pytest.mark.parametrize("runtime", ["podman", "docker"])
def test_many_short_containers_streams_apart_in_order(
    cluster: Cluster, job_dir: Path, cli: UserCli, runtime: str
) -> None:
    """Regression test for lost output, without a terminal (as in CI): 8 tasks, every line arrives, on
    its own stream (stdout or stderr, never crossed), each rank's lines in order; the exit code is the
    container's. The local script runs `--log-driver passthrough`."""
    spec = {"image": cluster.tiny_ref, "ntasks": 8, "mpi": "none", "entrypoint": ["/bin/sh", "-c", SHORT]}
    (job_dir / "job.yaml").write_text(json.dumps(spec))
    args = ["run", "--local", "job.yaml", "--site", SITE] + (["--runtime", "docker"] if runtime == "docker" else [])
    r = cli(*args, cwd=job_dir, extra_env=DOCKER_PATH if runtime == "docker" else None)
    assert r.returncode == 5, r.stdout + r.stderr
    for stream, text in (("out", r.stdout), ("err", r.stderr)):
        other = "err" if stream == "out" else "out"
        assert not [ln for ln in text.splitlines() if ln.startswith(f"{other} r=")], text
        for rank in range(8):
            mine = [ln for ln in text.splitlines() if ln.startswith(f"{stream} r={rank} ")]
            assert mine == [f"{stream} r={rank} i={i}" for i in range(1, LINES + 1)], text


def test_on_a_terminal_podman_keeps_its_default_log_driver(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    """Podman refuses --log-driver passthrough when a stream is a terminal: a local run on one runs
    without it (conmon relays the output, as before), and works."""
    spec = {"image": cluster.tiny_ref, "ntasks": 2, "mpi": "none", "entrypoint": ["/bin/sh", "-c", SHORT]}
    (job_dir / "job.yaml").write_text(json.dumps(spec))
    r = cli("run", "--local", "job.yaml", "--site", SITE, cwd=job_dir, tty=True)
    assert r.returncode == 5, r.stdout
    assert "passthrough" not in r.stdout  # no refusal ("cannot be used on a TTY")
    for stream in ("out", "err"):
        for rank in range(2):
            assert f"{stream} r={rank} i={LINES}" in r.stdout.replace("\r\n", "\n").splitlines(), r.stdout
