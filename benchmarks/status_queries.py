"""How many Slurm processes one ``status()`` poll of N jobs starts, and how long it takes.

Submits N held jobs (``#SBATCH --hold``: they never run) to the dev cluster, polls all of them a few
times through the scheduler ``get_scheduler()`` picks, with a Runner that counts the processes it
starts, and cancels every job at the end. For comparison it also times the naive way (one
``scontrol show job`` per job) on a sample. Prints numbers; asserts nothing about time.

    .venv/bin/python benchmarks/status_queries.py [--n 1000] [--polls 5] [--naive-sample 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpcjobs.runner import RecordingRunner, SubprocessRunner
from hpcjobs.schedulers import describe_backend, get_scheduler
from hpcjobs.schedulers.slurm_cli import SlurmCli

HELD_SCRIPT = "#!/bin/bash\n#SBATCH --hold\n#SBATCH -t 1\n#SBATCH -J hpcjobs-bench\ntrue\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=1000, help="held jobs to submit (default 1000)")
    ap.add_argument("--polls", type=int, default=5, help="status() polls to time (default 5)")
    ap.add_argument("--naive-sample", type=int, default=50,
                    help="jobs to query one by one with scontrol, for comparison (0: skip)")  # fmt: skip
    args = ap.parse_args(argv)

    counting = RecordingRunner()
    sched = get_scheduler(counting)
    submitter = SlurmCli()
    print(f"backend: {describe_backend()}")
    print(f"slurm: {sched.cluster_version()}")
    ids: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hpcjobs-bench-") as workdir:
        try:
            t0 = time.perf_counter()
            for _ in range(args.n):
                ids.append(submitter.submit(HELD_SCRIPT, cwd=workdir))
            t_submit = time.perf_counter() - t0
            print(f"submitted {len(ids)} held jobs in {t_submit:.2f} s ({len(ids) / t_submit:.0f}/s)")

            durations: list[float] = []
            per_poll: list[int] = []
            for _ in range(max(1, args.polls)):
                counting.calls.clear()
                t0 = time.perf_counter()
                statuses = sched.status(ids)
                durations.append(time.perf_counter() - t0)
                per_poll.append(len(counting.calls))
            pending = sum(1 for j in ids if statuses[j].state.name == "PENDING")
            programs = sorted(set(counting.programs()))
            print(f"jobs answered: {len(statuses)} ({pending} PENDING)")
            print(f"queries per poll: {max(per_poll)} ({', '.join(programs) or 'in-process'})")
            print(f"time per poll of {len(ids)} jobs: median {statistics.median(durations) * 1000:.1f} ms, "
                  f"min {min(durations) * 1000:.1f} ms, max {max(durations) * 1000:.1f} ms")  # fmt: skip

            sample = ids[: max(0, min(args.naive_sample, len(ids)))]
            if sample:
                plain = SubprocessRunner()
                t0 = time.perf_counter()
                for job_id in sample:
                    plain(["scontrol", "show", "job", "-o", job_id])
                each = (time.perf_counter() - t0) / len(sample)
                print(
                    f"naive (one scontrol per job), measured on {len(sample)}: {each * 1000:.1f} ms/job, "
                    f"about {each * len(ids):.1f} s and {len(ids)} processes per poll of {len(ids)} jobs"
                )
        finally:
            if ids:
                t0 = time.perf_counter()
                submitter.cancel(ids)
                print(f"cancelled {len(ids)} jobs in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
