"""The profile wrappers for real: jobs submitted with the hpcjobs CLI as the unprivileged test user on
the dev cluster (Slurm + Apptainer), one report per rank, the program's output and exit status intact.
perf (software events: this VM has no hardware counters) and strace run here; nsys does not install
on these machines, so it is covered by the golden scripts only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # the core's tests package: its dev-cluster helpers
    sys.path.insert(0, str(REPO))
import tests.clusterenv as clusterenv  # noqa: E402
from tests.clusterenv import Cluster  # noqa: E402
from tests.usercli import UserCli, user_cli_fixture  # noqa: E402

cluster, job_dir = clusterenv.cluster, clusterenv.job_dir  # the core's dev-cluster fixtures

pytestmark = pytest.mark.cluster
SITE = str(REPO / "site-configs" / "dev-cluster.yaml")


@pytest.fixture(scope="module")
def cli(cluster: Cluster) -> Iterator[UserCli]:
    yield from user_cli_fixture(cluster.test_user)


def submit(cli: UserCli, job_dir: Path, spec: dict[str, object]) -> tuple[dict[str, object], str]:
    (job_dir / "job.yaml").write_text(json.dumps({**spec, "output": "slurm-%j.out"}))
    r = cli("submit", "job.yaml", "--site", SITE, "--wait", "--json", "--poll-s", "0.3", cwd=job_dir)
    assert r.stdout, f"no job submitted (exit {r.returncode}): {r.stderr}"
    result = json.loads(r.stdout)
    out = job_dir / f"slurm-{result['job_id']}.out"
    return result, out.read_text(errors="replace") if out.exists() else ""


def test_perf_and_strace_one_report_per_rank(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    spec = {"image": cluster.image("tiny_sif"), "ntasks": 2, "mpi": "none", "wrappers": ["perf-stat", "strace"],
            "entrypoint": ["/bin/sh", "-c", 'echo "rank=$SLURM_PROCID arg=$0"', "a; b $HOME"]}
    result, out = submit(cli, job_dir, spec)
    assert result["state"] == "COMPLETED", out
    job_id = result["job_id"]
    assert sorted(line for line in out.splitlines() if line.startswith("rank=")) == [
        "rank=0 arg=a; b $HOME", "rank=1 arg=a; b $HOME"]
    for rank in (0, 1):
        perf = job_dir / f"perf-{job_id}-rank{rank}.txt"
        strace = job_dir / f"strace-{job_id}-rank{rank}.txt"
        assert perf.is_file() and strace.is_file(), sorted(p.name for p in job_dir.iterdir())
        perf_text = perf.read_text()
        assert "Performance counter stats for" in perf_text and "task-clock" in perf_text
        # a real count, not "<not supported>": the task ran under perf
        assert any(line.split()[0].replace(".", "").replace(",", "").isdigit()
                   for line in perf_text.splitlines() if "task-clock" in line), perf_text
        strace_text = strace.read_text()
        assert strace_text.startswith("% time") and "execve" in strace_text
        assert perf.stat().st_uid == strace.stat().st_uid == cluster["test_uid"]  # written as the user


@pytest.mark.parametrize("wrapper", ["perf-stat", "strace"])
def test_exit_status_passes_through_the_profiler(cluster: Cluster, job_dir: Path, cli: UserCli, wrapper: str) -> None:
    spec = {"image": cluster.image("tiny_sif"), "wrappers": [wrapper], "entrypoint": ["/bin/sh", "-c", "exit 3"]}
    result, out = submit(cli, job_dir, spec)
    assert (result["state"], result["exit_code"]) == ("FAILED", 3), out
    tool = "perf" if wrapper == "perf-stat" else "strace"
    assert (job_dir / f"{tool}-{result['job_id']}-rank0.txt").is_file()
