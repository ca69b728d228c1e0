"""Where output goes (hpcjobs.outputs), checked where the files really land: submitted as root and
as the test user, through both scheduler backends, from directories with hostile names. What
``render --explain`` states is compared with what the job did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clusterenv import Cluster

from hpcjobs.render import comment_text
from tests.cluster.test_user_cli import UserCli, user_cli  # noqa: F401  (fixture)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "site-configs" / "dev-cluster.yaml"
HOSTILE = "a b 'q\" $HOME;x"  # space, quotes, $, ;


def _cli(user: str, cli: UserCli, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if user == "root":
        return subprocess.run([sys.executable, "-m", "hpcjobs", "--site", str(SITE), *args], capture_output=True,
                              text=True, cwd=cwd, timeout=300)  # fmt: skip
    return cli(*args, cwd=cwd)


def _job_dir(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir()
    d.chmod(0o777)
    return d


def _submit(user: str, cli: UserCli, d: Path, job: dict[str, object]) -> str:
    (d / "job.yaml").write_text(json.dumps(job))  # JSON is YAML, and carries any path
    r = _cli(user, cli, ["submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2"], d)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["state"] == "COMPLETED", result
    return str(result["job_id"])


@pytest.mark.parametrize("user", ["root", "hpctest"])
def test_log_and_program_files_land_where_explain_says(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, backend: str, user: str  # noqa: F811
) -> None:
    d = _job_dir(job_dir, f"sub {HOSTILE}")
    image = cluster.image("tiny_sif")
    program = ["/bin/sh", "-c", "pwd > where.txt; echo log-line"]

    # no workdir: the program runs in the job directory; its file lands beside the log
    job_id = _submit(user, user_cli, d, {"image": image, "entrypoint": program})
    assert "log-line" in (d / f"hpcjobs-tiny-{job_id}.out").read_text()
    assert (d / "where.txt").read_text() == f"{d}\n"
    explain = _cli(user, user_cli, ["render", "--explain", "job.yaml"], d)
    assert explain.returncode == 0, explain.stderr
    assert f"#   job starts in: {comment_text(str(d))}  <- " in explain.stdout
    assert f"#   Slurm log (stdout and stderr): {comment_text(str(d))}/hpcjobs-%x-%j.out  <- " in explain.stdout
    assert f"#   program runs in: {comment_text(str(d))}, the job directory" in explain.stdout

    # workdir on a writable bind: the program's file lands in the bind's host directory
    out = _job_dir(d, f"out {HOSTILE}")
    job = {"image": image, "entrypoint": program, "workdir": "/results/today",
           "binds": [{"src": str(out), "dst": "/results"}]}
    (out / "today").mkdir()
    (out / "today").chmod(0o777)
    job_id = _submit(user, user_cli, d, job)
    assert "log-line" in (d / f"hpcjobs-tiny-{job_id}.out").read_text()
    assert (out / "today" / "where.txt").read_text() == "/results/today\n"
    explain = _cli(user, user_cli, ["render", "--explain", "job.yaml"], d)
    assert f"#     = host {comment_text(str(out))}/today (bind " in explain.stdout


def test_workdir_on_no_bind_keeps_files_in_the_container(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, backend: str  # noqa: F811
) -> None:
    d = _job_dir(job_dir, "no bind $x")
    job = {"image": cluster.image("tiny_sif"), "workdir": cluster["tiny_workdir"],
           "entrypoint": ["/bin/sh", "-c", "echo data > file.txt || echo cannot-write; pwd"]}
    job_id = _submit("hpctest", user_cli, d, job)
    log = (d / f"hpcjobs-tiny-{job_id}.out").read_text()
    assert "cannot-write" in log and log.rstrip().endswith(cluster["tiny_workdir"]), log
    assert not (d / "file.txt").exists()
    explain = _cli("hpctest", user_cli, ["render", "--explain", "job.yaml"], d)
    assert "on no bind of this job: files written there stay in the container" in explain.stdout


@pytest.mark.parametrize("user", ["root", "hpctest"])
@pytest.mark.parametrize(("name", "message"), [
    ("new\nline", "contains the control character '\\n', which Slurm's job records"),
    ("p%j", "contains '%', which Slurm reads as part of a pattern in the log's path"),
])  # fmt: skip
def test_job_directory_slurm_cannot_carry_is_refused(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, user: str, name: str, message: str  # noqa: F811
) -> None:
    d = _job_dir(job_dir, name)
    (d / "job.yaml").write_text(json.dumps({"image": cluster.image("tiny_sif")}))
    r = _cli(user, user_cli, ["submit", "job.yaml"], d)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert list(d.iterdir()) == [d / "job.yaml"]
    # with an absolute log the '%' is harmless: Slurm expands only the log's own patterns then
    if "%" in name:
        (d / "job.yaml").write_text(json.dumps({"image": cluster.image("tiny_sif"), "entrypoint": ["pwd"],
                                                "output": f"{job_dir}/abs-%j.out"}))
        job_id = _submit(user, user_cli, d, json.loads((d / "job.yaml").read_text()))
        assert (job_dir / f"abs-{job_id}.out").read_text() == f"{d}\n"


@pytest.mark.parametrize("user", ["root", "hpctest"])
def test_log_directory_that_does_not_exist_is_refused(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, user: str  # noqa: F811
) -> None:
    d = _job_dir(job_dir, f"{user} 'x'")
    (d / "job.yaml").write_text(json.dumps({"image": cluster.image("tiny_sif"), "output": "logs/%x-%j.out"}))
    r = _cli(user, user_cli, ["submit", "job.yaml"], d)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"the log's directory {d}/logs does not exist" in r.stderr
    (d / "logs").mkdir()
    (d / "logs").chmod(0o777)
    r = _cli(user, user_cli, ["submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2"], d)
    assert r.returncode == 0, r.stderr
    assert (d / "logs" / f"tiny-{json.loads(r.stdout)['job_id']}.out").exists()
