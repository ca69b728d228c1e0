"""hpcjobs itself run by an ordinary user (hpctest): the site config from ~/.config, the user's own
image cache, jobs submitted as that user, refusals before submission.

The project's venv may live where the test user can't read it (a clone under /root); then the
packages it needs are copied to a directory the user can read, run by the same base interpreter.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clusterenv import Cluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
UserCli = Callable[..., subprocess.CompletedProcess[str]]
# What hpcjobs needs at run time (dev tools such as mypy stay behind).
RUNTIME_PACKAGES = ("pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
                    "yaml", "_yaml", "click", "pluggy", "structlog", "spython", "pyslurm")  # fmt: skip


def _runs_as(user: str, argv: list[str], env: dict[str, str]) -> bool:
    r = subprocess.run(["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv],
                       capture_output=True, text=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def user_cli(cluster: Cluster) -> Iterator[UserCli]:
    user = cluster.test_user
    home = pwd.getpwnam(user).pw_dir
    base_env = {"HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
                "PATH": "/usr/local/bin:/usr/bin:/bin"}
    python, extra_path, tmp = sys.executable, "", None
    if not _runs_as(user, [python, "-c", "import hpcjobs"], base_env):
        tmp = tempfile.mkdtemp(prefix="hpcjobs-user-python-", dir="/tmp")
        site_packages = Path(sysconfig.get_paths()["purelib"])
        for entry in site_packages.iterdir():
            if entry.name.split("-")[0].split(".")[0] in RUNTIME_PACKAGES:
                dest = Path(tmp) / entry.name
                (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, dest)
        shutil.copytree(ROOT / "hpcjobs", Path(tmp) / "hpcjobs")
        subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
        python, extra_path = os.path.realpath(sys._base_executable), tmp  # type: ignore[attr-defined]
        if not _runs_as(user, [python, "-c", "import hpcjobs"], {**base_env, "PYTHONPATH": extra_path}):
            pytest.fail(f"{user} cannot run {python} with hpcjobs from {tmp}: is the interpreter under /root?")
    config = Path(home) / ".config" / "hpcjobs"
    config.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "site-configs" / "dev-cluster.yaml", config / "site.yaml")
    subprocess.run(["chown", "-R", f"{user}:", str(Path(home) / ".config")], check=True)

    def run(
        *args: str, cwd: Path, pythonpath: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # env: more variables for the user's login environment (SBATCH_PARTITION, APPTAINER_BIND …)
        path = ":".join(p for p in (pythonpath, extra_path) if p)
        env = {**base_env, **(env or {}), **({"PYTHONPATH": path} if path else {})}
        if "HPCJOBS_SCHEDULER" in os.environ and "HPCJOBS_SCHEDULER" not in env:  # the backend fixture's
            env["HPCJOBS_SCHEDULER"] = os.environ["HPCJOBS_SCHEDULER"]
        env.setdefault("HPCJOBS_WARM", os.environ.get("HPCJOBS_WARM", "0"))  # the suite's choice (conftest.py)
        argv = ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                python, "-m", "hpcjobs", *args]
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)

    yield run
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def test_user_submits_registry_image_through_own_cache(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, backend: str
) -> None:
    (job_dir / "job.yaml").write_text(f"image: {cluster.tiny_ref}\ncommand: ['as user', '$HOME']\n")
    r = user_cli("submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["state"] == "COMPLETED"
    out = (job_dir / f"hpcjobs-tiny-{result['job_id']}.out").read_text()
    assert "entry: as user\nentry: $HOME\n" in out
    owner = subprocess.run(["scontrol", "show", "job", "-o", result["job_id"]], capture_output=True, text=True)
    assert f"UserId={cluster.test_user}(" in owner.stdout
    listed = user_cli("images", "list", "--json", cwd=job_dir)
    assert listed.returncode == 0, listed.stderr
    paths = [e["path"] for e in json.loads(listed.stdout)]
    home = pwd.getpwnam(cluster.test_user).pw_dir
    assert any(p.startswith(f"{home}/.cache/hpcjobs/images/") for p in paths), paths


def test_user_array_and_entrypoint_cases(cluster: Cluster, job_dir: Path, user_cli: UserCli, backend: str) -> None:
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\narray: '0-1'\n"
        "entrypoint: [/bin/sh, -c, 'echo task=$SLURM_ARRAY_TASK_ID user=$(id -un)']\n"
    )
    r = user_cli("submit", "job.yaml", "--wait", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    outs = sorted(p.read_text().strip() for p in job_dir.glob("hpcjobs-tiny-*_*.out"))
    assert outs == [f"task=0 user={cluster.test_user}", f"task=1 user={cluster.test_user}"]
    (job_dir / "plain.yaml").write_text(f"image: {cluster.image('tiny_sif')}\nname: plain\n")
    r = user_cli("submit", "plain.yaml", "--wait", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[0]
    assert "entry: default-cmd" in (job_dir / f"hpcjobs-plain-{job_id}.out").read_text()


def test_user_limit_refused_before_submission(cluster: Cluster, job_dir: Path, user_cli: UserCli) -> None:
    (job_dir / "job.yaml").write_text(f"image: {cluster.image('tiny_sif')}\ngpus: 3\n")
    r = user_cli("submit", "job.yaml", cwd=job_dir)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("hpcjobs: error: ") and "max_gpus_per_node" in r.stderr and r.stderr.count("\n") == 1


def test_user_submit_unchanged_by_an_installed_pyslurm(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, backend: str
) -> None:
    """The script pyslurm's own submission broke (issue 9: quoted name with '#', --partition,
    --time=5, %x in the output path), submitted by the test user with real pyslurm importable and
    the automatic choice: sbatch submits it, pyslurm answers wait; Slurm and the node agree."""
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\nname: 'a b #c'\ntime_min: 5\ngpus: 1\noutput: '%x-%j.out'\n"
        "entrypoint: [/bin/sh, -c, 'echo name=$SLURM_JOB_NAME cvd=$CUDA_VISIBLE_DEVICES']\n"
    )
    r = user_cli("-v", "submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    assert f"backend='{backend}'" in r.stderr and "submit='sbatch'" in r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    assert "JobName=a b #c " in shown and "TimeLimit=00:05:00" in shown and "Partition=gpu" in shown
    assert f"StdOut={job_dir}/a b #c-{job_id}.out" in shown
    written = (job_dir / f"a b #c-{job_id}.out").read_text()
    assert written in ("name=a b #c cvd=0\n", "name=a b #c cvd=1\n")  # one of the node's two GPUs
    logs = user_cli("logs", job_id, cwd=job_dir)
    assert logs.returncode == 0 and logs.stdout == written, logs.stderr


def test_user_plugins_broken_one_breaks_nothing_and_wrappers_run(
    cluster: Cluster, job_dir: Path, user_cli: UserCli
) -> None:
    """Third-party plugin distributions installed for the user (tests/plugin_dists on PYTHONPATH):
    one that fails to import, one for plugin API 2.0, one with task wrappers and a site hook."""
    dists = Path(tempfile.mkdtemp(prefix="hpcjobs-user-plugins-", dir="/tmp"))
    try:
        shutil.copytree(ROOT / "tests" / "plugin_dists", dists, dirs_exist_ok=True)
        subprocess.run(["chmod", "-R", "a+rX", str(dists)], check=True)
        listed = user_cli("plugins", "--json", cwd=job_dir, pythonpath=str(dists))
        assert listed.returncode == 0, listed.stderr
        rows = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
        assert rows["broken"]["error"].startswith("ImportError: ") and rows["broken"]["version"] == "0.1"
        assert rows["future"]["error"] == "written for plugin API 2.0, this hpcjobs provides 1.3"
        assert rows["test-wrappers"]["provides"]["wrappers"] == ["test-outside", "test-inside"]
        assert rows["apptainer"]["error"] is None
        # a job that needs none of the failed plugins runs, wrapped outside and inside the container
        (job_dir / "job.yaml").write_text(
            f"image: {cluster.image('tiny_sif')}\nname: wrapped\nntasks: 2\nmpi: none\n"
            "wrappers: [test-outside, test-inside]\n"
            "entrypoint: [/bin/sh, -c, 'echo rank=$SLURM_PROCID wrapped=$HPCJOBS_WRAPPED arg=$0', 'a; b']\n"
        )
        r = user_cli("submit", "job.yaml", "--wait", "--poll-s", "0.2", cwd=job_dir, pythonpath=str(dists))
        assert r.returncode == 0, r.stderr
        job_id = r.stdout.strip().splitlines()[0]
        out = sorted((job_dir / f"hpcjobs-wrapped-{job_id}.out").read_text().splitlines())
        assert out == ["inside-wrapper", "inside-wrapper", "rank=0 wrapped=outside arg=a; b",
                       "rank=1 wrapped=outside arg=a; b"]  # fmt: skip
        # asking for what the broken plugin would have provided: refused before submission, named
        (job_dir / "bad.yaml").write_text(f"image: {cluster.image('tiny_sif')}\nwrappers: [broken]\n")
        r = user_cli("submit", "bad.yaml", cwd=job_dir, pythonpath=str(dists))
        assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1
        assert "plugin 'broken' (hpcjobs-test-broken 0.1) failed: ImportError" in r.stderr
    finally:
        shutil.rmtree(dists, ignore_errors=True)
