"""The warm start on the real cluster, as root and as the test user: a CPU job and a GPU job submitted
through the user's warm server are the jobs a fresh process submits — what Slurm records
(`scontrol show job`) and what the program prints inside the container, hostile arguments, the
caller's umask, environment and working directory included — and `render --explain` says so.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clusterenv import Cluster, job_output, wait_job

from tests.usercli import user_cli_fixture

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["a b", "it's", 'say "hi"', "$HOME", "; echo pwned", "tab\there", "back\\slash", "*"]
# the fields of `scontrol show job` that a submission decides (ids, times and states left out)
RECORDED = ("UserId", "GroupId", "Partition", "TRES", "TresPerJob", "TresPerNode", "NumTasks", "CPUs/Task",
            "TimeLimit", "WorkDir", "StdOut", "StdErr", "MinMemoryNode", "Features", "JobName")  # fmt: skip
Cli = Callable[..., subprocess.CompletedProcess[str]]


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job`'s fields; a path (its own line) whole, spaces and all."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    fields: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, rest = line.strip().partition("=")
        if sep and name in ("WorkDir", "StdOut", "StdErr", "StdIn", "Command"):
            fields[name] = rest
        else:
            fields.update(re.findall(r"(\S+?)=(\S*)", line))
    return fields


@pytest.fixture(params=["root", "test-user"])
def served(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[tuple[str, Cli]]:
    """(user, run hpcjobs as that user with the warm start on, in a socket folder of theirs)."""
    user = "root" if request.param == "root" else cluster.test_user
    pw = pwd.getpwnam(user)
    folder = Path(tempfile.mkdtemp(prefix="hw-", dir="/tmp"))
    os.chown(folder, pw.pw_uid, pw.pw_gid)
    os.chmod(folder, 0o700)
    warm = {"HPCJOBS_WARM": "1", "HPCJOBS_WARM_DIR": str(folder), "HPCJOBS_WARM_IDLE_S": "120",
            "HPCJOBS_SITE": str(ROOT / "site-configs" / "dev-cluster.yaml")}  # fmt: skip
    if os.access(ROOT / "site-configs" / "dev-cluster.yaml", os.R_OK) and user != "root":
        site = folder.parent / f"{folder.name}-site.yaml"  # the test user may not read the clone
        shutil.copy2(ROOT / "site-configs" / "dev-cluster.yaml", site)
        os.chmod(site, 0o644)
        warm["HPCJOBS_SITE"] = str(site)
    gen = user_cli_fixture(user)
    user_run = next(gen)

    def run(
        *args: str, cwd: Path, env: dict[str, str] | None = None, on: bool = True, umask: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full = {**warm, **(env or {}), "HPCJOBS_WARM": "1" if on else "0"}
        return user_run(*args, cwd=cwd, extra_env=full, umask=umask)

    try:
        yield user, run
    finally:
        run("warm", "stop", cwd=Path("/tmp"))
        deadline = time.monotonic() + 30
        while list(folder.glob("*.sock")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list(folder.glob("*.sock")), "the warm server did not stop"
        shutil.rmtree(folder, ignore_errors=True)
        Path(f"{folder}-site.yaml").unlink(missing_ok=True)
        next(gen, None)


def served_count(run: Cli) -> int:
    r = run("warm", "status", "--json", cwd=Path("/tmp"))
    assert r.returncode == 0, r.stderr
    return sum(int(row["served"]) for row in json.loads(r.stdout))


def wait_up(run: Cli) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        r = run("warm", "status", "--json", cwd=Path("/tmp"))
        if r.returncode == 0 and json.loads(r.stdout):
            return
        time.sleep(0.2)
    pytest.fail("no warm server came up")


def test_served_cpu_and_gpu_jobs_are_the_fresh_ones(cluster: Cluster, job_dir: Path, served: tuple[str, Cli]) -> None:
    user, run = served
    work = job_dir / "a dir; with 'quotes'"
    work.mkdir()
    os.chmod(work, 0o777)
    probe = ('printf "[%s]\\n" "$@"; '
             "echo umask=$(umask) mark=${HPCJOBS_TEST_MARK:-unset} pwd=$PWD cvd=${CUDA_VISIBLE_DEVICES:-none}")
    for kind, gpus in (("cpu", 0), ("gpu", 1)):
        (work / f"{kind}.yaml").write_text(
            f"image: {cluster.image('tiny_sif')}\nname: warm-{kind}\ngpus: {gpus}\n"
            f"entrypoint: [/bin/sh, -c, {json.dumps(probe)}, sh]\ncommand: {json.dumps(HOSTILE)}\n"
        )
    # the first call runs in the client and starts the server
    assert run("render", "cpu.yaml", cwd=work).returncode == 0
    wait_up(run)
    before = served_count(run)

    jobs: dict[tuple[str, bool], str] = {}
    for kind in ("cpu", "gpu"):
        for on in (False, True):
            mark = uuid.uuid4().hex
            # SBATCH_PARTITION in the login environment: hpcjobs runs sbatch without it, both ways
            env = {"HPCJOBS_TEST_MARK": mark, "SBATCH_PARTITION": "gpu" if kind == "cpu" else "cpu"}
            explain = run("render", "--explain", f"{kind}.yaml", cwd=work, env=env, on=on)
            assert explain.returncode == 0, explain.stderr
            r = run("submit", f"{kind}.yaml", cwd=work, env=env, on=on)
            assert r.returncode == 0, r.stderr
            job_id = r.stdout.strip()
            jobs[(kind, on)] = job_id
            assert re.search(rf"^#SBATCH --partition={kind}\b", explain.stdout, re.M), explain.stdout
    assert served_count(run) == before + 4  # each served variant: one render, one submit

    for kind in ("cpu", "gpu"):
        cold, warm = scontrol_job(jobs[(kind, False)]), scontrol_job(jobs[(kind, True)])
        cold_id, warm_id = jobs[(kind, False)], jobs[(kind, True)]
        for field in RECORDED:
            assert warm.get(field, "").replace(warm_id, "ID") == cold.get(field, "").replace(cold_id, "ID"), field
        # the duplicate-submit token: fresh in each call (a forked child draws its own random numbers)
        assert cold["Comment"].startswith("hpcjobs:") and warm["Comment"].startswith("hpcjobs:")
        assert cold["Comment"] != warm["Comment"]
        assert cold["WorkDir"] == str(work) and cold["UserId"].startswith(f"{user}(")
        assert cold["Partition"] == kind
        outs = []
        for on in (False, True):
            job_id = jobs[(kind, on)]
            assert wait_job(job_id) == ("COMPLETED", 0)
            text = job_output(work, job_id, f"hpcjobs-warm-{kind}-{{id}}.out")
            assert "".join(f"[{a}]\n" for a in HOSTILE) in text, text
            assert f"pwd={work}" in text
            outs.append(text)
        cold_mark = re.search(r"mark=(\w+)", outs[0])
        warm_mark = re.search(r"mark=(\w+)", outs[1])
        assert cold_mark and warm_mark and cold_mark.group(1) != "unset" and warm_mark.group(1) != "unset"
        assert cold_mark.group(1) != warm_mark.group(1)  # each job got its own call's environment
        cvd = re.search(r"cvd=(\S+)", outs[1])
        assert cvd and (cvd.group(1) == "none") == (kind == "cpu")


def test_the_callers_umask_reaches_the_job(cluster: Cluster, job_dir: Path, served: tuple[str, Cli]) -> None:
    """The server's umask is its starter's; each served call takes its caller's (Slurm's SLURM_UMASK)."""
    _user, run = served
    (job_dir / "job.yaml").write_text(f"image: {cluster.image('tiny_sif')}\nname: warm-umask\n"
                                      "entrypoint: [/bin/sh, -c, 'echo umask=$(umask)']\n")  # fmt: skip
    assert run("render", "job.yaml", cwd=job_dir).returncode == 0
    wait_up(run)
    got = []
    for mask in ("0077", "0002"):
        r = run("submit", "job.yaml", cwd=job_dir, umask=mask)
        assert r.returncode == 0, r.stderr
        job_id = r.stdout.strip()
        assert wait_job(job_id) == ("COMPLETED", 0)
        got.append(job_output(job_dir, job_id, "hpcjobs-warm-umask-{id}.out"))
    assert "umask=0077" in got[0] and "umask=0002" in got[1], got
