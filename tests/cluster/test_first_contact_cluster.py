"""First contact on the real cluster: no site config anywhere (no --site, no $HPCJOBS_SITE, a fresh
HOME without ~/.config/hpcjobs, no /etc/hpcjobs/site.yaml), as root and as the test user. hpcjobs
discovers the cluster, caches the profile in the user's ~/.cache, says so once, and runs a CPU job
and a GPU job where Slurm and the program's own output say they ran.

The Slurm configuration of the shared host cluster is never changed: a changed configuration is
a copy of /etc/slurm with one more line, named by $SLURM_CONF (the client commands read it).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clusterenv import Cluster, as_user, job_output, wait_job

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
NOTE = "no site config is published here"
RUNTIME_PACKAGES = ("pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
                    "yaml", "_yaml", "click", "pluggy", "structlog", "spython")  # fmt: skip
Cli = Callable[..., subprocess.CompletedProcess[str]]


def _python_for(user: str, env: dict[str, str]) -> tuple[str, str | None, str | None]:
    """(interpreter, PYTHONPATH, folder to remove): this venv when USER can run it, else a readable copy."""
    probe = as_user(["env", "-i", *[f"{k}={v}" for k, v in env.items()], sys.executable, "-c", "import hpcjobs"], user)
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return sys.executable, None, None
    tmp = tempfile.mkdtemp(prefix="hpcjobs-user-python-", dir="/tmp")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.split("-")[0].split(".")[0] in RUNTIME_PACKAGES:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, Path(tmp) / entry.name)
    shutil.copytree(ROOT / "hpcjobs", Path(tmp) / "hpcjobs")
    subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
    return os.path.realpath(sys._base_executable), tmp, tmp  # type: ignore[attr-defined]


@pytest.fixture(params=["root", "test-user"])
def fresh(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[tuple[str, Path, Cli]]:
    """(user, a fresh HOME of that user, run hpcjobs as that user there with nothing else set)."""
    user = "root" if request.param == "root" else cluster.test_user
    if os.geteuid() != 0:
        pytest.fail("the first-contact tests run as root (they also run as the test user through runuser)")
    assert not Path("/etc/hpcjobs/site.yaml").exists(), "a system site config is published on this host"
    home = Path(tempfile.mkdtemp(prefix="hpcjobs-fresh-home-", dir="/tmp"))
    pw = pwd.getpwnam(user)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    env = {"HOME": str(home), "USER": user, "LOGNAME": user, "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
           "HPCJOBS_WARM": os.environ.get("HPCJOBS_WARM", "0")}  # fmt: skip
    python, pythonpath, cleanup = _python_for(user, env)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath

    def run(*args: str, cwd: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = {**env, **(extra or {})}
        argv = as_user(["env", "-i", *[f"{k}={v}" for k, v in full.items()], python, "-m", "hpcjobs", *args], user)
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)

    try:
        yield user, home, run
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)


def scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def cached_file(home: Path) -> Path:
    return home / ".cache" / "hpcjobs" / "discovered" / "hpcjobs-dev.yaml"


def test_no_site_config_cpu_and_gpu_jobs(cluster: Cluster, job_dir: Path, fresh: tuple[str, Path, Cli]) -> None:
    user, home, run = fresh
    probe = "echo user=$(id -un) cvd=${CUDA_VISIBLE_DEVICES:-none}"
    (job_dir / "cpu.yaml").write_text(f"image: {cluster.image('tiny_sif')}\nname: fc-cpu\n"
                                      f"entrypoint: [/bin/sh, -c, '{probe}']\n")
    (job_dir / "gpu.yaml").write_text(f"image: {cluster.image('tiny_sif')}\nname: fc-gpu\ngpus: 1\n"
                                      f"entrypoint: [/bin/sh, -c, '{probe}']\n")
    cache = cached_file(home)

    r = run("render", "--explain", "gpu.yaml", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(NOTE) == 1 and str(cache) in r.stderr  # said once, with the file
    assert f"# site config: discovered from the cluster hpcjobs-dev, cached in {cache}\n" in r.stdout
    assert "#SBATCH --partition=gpu" in r.stdout and " --nv " in r.stdout
    st = cache.stat()
    assert st.st_uid == pwd.getpwnam(user).pw_uid and cache.parent.stat().st_mode & 0o077 == 0

    r = run("submit", "cpu.yaml", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    assert NOTE not in r.stderr  # the cached profile is reused quietly
    cpu_id = r.stdout.strip()
    r = run("submit", "gpu.yaml", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    gpu_id = r.stdout.strip()
    cpu_job, gpu_job = scontrol_job(cpu_id), scontrol_job(gpu_id)
    assert cpu_job["Partition"] == "cpu" and "gpu" not in cpu_job.get("TresPerJob", "") + cpu_job.get("TRES", "")
    assert gpu_job["Partition"] == "gpu" and "gpu:1" in gpu_job.get("TresPerJob", ""), gpu_job
    assert cpu_job["UserId"].startswith(f"{user}(") and gpu_job["UserId"].startswith(f"{user}(")
    assert wait_job(cpu_id) == ("COMPLETED", 0) and wait_job(gpu_id) == ("COMPLETED", 0)
    assert f"user={user} cvd=none" in job_output(job_dir, cpu_id, "hpcjobs-fc-cpu-{id}.out")
    gpu_out = job_output(job_dir, gpu_id, "hpcjobs-fc-gpu-{id}.out")
    assert f"user={user} cvd=0" in gpu_out or f"user={user} cvd=1" in gpu_out  # either GPU: the node is shared
    assert cache.stat().st_mtime_ns == st.st_mtime_ns  # not rewritten by the later calls

    r = run("site", "show", "--json", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["discovered"] is True and shown["file"] == str(cache)
    assert all(s["value"] in ([], False) for s in shown["site_wide"] if s["key"].startswith("policy."))


def test_cache_reused_then_rebuilt_when_the_key_does_not_match(
    cluster: Cluster, job_dir: Path, fresh: tuple[str, Path, Cli]
) -> None:
    _user, home, run = fresh
    cache = cached_file(home)
    r = run("site", "show", cwd=job_dir)
    assert r.returncode == 0 and r.stderr.count(NOTE) == 1, r.stderr
    text, mtime = cache.read_text(), cache.stat().st_mtime_ns
    key_line = text.splitlines()[0]
    assert key_line.startswith("# hpcjobs-discovery-key: ")

    r = run("site", "show", cwd=job_dir)
    assert r.returncode == 0 and NOTE not in r.stderr  # reused
    assert cache.stat().st_mtime_ns == mtime

    # a cached key that does not match (as after a Slurm reconfiguration): discovered again
    cache.write_text(text.replace(key_line, "# hpcjobs-discovery-key: " + "0" * 64))
    r = run("site", "show", cwd=job_dir)
    assert r.returncode == 0 and r.stderr.count(NOTE) == 1, r.stderr
    assert cache.read_text().splitlines()[0] == key_line

    # a changed Slurm configuration: a copy of /etc/slurm with one more line, through $SLURM_CONF
    conf_dir = Path(tempfile.mkdtemp(prefix="hpcjobs-slurm-conf-", dir="/tmp"))
    try:
        shutil.copytree("/etc/slurm", conf_dir / "slurm")
        with open(conf_dir / "slurm" / "slurm.conf", "a") as fh:
            fh.write("# an admin's edit\n")
        subprocess.run(["chmod", "-R", "a+rX", str(conf_dir)], check=True)
        changed = {"SLURM_CONF": str(conf_dir / "slurm" / "slurm.conf")}
        r = run("site", "show", cwd=job_dir, extra=changed)
        assert r.returncode == 0 and r.stderr.count(NOTE) == 1, r.stderr
        new_key = cache.read_text().splitlines()[0]
        assert new_key.startswith("# hpcjobs-discovery-key: ") and new_key != key_line
        r = run("site", "show", cwd=job_dir, extra=changed)
        assert r.returncode == 0 and NOTE not in r.stderr
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)


def test_a_published_site_config_wins(cluster: Cluster, job_dir: Path, fresh: tuple[str, Path, Cli]) -> None:
    user, home, run = fresh
    config = home / ".config" / "hpcjobs"
    config.mkdir(parents=True)
    shutil.copy2(ROOT / "site-configs" / "dev-cluster.yaml", config / "site.yaml")
    subprocess.run(["chown", "-R", f"{user}:", str(home / ".config")], check=True)
    r = run("site", "show", "--json", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["discovered"] is False and shown["file"] == str(config / "site.yaml")
    assert NOTE not in r.stderr and not cached_file(home).exists()
