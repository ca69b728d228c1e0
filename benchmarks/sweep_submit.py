"""Sweep submission and tracking on the dev cluster, against baselines measured in the same run.

(1) ContainerJob.map(N points)  vs  raw `sbatch --array` of the same size with the same chunking
    (one sbatch per MaxArraySize chunk of a plain script), interleaved: ratio, goal <= 1.5
(2) the same sweep  vs  a loop of per-point `sbatch` calls, measured on a sample (--loop-sample,
    default 200) and extrapolated linearly to N points: speed-up, goal >= 100 (extrapolated)
(3) 10,000 points: hpcjobs' own work measured at 10,000 (points checked, encoded, written, scripts
    rendered; submission answered in process, the two limit queries -- `scontrol show config`, the
    job-record `squeue` -- answered after the time they took here, measured in this run) plus the
    sbatch time per chunk measured in (1) — a model, printed as one, for when the shared controller
    has no room for 10,000 job records
(4) Sweep.status(): Slurm queries per poll (real, N points), and the memory of tracking 10,000
    points (tracemalloc peak of one status() over a squeue answer of 10,000 task rows, and the
    process's max RSS)

Everything is submitted held (--hold) and cancelled at once. In Slurm every array task is a job
record counted against MaxJobCount until MinJobAge after it ends (cancelled ones too), so on the
shared dev cluster (MaxJobCount 10000) N defaults to 2002 (two full chunks) and one round; the
benchmark refuses to start when the controller has no room.
With ``--baseline-src DIR`` (another hpcjobs source tree, e.g. a ``git worktree`` of the previous
commit) (1) and (3) are also run from that tree, in child processes alternating with this tree's
(``--only-ratio``), so that before and after see the same controller.
Usage: .venv/bin/python benchmarks/sweep_submit.py [--points 2002] [--rounds 1] [--loop-sample 200]
       [--baseline-src DIR [--pairs 2]]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from hpcjobs import ContainerJob
from hpcjobs.config import load_site
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.runner import Completed, RecordingRunner, SubprocessRunner
from hpcjobs.schedulers import SlurmCli
from hpcjobs.schedulers.base import ArrayLimits
from hpcjobs.schedulers.slurm_cli import SEP
from hpcjobs.sweep.handle import Sweep
from hpcjobs.sweep.plan import plan_arrays

ROOT = Path(__file__).resolve().parents[1]
SITE = load_site(ROOT / "site-configs" / "dev-cluster.yaml")
IMAGE = "/var/lib/hpcjobs-dev/images/tiny.sif"
BIG = 10_000


def points(n: int) -> list[dict[str, Any]]:
    return [{"args": ["--lr", f"{i * 1e-4:.4f}", "--name", f"run {i}"], "env": {"SEED": str(i)}} for i in range(n)]


def room_for(size: int, max_job_count: int) -> None:
    used = SlurmCli().job_records()
    if used + size >= max_job_count:
        raise SystemExit(f"not now: {used} job records in the controller + {size} >= MaxJobCount {max_job_count}")


def sbatch(script: str, cwd: Path, *extra: str) -> str:
    r = subprocess.run(["sbatch", "--parsable", "--hold", *extra], input=script, capture_output=True, text=True,
                       cwd=cwd, check=True)  # fmt: skip
    return r.stdout.strip().split(";")[0]


class InProcess:
    """Answers submissions in process: hpcjobs' own work for 10,000 points, without Slurm. The
    limit queries take as long as the real ones measured in this run (``scontrol_s``, ``squeue_s``)."""

    runner = SubprocessRunner()  # what would ask Slurm: this host's (so the limits may be kept)

    def __init__(self, scontrol_s: float = 0.0, squeue_s: float = 0.0) -> None:
        self.n = 0
        self.scontrol_s, self.squeue_s = scontrol_s, squeue_s

    def config_limits(self) -> tuple[int, int, bool]:
        time.sleep(self.scontrol_s)
        return 1001, 100_000, False

    def array_limits(self, qos: str | None = None, config: tuple[int, int, bool] | None = None) -> ArrayLimits:
        got = config if config is not None else self.config_limits()
        return ArrayLimits(got[0], got[1])

    def job_records(self) -> int:
        time.sleep(self.squeue_s)
        return 0

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        self.n += 1
        return str(10_000 + self.n)


def query_s(argv: list[str]) -> float:
    """Median wall time of a Slurm query (3 runs)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def side_by_side(n: int, rounds: int, work: Path, pts: list[dict[str, Any]]) -> dict[str, Any]:
    """(1) and (3): ContainerJob.map of ``n`` points interleaved with raw sbatch --array, and the
    10,000-point model, in this process (whichever hpcjobs it imports)."""
    limits = SlurmCli().array_limits()
    plans = plan_arrays(range(n), limits, contiguous=True)
    job = ContainerJob(image=IMAGE, command=["train"], extra_sbatch=["--hold"])
    raw_script = render(resolve(ContainerJob(image=IMAGE, command=["train"], output=str(work / "%A_%a.out")), SITE))
    warm = job.map(pts[:2], SITE, cwd=work)  # untimed: imports, the first sbatch, the limits kept
    warm.cancel()
    subprocess.run(["scancel", sbatch(raw_script, work, "--array=0-1")], check=False)
    api_s: list[float] = []
    raw_s: list[float] = []
    sw: Sweep | None = None
    for _ in range(rounds):  # interleaved: both sides see the same controller
        t0 = time.perf_counter()
        ids = [sbatch(raw_script, work, f"--array={p.array_spec(None)}") for p in plans]
        raw_s.append(time.perf_counter() - t0)
        subprocess.run(["scancel", *ids], check=False)
        t0 = time.perf_counter()
        sw = job.map(pts, SITE, cwd=work)
        api_s.append(time.perf_counter() - t0)
        sw.cancel()
    assert sw is not None
    recorded = RecordingRunner()  # every call goes to Slurm; a 2-point sweep makes the same calls plus sbatch
    job.map(pts[:2], SITE, runner=recorded, cwd=work).cancel()
    scontrol_s = query_s(["scontrol", "show", "config"])
    squeue_s = query_s(["squeue", "-h", "-r", "-t", "all", "-o", "%i"])
    os.environ["XDG_CACHE_HOME"] = str(work / "cache-model")  # the model's limits are not the cluster's
    big = points(BIG)
    local: list[float] = []
    big_sweep = None
    for _ in range(3):
        t0 = time.perf_counter()
        big_sweep = job.map(big, SITE, scheduler=InProcess(scontrol_s, squeue_s), cwd=work)  # type: ignore[arg-type]
        local.append(time.perf_counter() - t0)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    return {"n": n, "arrays": len(plans), "api_s": statistics.median(api_s), "raw_s": statistics.median(raw_s),
            "scontrol_s": scontrol_s, "squeue_s": squeue_s, "local_s": min(local),
            "big_arrays": len(plan_arrays(range(BIG), limits, contiguous=True)),
            "slurm_calls": [" ".join(c.argv[:3]) for c in recorded.calls if c.argv[0] != "scancel"],
            "sweep": str(sw.directory), "big_sweep": str(big_sweep.directory if big_sweep else "")}  # fmt: skip


def report(tag: str, r: dict[str, Any], rounds: int) -> tuple[float, float]:
    api, raw, n = r["api_s"], r["raw_s"], r["n"]
    print(f"(1){tag} {n} points in {r['arrays']} arrays: raw sbatch --array {raw * 1000:.0f} ms, ContainerJob.map "
          f"{api * 1000:.0f} ms, ratio {api / raw:.2f} (goal <= 1.5; median of {rounds})")  # fmt: skip
    print(f"   {tag} Slurm calls of one submission (a 2-point sweep, limits kept from the first): "
          f"{', '.join(r['slurm_calls'])}")  # fmt: skip
    per_chunk = raw / r["arrays"]
    model_api = r["local_s"] + per_chunk * r["big_arrays"]
    model_raw = per_chunk * r["big_arrays"]
    print(f"(3){tag} {BIG} points (model): hpcjobs' own work {r['local_s'] * 1000:.0f} ms (measured, best of 3; "
          f"limit queries answered after scontrol {r['scontrol_s'] * 1000:.0f} ms / squeue "
          f"{r['squeue_s'] * 1000:.0f} ms, measured now) + {r['big_arrays']} sbatch x {per_chunk * 1000:.1f} ms "
          f"(measured in 1) = {model_api * 1000:.0f} ms; raw {model_raw * 1000:.0f} ms; ratio "
          f"{model_api / model_raw:.2f}")  # fmt: skip
    return api, model_api


def compare(opts: argparse.Namespace) -> dict[str, Any]:
    """Before/after: children alternate between the baseline tree and this one."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    trees = {"before": {**env, "PYTHONPATH": str(opts.baseline_src.resolve())}, "after": env}
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for _ in range(opts.pairs):
        for tag, child_env in trees.items():
            out = subprocess.run([sys.executable, __file__, "--points", str(opts.points), "--rounds", str(opts.rounds),
                                  "--only-ratio"], env=child_env, cwd=tempfile.gettempdir(), capture_output=True,
                                 text=True, check=True)  # fmt: skip
            results[tag].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for tag in results:
        for r in results[tag]:
            report(f" [{tag}]", r, opts.rounds)
        import_from = results[tag][0]["hpcjobs"]
        print(f"    [{tag}] hpcjobs imported from {import_from}")
    return results["after"][-1]


def squeue_answer(sw: Sweep) -> RecordingRunner:
    """A runner answering squeue with one PENDING row per task of the sweep's arrays."""
    rows = []
    for entry in sw.record.arrays:
        for t in range(entry.plan.count):
            rows.append(SEP.join([str(int(entry.job_id) + t), entry.job_id, str(t), "PENDING", "0", "JobHeldUser",
                                  "u", "/w", "(null)", "/w/slurm-%A.out", "tiny", "0:00"]) + SEP)  # fmt: skip
    text = "\n".join(rows) + "\n"
    return RecordingRunner(answer=lambda c: Completed(c.argv, 0, text, "") if c.argv[0] == "squeue" else None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=2002)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--loop-sample", type=int, default=200)
    ap.add_argument("--baseline-src", type=Path, help="another hpcjobs source tree: before/after of (1) and (3)")
    ap.add_argument("--pairs", type=int, default=2, help="with --baseline-src: children per tree, alternating")
    ap.add_argument("--only-ratio", action="store_true", help=argparse.SUPPRESS)  # a child of --baseline-src
    opts = ap.parse_args()
    n = opts.points
    limits = SlurmCli().array_limits()
    pts = points(n)
    work = Path(tempfile.mkdtemp(prefix="hpcjobs-bench-sweep-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # the per-user sweep index: not the real one
    try:
        if opts.only_ratio:
            import hpcjobs

            r = side_by_side(n, opts.rounds, work, pts)
            print(json.dumps({**r, "hpcjobs": str(Path(hpcjobs.__file__).parent)}))
            return
        runs = 2 * opts.pairs if opts.baseline_src else 1
        room_for(runs * (2 * n * opts.rounds + 6) + opts.loop_sample + 10, limits.max_job_count)
        if opts.baseline_src:  # (2) from the last child of this tree; (4) not run (the children are gone)
            r = compare(opts)
            api, model_api = r["api_s"], r["local_s"] + r["raw_s"] / r["arrays"] * r["big_arrays"]
        else:
            r = side_by_side(n, opts.rounds, work, pts)
            api, model_api = report("", r, opts.rounds)

        m = min(opts.loop_sample, n)
        single = render(resolve(ContainerJob(image=IMAGE, command=["train"], output=str(work / "%j.out")), SITE))
        loop_ids: list[str] = []
        t0 = time.perf_counter()
        for _ in range(m):
            loop_ids.append(sbatch(single, work))
        per = (time.perf_counter() - t0) / m
        subprocess.run(["scancel", *loop_ids], check=False)
        print(f"(2) loop of sbatch: {m} calls, {per * 1000:.1f} ms each; extrapolated to {n} points {per * n:.1f} s: "
              f"ContainerJob.map is {per * n / api:.0f}x faster; at {BIG} (model) {per * BIG / model_api:.0f}x "
              "(goal >= 100; the loop extrapolated)")  # fmt: skip

        if opts.baseline_src:
            return
        sw, big_sweep = Sweep.load(r["sweep"]), Sweep.load(r["big_sweep"])
        real = RecordingRunner()
        Sweep.load(str(sw.directory), scheduler=SlurmCli(real)).status()
        print(f"(4) status of {n} points (real Slurm): {len(real.calls)} Slurm query per poll "
              f"({', '.join(c.argv[0] for c in real.calls)})")  # fmt: skip
        fake = squeue_answer(big_sweep)
        tracked = Sweep.load(str(big_sweep.directory), scheduler=SlurmCli(fake))
        timings = []
        for _ in range(3):
            t0 = time.perf_counter()
            st = tracked.status()
            timings.append(time.perf_counter() - t0)
        status_s = min(timings)
        tracemalloc.start()  # a separate poll: tracing slows Python several times
        st = tracked.status()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        files = [f for f in big_sweep.directory.rglob("*") if f.is_file()]
        print(f"    tracking {len(st.points)} points: one poll (a squeue answer of {len(st.points)} rows parsed) "
              f"{status_s * 1000:.0f} ms (best of 3), "
              f"tracemalloc peak {peak / 2**20:.1f} MiB, max RSS of this process {rss_mb:.0f} MiB; the sweep "
              f"directory: {len(files)} files, {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
