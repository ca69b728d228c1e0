"""Sweeps on the real dev cluster: more points than MaxArraySize, hostile point values byte for
byte through Slurm and Apptainer, retry of failed points, cancel, an image converted once for a
sweep, and the CLI as the non-root test user."""

from __future__ import annotations

import base64
import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clusterenv import Cluster
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hpcjobs.api import ContainerJob
from hpcjobs.config import load_site
from hpcjobs.runner import RecordingRunner
from hpcjobs.runtimes.apptainer import UNCARRIABLE_ENV
from hpcjobs.schedulers import SlurmCli
from hpcjobs.schedulers.base import ArrayLimits
from hpcjobs.sweep.handle import Sweep
from tests.cluster import test_user_cli as _user_cli_tests
from tests.cluster.test_user_cli import UserCli
from tests.strategies import hostile_args, hostile_text

pytestmark = pytest.mark.cluster
user_cli = _user_cli_tests.user_cli  # the fixture: hpcjobs run as the test user

SITE_PATH = Path(__file__).resolve().parents[2] / "site-configs" / "dev-cluster.yaml"
SITE = load_site(SITE_PATH)
DUMP = ('for a in "$@"; do printf "ARG:%s\\n" "$(printf %s "$a" | base64 -w0)"; done; '
        'printf "ENV:%s\\n" "$(printf %s "$HOSTILE" | base64 -w0)"')  # fmt: skip
HOSTILE_POINTS: list[Any] = [
    {"args": ["a b", "it's", 'say "hi"', "$HOME", "`id`", "; echo pwned", "line1\nline2", "é✓", "", "\\", "*"],
     "env": {"HOSTILE": "$HOME `id` \"q\" 'q' \\ ; echo x\nend"}},
    {"args": ["--flag=$(touch /tmp/pwned)", "a\tb", "%s %n", "${IFS}"], "env": {"HOSTILE": "${PATH}"}},
    ["only args", "   "],
]  # fmt: skip



@pytest.fixture(autouse=True)
def _own_sweep_index(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process sweeps register in a throwaway index, not the tester's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


def decoded(out: str, prefix: str) -> list[str]:
    return [base64.b64decode(line[len(prefix):]).decode("utf-8", "surrogateescape")
            for line in out.splitlines() if line.startswith(prefix)]  # fmt: skip


def dump_job(image: str, **fields: Any) -> ContainerJob:
    return ContainerJob(image=image, entrypoint=["/bin/sh", "-c", DUMP, "dump"], command=["fixed arg"], **fields)


def scontrol_lines(job_id: str) -> list[str]:
    r = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=False)
    return [line for line in r.stdout.splitlines() if "JobId=" in line]


def test_cluster_limits_are_read_from_slurm(cluster: Cluster) -> None:
    limits = SlurmCli().array_limits()
    assert limits == ArrayLimits(1001, 30000)  # dev cluster: no slurmdbd, so no per-user limits visible
    listed = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout
    assert abs(SlurmCli().job_records() - len(listed.splitlines())) < 200  # others submit meanwhile


def test_sweep_submission_asks_slurm_once_per_array_plus_one_count(cluster: Cluster, job_dir: Path) -> None:
    """With the limits kept from an earlier sweep (same slurm.conf), a sweep costs one squeue (the
    job-record count) and one sbatch per array: no scontrol show config. (Where pyslurm is installed,
    choosing the backend first reads ``sinfo --version``: local, no controller, at most once.)"""
    job = ContainerJob(image=cluster.image("tiny_sif"), command=["true"], extra_sbatch=["--hold"])
    job.map([["first"]], SITE, cwd=job_dir).cancel()
    recorded = RecordingRunner()  # every call goes to the real Slurm
    sw = job.map([["a"], ["b c"]], SITE, runner=recorded, cwd=job_dir)
    try:
        probe = ("sinfo", "--version")
        assert recorded.argvs().count(probe) <= 1
        assert [a[0] for a in recorded.argvs() if a != probe] == ["squeue", "sbatch"]
        assert "ArrayTaskId=0-1" in scontrol_lines(sw.job_ids[0])[0]
    finally:
        sw.cancel()


def test_sweep_larger_than_max_array_size_held_released_and_cancelled(cluster: Cluster, job_dir: Path) -> None:
    """1003 points → two arrays (task ids < MaxArraySize); held so that only two points run. (Each
    task is a job record in the shared controller until MinJobAge: kept just above MaxArraySize.)"""
    job = ContainerJob(image=cluster.image("tiny_sif"), entrypoint=["/bin/sh", "-c", 'echo "point $1 SEED=$SEED"', "p"],
                       extra_sbatch=["--hold"], array_throttle=50)  # fmt: skip
    sw = job.map([{"args": [str(i)], "env": {"SEED": f"s{i}"}} for i in range(1003)], SITE, cwd=job_dir)
    try:
        assert len(sw.job_ids) == 2
        first, second = (scontrol_lines(j)[0] for j in sw.job_ids)
        assert "ArrayTaskId=0-1000%50" in first and "ArrayTaskThrottle=50" in first
        assert "ArrayTaskId=0-1%50" in second
        assert sw.status().counts == {"PENDING": 1003}
        for task in (f"{sw.job_ids[0]}_7", f"{sw.job_ids[1]}_1"):  # points 7 and 1002
            subprocess.run(["scontrol", "release", task], check=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = sw.status()
            if st.points[7].is_terminal and st.points[1002].is_terminal:
                break
            time.sleep(0.5)
        assert (st.points[1002].state.name, st.points[1002].exit_code) == ("COMPLETED", 0)
        assert sw.logs(1002) == "point 1002 SEED=s1002\n" and sw.logs(7) == "point 7 SEED=s7\n"
        assert st.points[1002].job_id == f"{sw.job_ids[1]}_1"
    finally:
        sw.cancel()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not sw.status().done:
        time.sleep(0.5)
    st = sw.status()
    assert st.counts == {"COMPLETED": 2, "CANCELLED": 1001}
    assert st.failed() == [p for p in range(1003) if p not in (7, 1002)]
    assert [line for line in scontrol_lines(sw.job_ids[1]) if "JobState=CANCELLED" in line]  # task 0, in Slurm


def test_hostile_points_arrive_byte_for_byte(cluster: Cluster, job_dir: Path) -> None:
    sw = dump_job(cluster.image("tiny_sif")).map(HOSTILE_POINTS, SITE, cwd=job_dir)
    st = sw.wait(poll_s=0.3, timeout_s=180, progress=False)
    assert st.ok, st.table()
    for i, raw in enumerate(HOSTILE_POINTS):
        args = raw["args"] if isinstance(raw, dict) else raw
        env = raw.get("env", {}).get("HOSTILE", "") if isinstance(raw, dict) else ""
        out = sw.logs(i)
        assert decoded(out, "ARG:") == ["fixed arg", *args], out
        assert decoded(out, "ENV:") == [env]
    assert not Path("/tmp/pwned").exists()


class _Capture:
    """A scheduler that keeps the script instead of submitting it (for running it with bash)."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def array_limits(self, qos: str | None = None) -> ArrayLimits:
        return ArrayLimits(1001, 30000)

    def job_records(self) -> int:
        return 0

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        self.scripts.append(script)
        return str(900000 + len(self.scripts))


CARRIABLE = hostile_text.filter(lambda v: not any(bad in v for bad in UNCARRIABLE_ENV))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.tuples(hostile_args, CARRIABLE), min_size=1, max_size=3), pick=st.integers(0, 2))
def test_property_sweep_task_script_with_real_apptainer(
    cluster: Cluster, tmp_path_factory: Any, points: list[Any], pick: int
) -> None:
    """The sweep's task script run by bash as task PICK, with the real apptainer: the point's
    arguments and environment arrive exactly (many examples, no Slurm)."""
    d = tmp_path_factory.mktemp("sweep")
    cap = _Capture()
    dump_job(cluster.image("tiny_sif")).map([{"args": a, "env": {"HOSTILE": v}} for a, v in points], SITE,
                                            scheduler=cap, cwd=d)  # type: ignore[arg-type]  # fmt: skip
    (script,) = cap.scripts
    task = pick % len(points)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "SLURM_ARRAY_TASK_ID": str(task)}  # fmt: skip
    proc = subprocess.run(["bash", "-c", script], capture_output=True, env=env, cwd=d)
    assert proc.returncode == 0, proc.stderr
    (log,) = (d / "hpcjobs-sweeps").glob(f"*/logs/point-{task}.out")
    out = log.read_bytes().decode("utf-8", "surrogateescape")
    assert decoded(out, "ARG:") == ["fixed arg", *points[task][0]]
    assert decoded(out, "ENV:") == [points[task][1]]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.tuples(hostile_args, hostile_text), min_size=2, max_size=3))
def test_property_sweep_through_slurm_and_apptainer(cluster: Cluster, job_dir: Path, points: list[Any]) -> None:
    assume(not any(bad in v for _, v in points for bad in UNCARRIABLE_ENV))
    sub = job_dir / f"p{time.monotonic_ns()}"
    sub.mkdir()
    sw = dump_job(cluster.image("tiny_sif")).map([{"args": a, "env": {"HOSTILE": v}} for a, v in points], SITE,
                                                 cwd=sub)  # fmt: skip
    st = sw.wait(poll_s=0.3, timeout_s=180, progress=False)
    assert st.ok, st.table()
    for i, (args, value) in enumerate(points):
        assert decoded(sw.logs(i), "ARG:") == ["fixed arg", *args]
        assert decoded(sw.logs(i), "ENV:") == [value]


def test_sweep_image_converted_once(cluster: Cluster, job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = job_dir / "cache"
    monkeypatch.setenv("HPCJOBS_IMAGE_CACHE", str(cache))
    job = ContainerJob(image=cluster.tiny_ref, command=["arg"])
    sw = job.map([[str(i)] for i in range(3)], SITE, cwd=job_dir)
    st = sw.wait(poll_s=0.3, timeout_s=180, progress=False)
    assert st.ok, st.table()
    sifs = [p for p in cache.rglob("*.sif")]
    assert len(sifs) == 1, sifs
    assert sw.record.image["path"] == str(sifs[0]) and sw.record.image["ref"] == cluster.tiny_ref
    assert str(sifs[0]) in (sw.directory / "array-0.sh").read_text()
    for i in range(3):  # the image's entrypoint kept, CMD replaced by the command and the point
        assert f"entry-argc: 2\nentry: arg\nentry: {i}\n" in sw.logs(i)


FLAKY = 'test "$1" != bad || test -e "$MARKER" || { echo "failing $1"; exit 3; }; echo "ok $1"'


def test_user_cli_sweep_retry_status_logs(cluster: Cluster, job_dir: Path, user_cli: UserCli) -> None:
    """As hpctest: submit a sweep from a job file (a grid), one point fails; retry it after fixing."""
    marker = job_dir / "fixed"
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\n"
        f"entrypoint: [/bin/sh, -c, '{FLAKY}', flaky]\n"
        f"env: {{MARKER: '{marker}'}}\n"
        "sweep:\n  grid:\n    args: {'': [good, bad, \"it's $fine\"]}\n"
    )
    r = user_cli("submit", "job.yaml", "--wait", "--json", "--poll-s", "0.3", cwd=job_dir)
    assert r.returncode == 1, r.stderr
    first = json.loads(r.stdout)
    sweep_id = first["sweep_id"]
    assert [p["state"] for p in first["points"]] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert first["points"][1]["exit_code"] == 3
    owner = scontrol_lines(first["job_ids"][0])
    assert owner and all(f"UserId={cluster.test_user}(" in line for line in owner)
    marker.write_text("")
    r = user_cli("sweep", "retry", sweep_id, "--json", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    (new_id,) = json.loads(r.stdout)["job_ids"]
    r = user_cli("sweep", "wait", sweep_id, "--poll-s", "0.3", cwd="/")  # found by id, from anywhere
    assert r.returncode == 0, r.stderr
    r = user_cli("sweep", "status", sweep_id, "--json", cwd="/")
    assert r.returncode == 0, r.stderr
    points = json.loads(r.stdout)["points"]
    assert [(p["state"], p["attempt"]) for p in points] == [("COMPLETED", 0), ("COMPLETED", 1), ("COMPLETED", 0)]
    assert points[1]["job_id"] == f"{new_id}_0" and points[1]["log"].endswith("/logs/point-1.retry1.out")
    r = user_cli("sweep", "logs", sweep_id, "1", cwd="/")
    assert r.returncode == 0 and r.stdout == "ok bad\n", r.stderr
    assert Path(points[1]["log"]).with_name("point-1.out").read_text() == "failing bad\n"
    r = user_cli("sweep", "logs", sweep_id, "2", cwd="/")
    assert r.stdout == "ok it's $fine\n"
    r = user_cli("sweep", "status", sweep_id, cwd="/")
    assert r.returncode == 0 and r.stdout.startswith(f"sweep {sweep_id}: 3/3 ended: 3 completed\n")
    assert "     1  COMPLETED        0" in r.stdout
    home = Path(os.path.expanduser(f"~{cluster.test_user}"))
    assert (home / ".cache" / "hpcjobs" / "sweeps" / f"{sweep_id}.json").is_file()
    root_view = Sweep.load(str(job_dir / "hpcjobs-sweeps" / sweep_id))  # by directory, as another user
    assert root_view.status().ok


def test_user_cli_refuses_a_sweep_beyond_max_job_count(cluster: Cluster, job_dir: Path, user_cli: UserCli) -> None:
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\nsweep:\n  grid:\n    args: {{'-a': {list(range(301))}, "
        f"'-b': {list(range(100))}}}\n"
    )
    r = user_cli("submit", "job.yaml", cwd=job_dir)
    assert r.returncode == 2 and r.stdout == ""
    assert "30100 points are more than the cluster's MaxJobCount = 30000" in r.stderr and r.stderr.count("\n") == 1
    assert not (job_dir / "hpcjobs-sweeps").exists()


def test_user_cli_sweep_cancel_and_list(cluster: Cluster, job_dir: Path, user_cli: UserCli) -> None:
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\nextra_sbatch: [--hold]\nsweep:\n  points: [[a], [b]]\n  dir: mine\n"
    )
    r = user_cli("submit", "job.yaml", "--json", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    sweep_id = json.loads(r.stdout)["sweep_id"]
    assert (job_dir / "mine" / "sweep.json").is_file()
    kept = Path(os.path.expanduser(f"~{cluster.test_user}")) / ".cache" / "hpcjobs" / "limits"
    # MaxArraySize/MaxJobCount kept for the next sweep, private (other values live in a folder beside it)
    limits_file = kept / f"{cluster.info['cluster_name']}.json"
    assert limits_file.stat().st_uid == pwd.getpwnam(cluster.test_user).pw_uid
    assert not limits_file.stat().st_mode & 0o022
    assert json.loads(limits_file.read_text())["max_job_count"] == SlurmCli().array_limits().max_job_count
    assert sweep_id in user_cli("sweep", "list", cwd=job_dir).stdout.split()
    r = user_cli("sweep", "cancel", sweep_id, cwd=job_dir)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    states: list[str] = []
    while time.monotonic() < deadline:
        r = user_cli("sweep", "status", sweep_id, "--json", cwd=job_dir)
        states = [p["state"] for p in json.loads(r.stdout)["points"]]
        if states == ["CANCELLED", "CANCELLED"]:
            break
        time.sleep(0.5)
    assert states == ["CANCELLED", "CANCELLED"]
    assert "JobState=CANCELLED" in scontrol_lines(json.loads(r.stdout)["job_ids"][0])[0]


@pytest.mark.parametrize("user", ["root", "hpctest"])
@pytest.mark.parametrize(("name", "message"), [
    ("new\nline", "the job directory '{d}' contains the control character '\\n', which Slurm's job records"),
    ("tab\there", "the job directory '{d}' contains the control character '\\t', which Slurm's job records"),
])  # fmt: skip
def test_sweep_from_a_job_directory_slurm_cannot_carry_is_refused(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, user: str, name: str, message: str
) -> None:
    """A single job's rule (tests/cluster/test_output_dirs_cluster.py) for a sweep's tasks: `hpcjobs
    submit` of a sweep: from a directory with a control character is refused before anything is
    written or submitted, even with its sweep directory elsewhere (sweep.dir, absolute)."""
    d = job_dir / name
    d.mkdir()
    d.chmod(0o777)
    elsewhere = job_dir / f"sweep-{user}"
    (d / "job.yaml").write_text(json.dumps({"image": cluster.image("tiny_sif"), "extra_sbatch": ["--hold"],
                                            "sweep": {"points": [["a"], ["b"]], "dir": str(elsewhere)}}))  # fmt: skip
    if user == "root":
        r = subprocess.run([sys.executable, "-m", "hpcjobs", "--site", str(SITE_PATH), "submit", "job.yaml"],
                           capture_output=True, text=True, cwd=d, timeout=300)  # fmt: skip
    else:
        r = user_cli("submit", "job.yaml", cwd=d)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message.format(d=str(d).replace("\n", "\\n").replace("\t", "\\t")) in r.stderr
    assert r.stderr.count("\n") == 1 and r.stdout == ""
    assert list(d.iterdir()) == [d / "job.yaml"] and not elsewhere.exists()
    workdirs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%Z"], capture_output=True, text=True, check=True)
    assert not [line for line in workdirs.stdout.splitlines() if line.startswith(str(job_dir))]  # nothing submitted


def test_sweep_with_percent_in_its_job_directory_runs_there(cluster: Cluster, job_dir: Path, user_cli: UserCli
                                                            ) -> None:  # fmt: skip
    """As for a single job with an absolute log, '%' in the job directory is harmless when the sweep's
    directory (its Slurm log's) is elsewhere: as hpctest, the tasks start in that directory."""
    d = job_dir / "p%j dir"
    d.mkdir()
    d.chmod(0o777)
    elsewhere = job_dir / "sweep"
    (d / "job.yaml").write_text(json.dumps({"image": cluster.image("tiny_sif"), "entrypoint": ["/bin/sh", "-c",
                                            "pwd"], "sweep": {"points": [[]], "dir": str(elsewhere)}}))  # fmt: skip
    r = user_cli("submit", "job.yaml", "--wait", "--json", "--poll-s", "0.3", cwd=d)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["points"][0]["state"] == "COMPLETED"
    assert (elsewhere / "logs" / "point-0.out").read_text() == f"{d}\n"


def test_user_cli_sweep_arrays_submitted_two_at_a_time(cluster: Cluster, job_dir: Path, user_cli: UserCli
                                                                  ) -> None:  # fmt: skip
    """As hpctest: 1,003 points → two arrays whose sbatch calls overlap (two in flight); each
    array's job id holds its own task range in Slurm, and a released task of each array runs its
    own point (held otherwise; each task is a record until MinJobAge: kept small)."""
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\nentrypoint: [/bin/sh, -c, 'echo \"point $1\"', p]\n"
        f"extra_sbatch: [--hold]\nsweep:\n  points: {json.dumps([[str(i)] for i in range(1003)])}\n"
    )
    r = user_cli("submit", "job.yaml", "--json", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    sweep_id, job_ids = out["sweep_id"], out["job_ids"]
    try:
        assert len(job_ids) == 2 and len(set(job_ids)) == 2
        lines = [scontrol_lines(j)[0] for j in job_ids]
        assert all(f"UserId={cluster.test_user}(" in line for line in lines)
        assert "ArrayTaskId=0-1000 " in lines[0] and "ArrayTaskId=0-1 " in lines[1]
        subprocess.run(["scontrol", "release", f"{job_ids[1]}_1", f"{job_ids[0]}_5"], check=True)  # points 1002, 5
        deadline = time.monotonic() + 120
        points: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            r = user_cli("sweep", "status", sweep_id, "--json", cwd=job_dir)
            points = json.loads(r.stdout)["points"]
            if points[1002]["state"] == "COMPLETED" and points[5]["state"] == "COMPLETED":
                break
            time.sleep(0.5)
        assert points[1002]["job_id"] == f"{job_ids[1]}_1" and points[5]["job_id"] == f"{job_ids[0]}_5"
        assert (points[1002]["state"], points[5]["state"]) == ("COMPLETED", "COMPLETED")
        assert user_cli("sweep", "logs", sweep_id, "1002", cwd=job_dir).stdout == "point 1002\n"
        assert user_cli("sweep", "logs", sweep_id, "5", cwd=job_dir).stdout == "point 5\n"
    finally:
        assert user_cli("sweep", "cancel", sweep_id, cwd=job_dir).returncode == 0
