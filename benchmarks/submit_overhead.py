"""Submission overhead of hpcjobs against raw sbatch, measured in the same run on the dev cluster.

(1) in-process ContainerJob.submit() x N  vs  `sbatch --parsable` x N of the very same scripts -> ratio
(2) `hpcjobs submit job.yaml` CLI wall time  minus  raw `sbatch script` wall time (median of M runs)

All jobs are submitted held (--hold) and cancelled at the end, so the node stays free.
Usage: .venv/bin/python benchmarks/submit_overhead.py [--n 200] [--cli-runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpcjobs import ContainerJob
from hpcjobs.config import load_site
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.schedulers import get_scheduler

ROOT = Path(__file__).resolve().parents[1]
SITE_PATH = ROOT / "site-configs" / "dev-cluster.yaml"
IMAGE = "/var/lib/hpcjobs-dev/images/tiny.sif"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--cli-runs", type=int, default=20)
    opts = ap.parse_args()
    site = load_site(SITE_PATH)
    sched = get_scheduler()
    ids: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="hpcjobs-bench-"))
    try:
        jobs = [
            ContainerJob(image=IMAGE, name=f"bench-{i}", command=["x", str(i)], extra_sbatch=["--hold"],
                         output=str(work / "%j.out"))
            for i in range(opts.n)
        ]
        scripts = [render(resolve(j, site)) for j in jobs]
        # warm-up, untimed: one-time imports and the first sbatch belong to neither side
        warm = subprocess.run(["sbatch", "--parsable", "--hold"], input=scripts[0], capture_output=True,
                              text=True, cwd=work, check=True)
        ids.append(warm.stdout.strip().split(";")[0])
        ids.append(jobs[0].submit(site, scheduler=sched, cwd=work).job_id)

        # alternate the two, so that both see the same queue length (slurmctld slows as it fills)
        raw_s = api_s = 0.0
        for j, script in zip(jobs, scripts, strict=True):
            t0 = time.perf_counter()
            r = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True,
                               cwd=work, check=True)
            raw_s += time.perf_counter() - t0
            ids.append(r.stdout.strip().split(";")[0])
            t0 = time.perf_counter()
            ids.append(j.submit(site, scheduler=sched, cwd=work).job_id)
            api_s += time.perf_counter() - t0

        print(f"(1) {opts.n} submissions: raw sbatch {raw_s:.3f} s, ContainerJob.submit() {api_s:.3f} s, "
              f"ratio {api_s / raw_s:.3f} (goal <= 1.2)")

        job_yaml = work / "job.yaml"
        job_yaml.write_text(f"image: {IMAGE}\ncommand: [x]\nextra_sbatch: [--hold]\noutput: {work}/%j.out\n")
        script_path = work / "job.sh"
        script_path.write_text(scripts[0])
        hpcjobs_bin = str(Path(sys.executable).with_name("hpcjobs"))
        raw_times, cli_times = [], []
        for _ in range(opts.cli_runs):
            t0 = time.perf_counter()
            r = subprocess.run(["sbatch", "--parsable", str(script_path)], capture_output=True, text=True,
                               cwd=work, check=True)
            raw_times.append(time.perf_counter() - t0)
            ids.append(r.stdout.strip().split(";")[0])
            t0 = time.perf_counter()
            r = subprocess.run([hpcjobs_bin, "submit", "--site", str(SITE_PATH), str(job_yaml)],
                               capture_output=True, text=True, cwd=work, check=True)
            cli_times.append(time.perf_counter() - t0)
            ids.append(r.stdout.strip())
        raw_ms = statistics.median(raw_times) * 1000
        cli_ms = statistics.median(cli_times) * 1000
        print(f"(2) CLI: raw sbatch {raw_ms:.1f} ms, hpcjobs submit {cli_ms:.1f} ms, "
              f"overhead {cli_ms - raw_ms:.1f} ms (goal <= 150 ms), medians of {opts.cli_runs}; "
              "benchmarks/cli_startup.py breaks it down")
    finally:
        for k in range(0, len(ids), 500):
            subprocess.run(["scancel", *ids[k : k + 500]], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
