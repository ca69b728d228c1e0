"""Sweep submission and tracking on the dev cluster, against baselines measured in the same run.

(1) ContainerJob.map(N points, default 10,000; in process)  vs  raw ``sbatch --array`` of the same
    size with the same chunking (one ``sbatch`` per MaxArraySize chunk of a plain script, from the
    same process), in alternating order (round 1 raw first, round 2 hpcjobs first, ...): ratio,
    goal <= 1.5. Every hpcjobs submission goes through a timing ``RecordingRunner``: when the
    job-record count was begun and collected (a call begun through ``Runner.start`` is timed
    until its answer is collected, which may be after the program ended), when its first
    ``sbatch`` started, and the time of its ``sbatch`` calls (each until collected); its total
    divided by them is the ratio against the raw calls' cost at that very moment (the two sides
    of a round are seconds apart, and the shared VM's load can change in between).
(2) The CLI: ``hpcjobs submit job.yaml`` with a ``sweep: {file: points.jsonl}`` of N points vs a
    shell script of the same raw ``sbatch --array`` calls (both new processes; the CLI includes
    Python's start-up and imports, see benchmarks/cli_startup.py), alternating likewise.
(3) vs a loop of per-point ``sbatch`` calls, measured on a sample (--loop-sample) and extrapolated
    linearly to N points: speed-up, goal >= 100.
(4) Sweep.status(): Slurm queries per poll and the time of one poll of the last real N-point
    sweep; memory while tracking it (tracemalloc peak of a poll, max RSS); and a poll answered
    with one ``squeue`` row per task (what a sweep whose tasks all started looks like), parsed.
(5) hpcjobs' own work at N points without Slurm (submission answered in process, best of 5), and
    how much of it comes before the first submission (the rest runs beside the ``sbatch`` calls
    in a real one); with ``--baseline-src DIR`` (another hpcjobs tree) also from that tree, in
    child processes alternating with this one's.

Everything is submitted held (--hold) and cancelled at once. In Slurm every array task is a job
record counted against MaxJobCount (30,000 on the dev cluster) until MinJobAge (600 s) after it
ends, cancelled ones too, and the controller is shared: before each round the benchmark counts
the records (the number hpcjobs' "not now" check counts) and waits, up to --wait-s, until both
of its N-point submissions stay within --max-records (default 21,000: two 10,000-point
submissions alive at a time, 9,000 left to everybody else), so that the two run back to back;
rounds after the first wait about MinJobAge for the earlier ones to leave.
Usage: .venv/bin/python benchmarks/sweep_submit.py [--points 10000] [--rounds 2] [--cli-rounds 1]
       [--loop-sample 100] [--max-records 21000] [--baseline-src DIR]
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
from hpcjobs.sweep.plan import ArrayPlan, plan_arrays

ROOT = Path(__file__).resolve().parents[1]
SITE_PATH = ROOT / "site-configs" / "dev-cluster.yaml"
SITE = load_site(SITE_PATH)
IMAGE = "/var/lib/hpcjobs-dev/images/tiny.sif"


def points(n: int) -> list[dict[str, Any]]:
    return [{"args": ["--lr", f"{i * 1e-4:.4f}", "--name", f"run {i}"], "env": {"SEED": str(i)}} for i in range(n)]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def records_now() -> int:
    """The controller's job records, every array task counted (hpcjobs' own count)."""
    return SlurmCli().job_records()


def wait_for_room(size: int, opts: argparse.Namespace) -> int:
    """Wait until ``size`` more records stay within --max-records; the records found then."""
    deadline = time.monotonic() + opts.wait_s
    while True:
        used = records_now()
        if used + size <= opts.max_records:
            return used
        if time.monotonic() > deadline:
            raise SystemExit(f"no room: {used} job records + {size} > --max-records {opts.max_records} after "
                             f"{opts.wait_s} s")  # fmt: skip
        print(f"    waiting for room: {used} job records + {size} > {opts.max_records} (MinJobAge)", flush=True)
        time.sleep(20)


def sbatch(script: str, cwd: Path, *extra: str) -> str:
    r = subprocess.run(["sbatch", "--parsable", "--hold", *extra], input=script, capture_output=True, text=True,
                       cwd=cwd, check=True)  # fmt: skip
    return r.stdout.strip().split(";")[0]


def scancel(ids: list[str]) -> None:
    if ids:
        subprocess.run(["scancel", *ids], check=False)


class InProcess:
    """Answers submissions in process: hpcjobs' own work, without Slurm."""

    runner = SubprocessRunner()  # what would ask Slurm: this host's (so the limits may be kept)

    def __init__(self) -> None:
        self.n = 0
        self.first_at: float | None = None  # perf_counter() of the first submission: own work before it

    def config_limits(self) -> tuple[int, int, bool]:
        return 1001, 100_000, False

    def array_limits(self, qos: str | None = None, config: tuple[int, int, bool] | None = None) -> ArrayLimits:
        got = config if config is not None else self.config_limits()
        return ArrayLimits(got[0], got[1])

    def job_records(self) -> int:
        return 0

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        self.n += 1
        if self.first_at is None:
            self.first_at = time.perf_counter()
        return str(10_000 + self.n)


def read_points_file(n: int, work: Path) -> float:
    """(5) Best of 5 readings of a .jsonl points file of ``n`` points (what the CLI adds before submitting)."""
    from hpcjobs.sweep.points import load_points_file

    path = work / "own.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in points(n)))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        load_points_file(path)
        times.append(time.perf_counter() - t0)
    return min(times)


def own_work(n: int, work: Path) -> tuple[float, float]:
    """(5) Best of 5 in-process submissions of ``n`` points (no Slurm), whichever hpcjobs is imported:
    its time, and the time before its first submission (what a real one does before its first sbatch)."""
    job = ContainerJob(image=IMAGE, command=["train"], extra_sbatch=["--hold"])
    pts = points(n)
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(work / "cache-own")  # InProcess's limits are not the cluster's
    try:
        job.map(pts[:2], SITE, scheduler=InProcess(), cwd=work)  # type: ignore[arg-type]  # imports
        times = []
        for _ in range(5):
            sched = InProcess()
            t0 = time.perf_counter()
            job.map(pts, SITE, scheduler=sched, cwd=work)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t0, (sched.first_at or t0) - t0))
    finally:
        os.environ["XDG_CACHE_HOME"] = saved or ""
    return min(times)


def spans_of(rec: RecordingRunner, t0: float) -> dict[str, Any]:
    """Where one hpcjobs submission waited on Slurm (ms from its start)."""
    count = [s for s in rec.spans if s[0].argv[0] == "squeue"]
    sb = sorted((s for s in rec.spans if s[0].argv[0] == "sbatch"), key=lambda s: s[1])
    return {
        "calls": [" ".join(c.argv[:3]) for c, _, _ in sorted(rec.spans, key=lambda s: s[1])],
        "count_ms": [(1000 * (a - t0), 1000 * (b - t0)) for _, a, b in count],
        "first_sbatch_ms": 1000 * (sb[0][1] - t0) if sb else None,
        "sbatch_ms": sum(1000 * (b - a) for _, a, b in sb),  # summed: more than their wall when they overlap
        "sbatch_wall_ms": 1000 * (max(b for _, _, b in sb) - sb[0][1]) if sb else None,  # first start, last answer
    }


def api_rounds(n: int, opts: argparse.Namespace, work: Path, plans: list[ArrayPlan]) -> list[dict[str, Any]]:
    """(1) ContainerJob.map vs raw sbatch --array, in alternating order."""
    job = ContainerJob(image=IMAGE, command=["train"], extra_sbatch=["--hold"])
    raw_script = render(resolve(ContainerJob(image=IMAGE, command=["train"], output=str(work / "%A_%a.out")), SITE))
    pts = points(n)
    job.map(pts[:2], SITE, cwd=work).cancel()  # untimed: imports, the first sbatch, the limits kept
    scancel([sbatch(raw_script, work, "--array=0-1")])
    out: list[dict[str, Any]] = []
    for r in range(opts.rounds):
        row: dict[str, Any] = {"round": r + 1}
        wait_for_room(2 * n, opts)  # both sides of the round, back to back
        for side in ("raw", "api") if (r + opts.api_first) % 2 == 0 else ("api", "raw"):
            row[f"{side}_records"] = wait_for_room(n, opts)
            row[f"{side}_load"] = load_average()
            if side == "raw":
                t0 = time.perf_counter()
                ids = [sbatch(raw_script, work, f"--array={p.array_spec(None)}") for p in plans]
                row["raw_s"] = time.perf_counter() - t0
                scancel(ids)
            else:
                rec = RecordingRunner()  # passes every call on to Slurm, timing it
                t0 = time.perf_counter()
                sw = job.map(pts, SITE, runner=rec, cwd=work)
                row["api_s"] = time.perf_counter() - t0
                if r == opts.rounds - 1:
                    tracking(str(sw.directory))  # (4) while its tasks are pending (held), then cancelled
                sw.cancel()
                row.update(spans_of(rec, t0))
        out.append(row)
        print(f"(1) round {r + 1}: {n} points in {len(plans)} arrays: raw sbatch --array {row['raw_s'] * 1000:.0f} ms "
              f"(records before {row['raw_records']}, load {row['raw_load']}), ContainerJob.map "
              f"{row['api_s'] * 1000:.0f} ms (records before {row['api_records']}, load {row['api_load']}): "
              f"ratio {row['api_s'] / row['raw_s']:.2f}", flush=True)  # fmt: skip
        count = ", ".join(f"{a:.0f}-{b:.0f}" for a, b in row["count_ms"])
        print(f"    hpcjobs: job-record count (squeue) ran {count} ms, first sbatch at "
              f"{row['first_sbatch_ms']:.0f} ms, its {len(plans)} sbatch calls {row['sbatch_ms']:.0f} ms summed, "
              f"{row['sbatch_wall_ms']:.0f} ms from the first's start to the last's answer (its total "
              f"÷ that span: {row['api_s'] * 1000 / row['sbatch_wall_ms']:.2f}); "
              f"Slurm calls: {', '.join(row['calls'])}", flush=True)  # fmt: skip
    return out


def cli_rounds(n: int, opts: argparse.Namespace, work: Path, plans: list[ArrayPlan]) -> list[dict[str, Any]]:
    """(2) hpcjobs submit job.yaml (a sweep: of n points) vs a shell script of the raw sbatch calls."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    exe = Path(sys.executable).with_name("hpcjobs")
    hpcjobs = [str(exe)] if exe.exists() else [sys.executable, "-m", "hpcjobs"]
    (work / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points(n)))
    (work / "warm.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points(2)))
    body = f"image: {IMAGE}\ncommand: [train]\nextra_sbatch: [--hold]\n"
    (work / "job.yaml").write_text(body + "sweep:\n  file: points.jsonl\n")
    (work / "warm.yaml").write_text(body + "sweep:\n  file: warm.jsonl\n")
    raw_script = work / "raw.sh"
    raw_script.write_text(render(resolve(ContainerJob(image=IMAGE, command=["train"],
                                                      output=str(work / "%A_%a.out")), SITE)))  # fmt: skip
    lines = [f"sbatch --parsable --hold --array={p.array_spec(None)} {raw_script}" for p in plans]
    (work / "raw-cli.sh").write_text("set -e\n" + "\n".join(lines) + "\n")

    def submit_cli(yaml: str) -> float:
        t0 = time.perf_counter()
        r = subprocess.run([*hpcjobs, "submit", "--site", str(SITE_PATH), yaml], capture_output=True, text=True,
                           cwd=work, env=env, check=True)  # fmt: skip
        took = time.perf_counter() - t0
        Sweep.load(r.stdout.strip()).cancel()
        return took

    def submit_raw() -> float:
        t0 = time.perf_counter()
        r = subprocess.run(["bash", str(work / "raw-cli.sh")], capture_output=True, text=True, cwd=work, env=env,
                           check=True)  # fmt: skip
        took = time.perf_counter() - t0
        scancel([line.split(";")[0] for line in r.stdout.split()])
        return took

    submit_cli("warm.yaml")  # untimed: bytecode, the validated site config and the limits kept
    out: list[dict[str, Any]] = []
    for r in range(opts.cli_rounds):
        row: dict[str, Any] = {"round": r + 1}
        wait_for_room(2 * n, opts)  # both sides of the round, back to back
        for side in ("raw", "cli") if (r + opts.api_first) % 2 == 0 else ("cli", "raw"):
            row[f"{side}_records"] = wait_for_room(n, opts)
            row[f"{side}_load"] = load_average()
            row[f"{side}_s"] = submit_raw() if side == "raw" else submit_cli("job.yaml")
        out.append(row)
        print(f"(2) CLI round {r + 1}: {n} points: bash script of {len(plans)} sbatch --array "
              f"{row['raw_s'] * 1000:.0f} ms (records before {row['raw_records']}, load {row['raw_load']}), "
              f"hpcjobs submit job.yaml {row['cli_s'] * 1000:.0f} ms (records before {row['cli_records']}, "
              f"load {row['cli_load']}): ratio {row['cli_s'] / row['raw_s']:.2f}", flush=True)  # fmt: skip
    return out


def squeue_answer(sw: Sweep) -> RecordingRunner:
    """A runner answering squeue with one PENDING row per task of the sweep's arrays."""
    rows = []
    for entry in sw.record.arrays:
        for t in range(entry.plan.count):
            rows.append(SEP.join([str(int(entry.job_id) + t), entry.job_id, str(t), "PENDING", "0", "JobHeldUser",
                                  "u", "/w", "(null)", "/w/slurm-%A.out", "tiny", "0:00"]) + SEP)  # fmt: skip
    text = "\n".join(rows) + "\n"
    return RecordingRunner(answer=lambda c: Completed(c.argv, 0, text, "") if c.argv[0] == "squeue" else None)


def tracking(directory: str) -> None:
    """(4) status() of a real sweep whose tasks are pending: queries per poll, time, memory; and a
    poll answered with N rows. (Once its points have ended, a poll asks Slurm nothing.)"""
    fake = squeue_answer(Sweep.load(directory))
    real = RecordingRunner()
    tracked = Sweep.load(directory, scheduler=SlurmCli(real))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        st = tracked.status()
        times.append(time.perf_counter() - t0)
    per_poll = len(real.calls) // 3
    tracemalloc.start()  # a separate poll: tracing slows Python several times
    tracked.status()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"(4) status() of the real {len(st.points)}-point sweep (held): {per_poll} Slurm "
          f"quer{'y' if per_poll == 1 else 'ies'} per poll ({', '.join(c.argv[0] for c in real.calls[:per_poll])}), "
          f"{min(times) * 1000:.0f} ms a poll (best of 3), tracemalloc peak {peak / 2**20:.1f} MiB")  # fmt: skip
    rows = Sweep.load(directory, scheduler=SlurmCli(fake))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        st = rows.status()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    rows.status()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    files = [f for f in Path(directory).rglob("*") if f.is_file()]
    print(f"    a poll answered with one squeue row per task ({len(st.points)} rows parsed): "
          f"{min(times) * 1000:.0f} ms (best of 3), tracemalloc peak {peak / 2**20:.1f} MiB; max RSS of this "
          f"process {rss_mb:.0f} MiB; the sweep directory: {len(files)} files, "
          f"{sum(f.stat().st_size for f in files) / 2**20:.1f} MiB")  # fmt: skip


def compare_own(opts: argparse.Namespace) -> None:
    """(5) before/after: children alternate between the baseline tree and this one, no Slurm."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    trees = {"before": {**env, "PYTHONPATH": str(opts.baseline_src.resolve())}, "after": env}
    got: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for _ in range(opts.pairs):
        for tag, child_env in trees.items():
            out = subprocess.run([sys.executable, __file__, "--points", str(opts.points), "--only-own"], env=child_env,
                                 cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)  # fmt: skip
            got[tag].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for key, what in (("own_s", "own work of ContainerJob.map"), ("first_s", "of which before its first submission"),
                      ("file_s", "reading the .jsonl points file")):
        print(f"(5) {what} at {opts.points} points, no Slurm (best of 5 per child, {opts.pairs} children per tree, "
              f"alternating): before {' / '.join(f'{r[key] * 1000:.1f}' for r in got['before'])} ms, after "
              f"{' / '.join(f'{r[key] * 1000:.1f}' for r in got['after'])} ms")  # fmt: skip
    print(f"    before: {got['before'][0]['hpcjobs']}; after: {got['after'][0]['hpcjobs']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of (1), each one raw and one hpcjobs submission")
    ap.add_argument("--cli-rounds", type=int, default=1, help="rounds of (2)")
    ap.add_argument("--api-first", type=int, choices=(0, 1), default=0, help="1: hpcjobs before raw in round 1")
    ap.add_argument("--loop-sample", type=int, default=100)
    ap.add_argument("--max-records", type=int, default=21_000, help="job records this benchmark may bring about")
    ap.add_argument("--wait-s", type=float, default=900, help="the longest wait for room before a submission")
    ap.add_argument("--baseline-src", type=Path, help="another hpcjobs source tree: (5) before/after")
    ap.add_argument("--pairs", type=int, default=3, help="with --baseline-src: children per tree")
    ap.add_argument("--only-own", action="store_true", help=argparse.SUPPRESS)  # a child of --baseline-src
    opts = ap.parse_args()
    n = opts.points
    work = Path(tempfile.mkdtemp(prefix="hpcjobs-bench-sweep-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # the per-user sweep index: not the real one
    try:
        if opts.only_own:
            import hpcjobs

            own, first = own_work(n, work)
            print(json.dumps({"own_s": own, "first_s": first, "file_s": read_points_file(n, work),
                              "hpcjobs": str(Path(hpcjobs.__file__).parent)}))  # fmt: skip
            return
        limits = SlurmCli().array_limits()
        if n + opts.loop_sample > opts.max_records:
            raise SystemExit(f"--points {n} does not fit in --max-records {opts.max_records}")
        plans = plan_arrays(range(n), limits, contiguous=True)
        print(f"MaxArraySize {limits.max_array_size}, MaxJobCount {limits.max_job_count}; job records now "
              f"{records_now()}; load average {load_average()}; {n} points = {len(plans)} arrays", flush=True)
        (own, first), from_file = own_work(n, work), read_points_file(n, work)
        print(f"(5) hpcjobs' own work at {n} points, no Slurm (best of 5): {own * 1000:.1f} ms, {first * 1000:.1f} ms "
              f"of it before the first submission; reading them from a .jsonl file (the CLI): "
              f"{from_file * 1000:.1f} ms", flush=True)  # fmt: skip
        if opts.baseline_src:
            compare_own(opts)
        api = api_rounds(n, opts, work, plans) if opts.rounds else []
        if api:
            ratios = [r["api_s"] / r["raw_s"] for r in api]
            print(f"(1) ContainerJob.map / raw sbatch --array, {n} points: "
                  f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}; goal <= 1.5)")
        cli = cli_rounds(n, opts, work, plans) if opts.cli_rounds else []
        if cli:
            ratios = [r["cli_s"] / r["raw_s"] for r in cli]
            print(f"(2) hpcjobs submit / shell script of raw sbatch, {n} points: "
                  f"{', '.join(f'{x:.2f}' for x in ratios)}")  # fmt: skip

        m = min(opts.loop_sample, n)
        if m == 0:
            return
        wait_for_room(m, opts)
        single = render(resolve(ContainerJob(image=IMAGE, command=["train"], output=str(work / "%j.out")), SITE))
        loop_ids: list[str] = []
        t0 = time.perf_counter()
        for _ in range(m):
            loop_ids.append(sbatch(single, work))
        per = (time.perf_counter() - t0) / m
        scancel(loop_ids)
        if api:
            api_s = statistics.median(r["api_s"] for r in api)
            print(f"(3) loop of sbatch: {m} calls, {per * 1000:.1f} ms each; extrapolated to {n} points "
                  f"{per * n:.1f} s: ContainerJob.map ({api_s * 1000:.0f} ms, median of (1)) is "
                  f"{per * n / api_s:.0f}x faster (goal >= 100)")  # fmt: skip
        print(f"job records at the end {records_now()}; load average {load_average()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
