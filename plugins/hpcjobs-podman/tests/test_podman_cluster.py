"""The Podman runtime for real: the dev cluster's Slurm and rootless Podman, jobs submitted with the
hpcjobs CLI as the unprivileged test user. Checked where it happens: the program's own output inside
the container, Slurm's record of the job, refusals before anything reaches Slurm."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # the core's tests package: its dev-cluster helpers
    sys.path.insert(0, str(REPO))
import tests.clusterenv as clusterenv  # noqa: E402
from hpcjobs.schedulers.slurm_cli import scontrol_fields  # noqa: E402
from tests.clusterenv import Cluster  # noqa: E402
from tests.usercli import UserCli, user_cli_fixture  # noqa: E402

cluster, job_dir = clusterenv.cluster, clusterenv.job_dir  # the core's dev-cluster fixtures

pytestmark = pytest.mark.cluster
SITE = str(REPO / "plugins" / "hpcjobs-podman" / "site-configs" / "dev-cluster-podman.yaml")
# each argument base64-encoded on its own line: any byte sequence compares exactly
ARGV_DUMP = 'for a in "$@"; do printf "ARG:%s\\n" "$(printf %s "$a" | base64 -w0)"; done'
HOSTILE = ["two words", "it's", 'say "hi"', "$HOME", "`id`", "; echo pwned", "a\nb", "*", "", "\\n", "ü €"]


@pytest.fixture(scope="module")
def cli(cluster: Cluster) -> Iterator[UserCli]:
    yield from user_cli_fixture(cluster.test_user)


def submit(cli: UserCli, job_dir: Path, body: str | dict[str, object], *extra: str) -> tuple[dict[str, object], str]:
    """Submit a job file (YAML text, or a dict written as JSON) as the test user, wait; (the --json
    result, the job's output)."""
    text = json.dumps({**body, "output": "slurm-%j.out"}) if isinstance(body, dict) else body + "output: slurm-%j.out\n"
    (job_dir / "job.yaml").write_text(text)
    r = cli("submit", "job.yaml", "--site", SITE, "--wait", "--json", "--poll-s", "0.3", *extra, cwd=job_dir)
    assert r.stdout, f"no job submitted (exit {r.returncode}): {r.stderr}"
    result = json.loads(r.stdout)
    out = job_dir / f"slurm-{result['job_id']}.out"
    return result, out.read_text(errors="replace") if out.exists() else ""


def scontrol(job_id: object) -> str:
    return subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True).stdout


def test_cpu_job_image_entrypoint_and_cmd_as_user(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    result, out = submit(cli, job_dir, f"image: {cluster.tiny_ref}\n")
    assert result["state"] == "COMPLETED", out
    assert "entry: default-cmd\n" in out  # ENTRYPOINT + CMD, from Podman's store, no SIF
    assert f"UserId={cluster.test_user}(" in scontrol(result["job_id"])


def test_command_replaces_cmd_keeps_entrypoint(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    result, out = submit(cli, job_dir, f"image: {cluster.tiny_ref}\ncommand: ['x y', '$HOME']\n")
    assert result["state"] == "COMPLETED", out
    assert "entry-argc: 2\nentry: x y\nentry: $HOME\n" in out


def test_entrypoint_replaces_entrypoint_and_cmd_own_uid(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    body = (f"image: {cluster.tiny_ref}\n"
            "entrypoint: [/bin/sh, -c, 'echo \"E $0 uid=$(id -u) var=$TINY_VAR pwd=$(pwd)\"']\ncommand: ['x y']\n")
    result, out = submit(cli, job_dir, body)
    assert result["state"] == "COMPLETED", out
    # the image's ENV and WorkingDir apply (Docker semantics); the user's own uid inside (--userns keep-id)
    assert out.strip().splitlines()[-1] == f"E x y uid={cluster['test_uid']} var=from-image pwd=/opt/work"
    assert "entry:" not in out


def test_exit_code_passes_through(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    result, _out = submit(cli, job_dir, f"image: {cluster.tiny_ref}\nentrypoint: [/bin/sh, -c, 'exit 3']\n")
    assert (result["state"], result["exit_code"]) == ("FAILED", 3)


def test_two_tasks_one_container_each(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    body = (f"image: {cluster.tiny_ref}\nntasks: 2\n"
            "entrypoint: [/bin/sh, -c, 'echo rank=$SLURM_PROCID of=$SLURM_NTASKS uid=$(id -u) host=$(hostname)']\n")
    result, out = submit(cli, job_dir, body)
    assert result["state"] == "COMPLETED", out
    assert "NumTasks=2" in scontrol(result["job_id"])
    lines = sorted(line for line in out.splitlines() if line.startswith("rank="))
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    # host network: the container's hostname is the node's
    assert lines == [f"rank={r} of=2 uid={cluster['test_uid']} host={host}" for r in (0, 1)], out


# One short container per task, writing LINES numbered lines to stdout and to stderr and exiting at
# once: the shape whose output went missing in CI under load with Podman's default log driver.
LINES = 4
SHORT_CONTAINERS = (f"for i in $(seq {LINES}); do echo \"out r=$SLURM_PROCID i=$i\"; "
                    'echo "err r=$SLURM_PROCID i=$i" >&2; done')  # fmt: skip


def test_many_short_containers_lose_no_line(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    """Regression test for lost output: 8 tasks, one short container each, every line of both streams
    checked (the job's one output file holds both), each stream of each rank in order; the script
    Slurm ran has `--log-driver passthrough`."""
    spec: dict[str, object] = {"image": cluster.tiny_ref, "ntasks": 8,
                               "entrypoint": ["/bin/sh", "-c", SHORT_CONTAINERS]}  # fmt: skip
    result, out = submit(cli, job_dir, spec)
    assert result["state"] == "COMPLETED", out
    lines = out.splitlines()
    for stream in ("out", "err"):
        for rank in range(8):
            mine = [ln for ln in lines if ln.startswith(f"{stream} r={rank} ")]
            assert mine == [f"{stream} r={rank} i={i}" for i in range(1, LINES + 1)], out
    script = subprocess.run(["scontrol", "write", "batch_script", str(result["job_id"]), "-"],
                            capture_output=True, text=True)  # fmt: skip
    assert script.returncode == 0, script.stderr
    assert " run --rm --log-driver passthrough " in script.stdout


def test_hostile_args_and_env_arrive_byte_for_byte(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    weird = job_dir / "dir with 'quote' and $x"
    weird.mkdir()
    (weird / "f").write_text("bound\n")
    weird.chmod(0o755)
    env_value = "it's \"$HOME\" `id`; echo x\nline2 \\ end"
    spec: dict[str, object] = {
        "image": cluster.tiny_ref,
        "entrypoint": ["/bin/sh", "-c", ARGV_DUMP + '; printf "ENV:%s\\n" "$(printf %s "$HOSTILE" | base64 -w0)";'
                       " cat /weird/f", "dump", *HOSTILE],
        "env": {"HOSTILE": env_value},
        "binds": [{"src": str(weird), "dst": "/weird", "mode": "ro"}],
    }
    result, out = submit(cli, job_dir, spec)
    assert result["state"] == "COMPLETED", out
    args = [base64.b64decode(ln[4:]).decode() for ln in out.splitlines() if ln.startswith("ARG:")]
    envs = [base64.b64decode(ln[4:]).decode() for ln in out.splitlines() if ln.startswith("ENV:")]
    assert args == HOSTILE
    assert envs == [env_value]
    assert "bound\n" in out


@pytest.mark.parametrize("how", ["bind", "-v=/etc/munge:/m", "--volume=/etc/munge:/m",
                                 "--mount=type=bind,src=/etc/munge,dst=/m"])
def test_denied_bind_refused_before_submission(cluster: Cluster, job_dir: Path, cli: UserCli, how: str) -> None:
    body = f"image: {cluster.tiny_ref}\n" + (
        "binds: ['/etc/munge:/m']\n" if how == "bind" else f"runtime_flags: [{json.dumps(how)}]\n"
    )
    name = f"denied-{uuid.uuid4().hex[:12]}"
    (job_dir / "job.yaml").write_text(body + f"name: {name}\n")
    r = cli("submit", "job.yaml", "--site", SITE, cwd=job_dir)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.startswith("hpcjobs: error: ")
    assert ("/etc/munge" in r.stderr) if how == "bind" else (f"runtime flag {how!r} mounts a host path" in r.stderr)
    # nothing reached Slurm: no job of that name in any state (finished ones stay listed for MinJobAge)
    seen = subprocess.run(["squeue", "--states=all", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True)
    assert seen.returncode == 0 and seen.stdout.strip() == ""


def test_gpu_job_gets_devices_and_visible_devices(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    body = (f"image: {cluster.tiny_ref}\npartition: gpu\ngpus: 1\n"
            "entrypoint: [/bin/sh, -c, 'ls /dev/fakegpu0 /dev/fakegpu1 && echo CVD=$CUDA_VISIBLE_DEVICES']\n")
    result, out = submit(cli, job_dir, body)
    assert result["state"] == "COMPLETED", out
    assert clusterenv.tres_spelling(scontrol_fields(scontrol(result["job_id"])).get("TresPerJob")) == "gres:gpu:1"
    assert "/dev/fakegpu0\n/dev/fakegpu1\nCVD=" in out
    assert out.strip().splitlines()[-1] in ("CVD=0", "CVD=1")


def test_render_explains_podman_words(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    (job_dir / "job.yaml").write_text(f"image: {cluster.tiny_ref}\ncommand: [a]\n")
    r = cli("render", "job.yaml", "--site", SITE, "--explain", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    assert "--network host --pid host --userns keep-id" in r.stdout
    assert ".sif" not in r.stdout  # never through the SIF cache


def test_hpcjobs_plugins_lists_the_plugins_for_the_user(cluster: Cluster, job_dir: Path, cli: UserCli) -> None:
    r = cli("plugins", "--json", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    rows = {p["name"]: p for p in json.loads(r.stdout)["plugins"]}
    assert rows["podman"]["distribution"] == "hpcjobs-podman" and rows["podman"]["error"] is None
    assert rows["podman"]["provides"]["runtimes"] == ["podman", "docker"]
    assert rows["profile"]["provides"]["wrappers"] == ["nsys", "perf-stat", "strace"]
