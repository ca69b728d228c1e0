"""Helpers for tests that need the real dev cluster (``scripts/dev-cluster up``).

Usage in a test module (its package's conftest.py re-exports the fixtures, see
``tests/cluster/conftest.py``)::

    from tests.clusterenv import Cluster, job_output, sbatch_script, wait_job

    pytestmark = pytest.mark.cluster

    def test_something(cluster: Cluster, job_dir: Path) -> None:
        job = sbatch_script("#!/bin/sh\\necho hi\\n", cwd=job_dir)
        assert wait_job(job) == ("COMPLETED", 0)
        assert job_output(job_dir, job) == "hi\\n"

The ``cluster`` fixture (and :func:`require_cluster`) loads ``/var/lib/hpcjobs-dev/cluster.json``
and checks that ``sinfo`` and ``apptainer`` work. When the cluster is missing the test is
skipped, unless ``HPCJOBS_REQUIRE_CLUSTER=1`` is set (CI): then it fails.

This module must not import ``hpcjobs``: it tests the cluster, not the package.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CLUSTER_JSON = Path(os.environ.get("HPCJOBS_CLUSTER_JSON", "/var/lib/hpcjobs-dev/cluster.json"))
REQUIRE_ENV = "HPCJOBS_REQUIRE_CLUSTER"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
})


@dataclass(frozen=True)
class Cluster:
    """What ``scripts/dev-cluster up`` wrote to cluster.json."""

    info: Mapping[str, Any]
    path: Path = CLUSTER_JSON
    _images: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_images", dict(self.info.get("images", {})))

    def image(self, key: str) -> str:
        """Path of a test image: tiny_sif, tiny_oci_dir, tiny_oci_archive, tiny_docker_archive, mpi_sif."""
        return self._images[key]

    @property
    def images(self) -> Mapping[str, str]:
        return self._images

    @property
    def registry(self) -> str:
        return str(self.info["registry"])

    @property
    def tiny_ref(self) -> str:
        return str(self.info["tiny_ref"])

    @property
    def test_user(self) -> str:
        return str(self.info["test_user"])

    @property
    def partitions(self) -> list[str]:
        return list(self.info["partitions"])

    @property
    def gpus(self) -> int:
        return int(self.info["gpus"])

    def __getitem__(self, key: str) -> Any:
        return self.info[key]


def _run(argv: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                          cwd="/", stdin=subprocess.DEVNULL)


def cluster_problem() -> str | None:
    """Why the dev cluster is not usable, or None when it is."""
    if not CLUSTER_JSON.is_file():
        return f"{CLUSTER_JSON} not found (run: sudo scripts/dev-cluster up)"
    try:
        info = json.loads(CLUSTER_JSON.read_text())
    except (OSError, ValueError) as exc:
        return f"cannot read {CLUSTER_JSON}: {exc}"
    for tool in ("sinfo", "sbatch", "scontrol", "apptainer"):
        if shutil.which(tool, path=CLEAN_PATH) is None:
            return f"{tool} is not installed (run: sudo scripts/dev-cluster up)"
    try:
        r = _run(["sinfo", "-h", "-o", "%P %a"], timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering (run: sudo scripts/dev-cluster up)"
    if r.returncode != 0 or not r.stdout.strip():
        return f"sinfo failed (exit {r.returncode}): {r.stderr.strip()} (run: sudo scripts/dev-cluster up)"
    try:
        r = _run(["apptainer", "version"])
    except subprocess.TimeoutExpired:
        return "apptainer version timed out"
    if r.returncode != 0:
        return f"apptainer does not run (exit {r.returncode}): {r.stderr.strip()}"
    missing = [p for p in info.get("images", {}).values() if not os.path.exists(p)]
    if missing:
        return f"test images missing: {', '.join(missing)} (run: sudo scripts/dev-cluster up)"
    return None


@functools.lru_cache(maxsize=1)
def _check() -> tuple[Cluster | None, str | None]:
    problem = cluster_problem()
    if problem is not None:
        return None, problem
    return Cluster(json.loads(CLUSTER_JSON.read_text())), None


def require_cluster() -> Cluster:
    """Return the dev cluster, or skip (fail under HPCJOBS_REQUIRE_CLUSTER=1) the calling test."""
    found, problem = _check()
    if found is not None:
        return found
    reason = f"dev cluster not available: {problem}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} [{REQUIRE_ENV}=1]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The dev cluster described by /var/lib/hpcjobs-dev/cluster.json (skips or fails if missing)."""
    return require_cluster()


@pytest.fixture
def job_dir(cluster: Cluster) -> Iterator[Path]:
    """A fresh directory under /tmp that root and the test user can both read and write."""
    d = Path(tempfile.mkdtemp(prefix="hpcjobs-test-", dir="/tmp"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        if os.environ.get("HPCJOBS_KEEP_JOB_DIRS") != "1":
            shutil.rmtree(d, ignore_errors=True)


def job_env(user: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small, fixed environment for sbatch (which exports it to the job): no caller leftovers."""
    name = user or pwd.getpwuid(os.getuid()).pw_name
    pw = pwd.getpwnam(name)
    env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": pw.pw_dir, "USER": name, "LOGNAME": name,
           "SHELL": pw.pw_shell or "/bin/sh"}
    for key in ("SLURM_CONF", "TMPDIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    if extra:
        env.update(extra)
    return env


def as_user(argv: Sequence[str], user: str | None) -> list[str]:
    """argv to run as USER (via runuser; needs root), or unchanged when USER is None or ourselves."""
    if user is None or user == pwd.getpwuid(os.getuid()).pw_name:
        return list(argv)
    if os.getuid() != 0:
        pytest.skip(f"running jobs as {user!r} needs root")
    return ["runuser", "-u", user, "--", *argv]


def sbatch_script(text: str, user: str | None = None, cwd: Path | str = "/tmp",
                  args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> str:
    """Submit TEXT as a batch script (stdin of ``sbatch --parsable``); return the job id.

    The job runs in CWD (``--chdir``) as USER (``runuser -u USER --`` when given), writes
    ``slurm-<id>.out`` there unless ARGS say otherwise, and gets a 5-minute limit unless ARGS set one.
    """
    opts = list(args)
    if not any(a == "-t" or a.startswith(("--time", "-t")) for a in opts):
        opts.append("--time=5")
    argv = as_user(["sbatch", "--parsable", f"--chdir={cwd}", *opts], user)
    r = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60, check=False,
                       cwd=str(cwd), env=job_env(user, env))
    if r.returncode != 0:
        raise AssertionError(f"sbatch failed (exit {r.returncode}): {r.stderr.strip()}\nargv: {argv}")
    job_id = r.stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise AssertionError(f"sbatch --parsable printed {r.stdout!r}")
    return job_id


def _parse_exit(value: str) -> int:
    code, _, sig = value.partition(":")
    return int(code) if code.isdigit() and (not sig or sig == "0") else 128 + int(sig or 0)


def _combine(states: Sequence[tuple[str, int]]) -> tuple[str, int]:
    """One (state, exit code) for a job array: a running state while any task runs, else the
    first state other than COMPLETED (or COMPLETED) and the largest exit code."""
    for state, code in states:
        if state not in TERMINAL_STATES:
            return state, code
    bad = [s for s, _ in states if s != "COMPLETED"]
    return (bad[0] if bad else "COMPLETED"), max(c for _, c in states)


def job_state(job_id: str) -> tuple[str, int] | None:
    """(state, exit code) of a job from ``scontrol show job -o``, else ``sacct -c``; None if unknown.

    The exit code is the job's exit status, or 128+signal when it was killed by a signal. For a
    job array (all tasks are listed by ``scontrol show job <array id>``) the state stays
    non-terminal until every task has ended. Pitfall: Slurm 22.05's ``sacct -c`` (jobcomp/filetxt)
    knows only the task whose job id is the array id, and misparses job names with spaces.
    """
    r = _run(["scontrol", "show", "job", "-o", str(job_id)])
    if r.returncode == 0:
        states = []
        for line in r.stdout.splitlines():
            state = re.search(r"\bJobState=(\S+)", line)
            code = re.search(r"\bExitCode=(\d+:\d+)", line)
            if state:
                states.append((state.group(1), _parse_exit(code.group(1)) if code else -1))
        if states:
            return _combine(states)
    # after MinJobAge scontrol forgets the job; the jobcomp file (sacct -c) still knows it
    r = _run(["sacct", "-c", "-n", "-P", "-j", str(job_id), "-o", "jobid,state,exitcode"])
    found = None
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 3 and parts[0] == str(job_id):
            found = parts[1].split()[0], _parse_exit(parts[2])
    return found


def wait_job(job_id: str, timeout_s: float = 120) -> tuple[str, int]:
    """Poll until the job ends; return (state, exit code). Cancels it and fails on timeout."""
    deadline = time.monotonic() + timeout_s
    last: tuple[str, int] | None = None
    delay = 0.1
    while time.monotonic() < deadline:
        last = job_state(job_id)
        if last is not None and last[0] in TERMINAL_STATES:
            return last
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    _run(["scancel", str(job_id)])
    raise AssertionError(f"job {job_id} did not finish within {timeout_s}s (last state: {last})")


def job_output(cwd: Path | str, job_id: str, name: str = "slurm-{id}.out") -> str:
    """Text of a job's output file (default slurm-<id>.out in CWD)."""
    return (Path(cwd) / name.format(id=job_id)).read_text(errors="replace")


def run_job(text: str, cwd: Path, user: str | None = None, args: Sequence[str] = (),
            timeout_s: float = 120, env: Mapping[str, str] | None = None) -> tuple[str, int, str]:
    """Submit, wait, return (state, exit code, output)."""
    job_id = sbatch_script(text, user=user, cwd=cwd, args=args, env=env)
    state, code = wait_job(job_id, timeout_s=timeout_s)
    out_file = Path(cwd) / f"slurm-{job_id}.out"
    out = out_file.read_text(errors="replace") if out_file.exists() else ""
    return state, code, out


def tres_spelling(value: str | None) -> str | None:
    """A ``TresPerJob`` value in one spelling: Slurm 22.05 prints ``gres:gpu:1``, 24.11 ``gres/gpu:1``
    (the TRES name), for the same request."""
    return None if value is None else re.sub(r"(^|,)gres/", r"\1gres:", value)
