"""The contract between the fake pyslurm of the unit tests (tests/fake_pyslurm.py) and the real one.

The same jobs are submitted through sbatch and described to the fake (``sbatch`` + ``finish``);
then the same calls go to both modules (``Jobs.load()``, ``Job.load``, ``Job(id).cancel()``, an
unknown id) and every field hpcjobs reads must be equal, job ids replaced by names. When real
pyslurm changes (another release, another Slurm) this fails and names the field: fix the fake
there, then the unit tests built on it mean something again.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from clusterenv import Cluster, sbatch_script, wait_job

from tests.cluster.conftest import require_real_pyslurm
from tests.fake_pyslurm import FakePyslurm, make_fake_pyslurm, view

pytestmark = pytest.mark.cluster


@pytest.fixture
def real() -> Any:
    require_real_pyslurm()
    import pyslurm

    return pyslurm


def task_ids(array_id: str) -> dict[int, str]:
    """{raw job id: "<array>_<task>"} of an array's tasks, from scontrol (not from pyslurm)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", array_id], capture_output=True, text=True).stdout
    found: dict[int, str] = {}
    for line in out.splitlines():
        raw = re.search(r"\bJobId=(\d+)", line)
        task = re.search(r"\bArrayTaskId=(\d+)\b", line)
        if raw and task:
            found[int(raw.group(1))] = task.group(1)
    return found


def test_fake_pyslurm_matches_real_pyslurm(cluster: Cluster, job_dir: Path, real: Any) -> None:
    fake: FakePyslurm = make_fake_pyslurm(real.__version__)
    workdir = str(job_dir)
    jobs: list[tuple[str, Any]] = []  # (label, real id) for what both must show
    plain = array = held = to_cancel = running = "0"
    try:
        plain = sbatch_script("#!/bin/sh\nexit 3\n", cwd=job_dir, args=["-J", "a b #c", "-o", "o-%x-%j.out"])
        array = sbatch_script("#!/bin/sh\nexit $SLURM_ARRAY_TASK_ID\n", cwd=job_dir,
                              args=["-J", "arr", "-o", "%x-%A_%a.out", "--array=0-2"])  # fmt: skip
        held = sbatch_script("#!/bin/sh\ntrue\n", cwd=job_dir, args=["-H", "--array=0-3"])
        to_cancel = sbatch_script("#!/bin/sh\ntrue\n", cwd=job_dir, args=["-H", "-J", "c"])
        running = sbatch_script("#!/bin/sh\nexec sleep 60\n", cwd=job_dir, args=["-J", "r"])  # one process
        f_plain = fake.sbatch(workdir=workdir, name="a b #c", output="o-%x-%j.out")
        f_array = fake.sbatch(workdir=workdir, name="arr", output="%x-%A_%a.out", array=[0, 1, 2])
        f_held = fake.sbatch(workdir=workdir, name="sbatch", array=[0, 1, 2, 3], held=True)
        f_cancel = fake.sbatch(workdir=workdir, name="c", held=True)
        f_running = fake.sbatch(workdir=workdir, name="r")
        fake.start(f_running)

        assert wait_job(plain)[0] == "FAILED"
        assert wait_job(array)[0] == "FAILED"
        fake.finish(f_plain, 3)
        f_tasks = fake.finish(f_array, {0: 0, 1: 1, 2: 2})

        # the same call on both: cancel a pending and a running job; cancel and load an unknown id
        deadline = time.monotonic() + 300  # the shared node may be busy with other jobs for a while
        while real.Job.load(int(running)).state != "RUNNING":
            assert time.monotonic() < deadline, f"job {running} did not start within 300 s: is the node full?"
            time.sleep(0.2)
        real.Job(int(to_cancel)).cancel()
        fake.Job(f_cancel).cancel()
        real.Job(int(running)).cancel()
        fake.Job(f_running).cancel()
        real.Job(59999999).cancel()
        fake.Job(59999999).cancel()
        errors = []
        for mod in (real, fake):
            with pytest.raises(mod.RPCError) as info:
                mod.Job.load(59999999)
            errors.append((str(info.value), getattr(info.value, "errno", None)))
        assert errors[0] == errors[1]
        assert wait_job(to_cancel)[0] == "CANCELLED"
        assert wait_job(running)[0] == "CANCELLED"

        real_ids = {int(plain): "plain", int(held): "held", int(to_cancel): "cancelled", int(running): "killed"}
        real_ids.update({raw: f"arr_{task}" for raw, task in task_ids(array).items()})
        fake_ids = {f_plain: "plain", f_held: "held", f_cancel: "cancelled", f_running: "killed"}
        fake_ids.update({raw: f"arr_{task}" for task, raw in f_tasks.items()})
        assert sorted(real_ids.values()) == sorted(fake_ids.values())

        real_all, fake_all = real.Jobs.load(), fake.Jobs.load()
        assert all(isinstance(k, int) for k in real_all) and all(isinstance(k, int) for k in fake_all)
        for label in sorted(real_ids.values()):
            r_raw = next(k for k, v in real_ids.items() if v == label)
            f_raw = next(k for k, v in fake_ids.items() if v == label)
            got_real = view(real_all[r_raw], real_ids)
            got_fake = view(fake_all[f_raw], fake_ids)
            assert got_fake == got_real, f"fake pyslurm differs from real pyslurm for {label}: {got_fake} != {got_real}"
            assert view(real.Job.load(r_raw), real_ids) == got_real  # Job.load agrees with Jobs.load
            jobs.append((label, r_raw))
        assert len(jobs) == 7
    finally:
        subprocess.run(["scancel", *(str(j) for j in (plain, array, held, to_cancel, running))], check=False)
