"""Launcher options on the real cluster (issue 14): each rank of a 2-task job prints its
``Cpus_allowed_list`` from inside the container, and it is what the options asked for — srun's
``--cpu-bind`` from a partition default and from the job, mpirun's ``--bind-to`` — as root through
the Python API and as the test user through the CLI, through both scheduler backends. And the
srun option table hpcjobs checks entries against is this cluster's srun's.

The dev VM has 2 real cores (Slurm advertises 16); the tasks' masks are real CPU numbers. srun's
binding gives the same masks whichever of the 16 CPUs Slurm allocates (checked with other jobs
holding CPUs 0, 0-1, 0-2, 0-4); the batch step's own mask does not (CPU_IDs=1-2 gives it CPU 1
only), so an unbound mpirun rank is checked against its sibling, not against 0-1.
"""

from __future__ import annotations

import json
import re
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from clusterenv import Cluster

from hpcjobs.api import ContainerJob
from hpcjobs.config import load_site
from hpcjobs.launchers import srun_options
from tests.cluster.test_user_cli import UserCli, user_cli  # noqa: F401  (fixture)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
# one line per rank: "RANK <rank> <Cpus_allowed_list>"; the rank from mpirun, else from srun
PRINT_MASK = ["/bin/sh", "-c", 'echo "RANK ${OMPI_COMM_WORLD_RANK:-$SLURM_PROCID} '
              '$(grep Cpus_allowed_list /proc/self/status | cut -f2)"']  # fmt: skip


def site_file(job_dir: Path) -> Path:
    """The dev cluster's site config, its cpu partition binding by default (as an admin would)."""
    data = yaml.safe_load((ROOT / "site-configs" / "dev-cluster.yaml").read_text())
    data["partitions"]["cpu"]["launcher_options"] = {"srun": ["--cpu-bind=cores"],
                                                     "mpirun": ["--bind-to core", "--map-by core"]}  # fmt: skip
    path = job_dir / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o644)
    return path


def masks(out: str) -> dict[str, str]:
    found = dict(re.findall(r"^RANK (\d+) (\S+)$", out, re.MULTILINE))
    assert sorted(found) == ["0", "1"], out
    return found


def check(asked: str, found: dict[str, str], out: str) -> None:
    if asked == "exact":  # map_cpu:1,0: rank 0 on CPU 1, rank 1 on CPU 0
        assert found == {"0": "1", "1": "0"}, out
    elif asked == "cores":  # one core each, not the same one
        assert sorted(found.values()) == ["0", "1"], out
    else:  # not bound: both ranks see the same CPUs (all the batch step has), not one core each
        # (the batch step's own mask depends on which of Slurm's 16 advertised CPUs the job got:
        # 0-1, or 1 alone for CPU_IDs=1-2; srun's none gives every task 0-1 either way)
        assert found["0"] == found["1"], out
        assert found["0"] in ("0-1", "0", "1"), out


# (mpi, the job's launcher options, --set, the expected binding)
CASES: dict[str, tuple[str, dict[str, list[str]], dict[str, Any], str]] = {
    "srun-partition-default": ("pmix", {}, {}, "cores"),
    "srun-job-replaces-default": ("pmix", {"srun": ["--cpu-bind=map_cpu:1,0"]}, {}, "exact"),
    "srun-set-replaces-job": ("pmix", {"srun": ["--cpu-bind=map_cpu:1,0"]},
                              {"launcher_options": {"srun": ["--cpu-bind=none"]}}, "none"),
    "mpirun-partition-default": ("mpirun", {}, {}, "cores"),
    "mpirun-job-replaces-default": ("mpirun", {"mpirun": ["--bind-to none"]}, {}, "none"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_root_ranks_are_bound_as_asked(cluster: Cluster, job_dir: Path, backend: str, case: str) -> None:
    mpi, options, sets, asked = CASES[case]
    if mpi == "mpirun":  # Open MPI refuses root unless told: an mpirun option from the job
        options = {"mpirun": [*options.get("mpirun", []), "--allow-run-as-root"]}
    spec = ContainerJob(image=cluster.image("mpi_sif"), ntasks=2, mpi=mpi, entrypoint=PRINT_MASK,
                        launcher_options=options, output="slurm-%j.out", time_min=5)  # fmt: skip
    job = spec.submit(load_site(site_file(job_dir)), sets, cwd=job_dir)
    st = job.wait(poll_s=0.5, timeout_s=240)
    out = (job_dir / f"slurm-{job.job_id}.out").read_text()
    assert (st.state.name, st.exit_code) == ("COMPLETED", 0), out
    check(asked, masks(out), out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_ranks_are_bound_as_asked(
    cluster: Cluster, job_dir: Path, user_cli: UserCli, backend: str, case: str  # noqa: F811
) -> None:
    mpi, options, sets, asked = CASES[case]
    job = {"image": cluster.image("mpi_sif"), "ntasks": 2, "mpi": mpi, "entrypoint": PRINT_MASK,
           "output": "slurm-%j.out", "time_min": 5, **({"launcher_options": options} if options else {})}  # fmt: skip
    (job_dir / "job.yaml").write_text(yaml.safe_dump(job))
    site = str(site_file(job_dir))
    set_args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    explained = user_cli("render", "job.yaml", "--site", site, "--explain", *set_args, cwd=job_dir)
    assert explained.returncode == 0, explained.stderr
    assert "launcher_options." in explained.stdout and "does not apply" in explained.stdout  # the other launcher's
    r = user_cli("submit", "job.yaml", "--site", site, "--wait", "--json", "--poll-s", "0.5", *set_args, cwd=job_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr  # task/affinity binds: nothing to warn about
    result = json.loads(r.stdout)
    out = (job_dir / f"slurm-{result['job_id']}.out").read_text()
    assert result["state"] == "COMPLETED", out
    check(asked, masks(out), out)
    shown = subprocess.run(["scontrol", "show", "job", "-o", result["job_id"]], capture_output=True, text=True)
    assert f"UserId={cluster.test_user}(" in shown.stdout


def test_user_job_level_option_for_a_single_task_is_refused_before_submission(
    cluster: Cluster, job_dir: Path, user_cli: UserCli  # noqa: F811
) -> None:
    (job_dir / "job.yaml").write_text(yaml.safe_dump({"image": cluster.image("tiny_sif"),
                                                      "launcher_options": {"srun": ["--cpu-bind=cores"]}}))  # fmt: skip
    r = user_cli("submit", "job.yaml", "--site", str(site_file(job_dir)), cwd=job_dir)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(
        "hpcjobs: error: launcher_options.srun '--cpu-bind=cores' from the job does not apply: "
        "this job runs a single task"
    ), r.stderr
    assert not list(job_dir.glob("*.out"))


# ------------------------------------------------------------------ the option table is srun's


def _srun(*args: str) -> str:
    done = subprocess.run(["srun", *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})  # fmt: skip
    return done.stdout + done.stderr


def _version() -> str:
    m = re.search(r"(\d+\.\d+)", _srun("--version"))
    assert m is not None
    return m.group(1)


def test_srun_long_options_are_this_clusters_srun(cluster: Cluster) -> None:
    """Every long option glibc names for a one-letter prefix of this srun is in our table, and every
    option of the table for this version is known to srun, with the same value rule."""
    version = _version()
    found: set[str] = set()
    for a in string.ascii_lowercase:
        m = re.search(r"possibilities:((?: '--[^']+')+)", _srun(f"--{a}=x", "--usage"))
        if m:
            found |= set(re.findall(r"'--([^']+)'", m.group(1)))
    assert found - set(srun_options.LONG) == set()
    for name, rule in srun_options.LONG.items():
        has_arg = srun_options.VALUE_IN.get((name, version), rule)
        if srun_options.ONLY_IN.get(name, version) != version:  # unknown here, or an abbreviation (--extra)
            longer = any(n != name and n.startswith(name) for n in srun_options.LONG)
            assert longer or "unrecognized option" in _srun(f"--{name}=x", "--usage"), name
            continue
        no_value = "doesn't allow an argument" in _srun(f"--{name}=x", "--usage")
        assert "unrecognized option" not in _srun(f"--{name}=x", "--usage"), name
        needs_value = "requires an argument" in _srun(f"--{name}")
        assert (no_value, needs_value) == (has_arg == 0, has_arg == 1), name


def test_srun_short_options_and_prefixes_read_as_srun_reads_them(cluster: Cluster) -> None:
    for c in string.ascii_letters + string.digits:
        known = "invalid option" not in _srun(f"-{c}")
        assert known == (c in srun_options.SHORT), c
    # an abbreviation is what srun takes it for, or refused where srun finds it ambiguous
    for prefix in ("cpu-b", "nta", "mp", "part", "exp", "job", "clu", "dist", "hin", "ntasks-per-n", "lab"):
        ours = srun_options.long_name(prefix)
        theirs = _srun(f"--{prefix}=x", "--usage")
        assert ("is ambiguous" in theirs) == (ours is not None and ours.startswith("(")), prefix
