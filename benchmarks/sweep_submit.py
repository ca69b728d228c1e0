"""A 10,000-point sweep on the dev cluster, against baselines measured in the same run.

(1) ContainerJob.map(10,000 points)  vs  raw `sbatch --array` of the same size with the same
    chunking (one sbatch per MaxArraySize chunk of a plain script): ratio, goal <= 1.5
(2) the same sweep  vs  a loop of per-point `sbatch` calls, measured on a sample (--loop-sample,
    default 200) and extrapolated linearly to all points: speed-up, goal >= 100
(3) Sweep.status() of all points: Slurm queries per poll (goal 1-2), wall time, and memory
    (tracemalloc peak of one status(), and the process's max RSS while tracking the sweep)

Everything is submitted held (--hold) and cancelled right away: the node stays free, and a held
array is one job record in slurmctld however many tasks it has. The shared controller's MaxJobCount
is checked before each side (an array needs job records + its size < MaxJobCount).
Usage: .venv/bin/python benchmarks/sweep_submit.py [--points 10000] [--rounds 3] [--loop-sample 200]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from hpcjobs import ContainerJob
from hpcjobs.config import load_site
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.runner import RecordingRunner
from hpcjobs.schedulers import SlurmCli
from hpcjobs.sweep.handle import Sweep
from hpcjobs.sweep.plan import plan_arrays

ROOT = Path(__file__).resolve().parents[1]
SITE = load_site(ROOT / "site-configs" / "dev-cluster.yaml")
IMAGE = "/var/lib/hpcjobs-dev/images/tiny.sif"


def job_records() -> int:
    r = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True, check=True)
    return len(r.stdout.splitlines())


def room_for(size: int, max_job_count: int) -> None:
    used = job_records()
    if used + size >= max_job_count:
        raise SystemExit(f"not now: {used} job records in the controller + {size} >= MaxJobCount {max_job_count}")


def sbatch(script: str, cwd: Path, *extra: str) -> str:
    r = subprocess.run(["sbatch", "--parsable", "--hold", *extra], input=script, capture_output=True, text=True,
                       cwd=cwd, check=True)  # fmt: skip
    return r.stdout.strip().split(";")[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop-sample", type=int, default=200)
    opts = ap.parse_args()
    n = opts.points
    limits = SlurmCli().array_limits()
    plans = plan_arrays(range(n), limits, contiguous=True)
    points = [{"args": ["--lr", f"{i * 1e-4:.4f}", "--name", f"run {i}"], "env": {"SEED": str(i)}} for i in range(n)]
    job = ContainerJob(image=IMAGE, command=["train"], extra_sbatch=["--hold"])
    work = Path(tempfile.mkdtemp(prefix="hpcjobs-bench-sweep-"))
    raw_script = render(resolve(ContainerJob(image=IMAGE, command=["train"], output=str(work / "%A_%a.out")), SITE))
    keep: list[str] = []
    try:
        # warm-up, untimed: imports, the first sbatch
        warm = job.map(points[:3], SITE, cwd=work)
        warm.cancel()
        keep.append(sbatch(raw_script, work, "--array=0-2"))
        subprocess.run(["scancel", keep[-1]], check=False)

        api_s: list[float] = []
        raw_s: list[float] = []
        for _ in range(opts.rounds):  # interleaved: both sides see the same controller
            room_for(max(p.count for p in plans) + len(plans), limits.max_job_count)
            t0 = time.perf_counter()
            sw = job.map(points, SITE, cwd=work)
            api_s.append(time.perf_counter() - t0)
            sw.cancel()
            room_for(max(p.count for p in plans) + len(plans), limits.max_job_count)
            t0 = time.perf_counter()
            ids = [sbatch(raw_script, work, f"--array={p.array_spec(None)}") for p in plans]
            raw_s.append(time.perf_counter() - t0)
            subprocess.run(["scancel", *ids], check=False)
        api, raw = statistics.median(api_s), statistics.median(raw_s)
        print(f"(1) {n} points in {len(plans)} arrays: raw sbatch --array {raw:.3f} s, ContainerJob.map {api:.3f} s, "
              f"ratio {api / raw:.2f} (goal <= 1.5; medians of {opts.rounds})")  # fmt: skip

        m = min(opts.loop_sample, n)
        room_for(m, limits.max_job_count)
        single = render(resolve(ContainerJob(image=IMAGE, command=["train"], output=str(work / "%j.out")), SITE))
        loop_ids: list[str] = []
        t0 = time.perf_counter()
        for _ in range(m):
            loop_ids.append(sbatch(single, work))
        loop_s = time.perf_counter() - t0
        for k in range(0, len(loop_ids), 500):
            subprocess.run(["scancel", *loop_ids[k : k + 500]], check=False)
        per = loop_s / m
        print(f"(2) loop of sbatch: {m} calls {loop_s:.2f} s ({per * 1000:.1f} ms each), extrapolated to {n}: "
              f"{per * n:.1f} s; ContainerJob.map is {per * n / api:.0f}x faster (goal >= 100; extrapolated)")

        room_for(max(p.count for p in plans) + len(plans), limits.max_job_count)
        sw = job.map(points, SITE, cwd=work)
        try:
            runner = RecordingRunner()
            tracked = Sweep.load(str(sw.directory), scheduler=SlurmCli(runner))
            tracemalloc.start()
            t0 = time.perf_counter()
            st = tracked.status()
            status_s = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            queries = [c.argv[0] for c in runner.calls]
            print(f"(3) status of {len(st.points)} points: Slurm queries: {len(queries)} "
                  f"({', '.join(queries)}), {status_s:.2f} s; tracemalloc peak {peak / 2**20:.1f} MiB, "
                  f"max RSS of this process {rss_mb:.0f} MiB; counts {st.counts}")  # fmt: skip
            disk = sum(f.stat().st_size for f in sw.directory.rglob("*") if f.is_file())
            files = sum(1 for f in sw.directory.rglob("*") if f.is_file())
            print(f"    the sweep directory: {files} files, {disk / 2**20:.1f} MiB (points, scripts, record)")
        finally:
            sw.cancel()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
