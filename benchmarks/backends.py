"""The two scheduler backends side by side, in one run on the dev cluster (real pyslurm needed).

1. Submission, throughput and fidelity: N held jobs through ``sbatch`` (what both backends use) and
   through pyslurm's own ``JobSubmitDescription`` (``load_sbatch_options`` + ``submit``, the way the
   pyslurm backend used to submit). Fidelity: a script ``render`` writes (quoted name with ``#``,
   ``--partition``, ``--time=5``, ``%x`` in the output path) through each, compared field by field
   with what Slurm recorded.
2. ``status()`` of N held jobs: CLI (one ``squeue``) vs pyslurm (one ``Jobs.load()``), polls
   interleaved so that both see the same queue; ratio pyslurm / CLI.
3. ``wait()`` on M short jobs: one waiter per backend, in two processes started together on the
   same jobs, same poll interval: wall time, CPU time of the wait (own + children; interpreter
   start and imports excluded), processes started.

Every job submitted is cancelled at the end. Prints numbers; asserts nothing about time.

    .venv/bin/python benchmarks/backends.py [--n 1000] [--polls 5] [--wait-jobs 100] [--submit-n 100]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpcjobs.runner import RecordingRunner  # noqa: E402
from hpcjobs.schedulers import describe_backend  # noqa: E402
from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend  # noqa: E402
from hpcjobs.schedulers.slurm_cli import SlurmCli, scontrol_fields  # noqa: E402

HELD = "#!/bin/bash\n#SBATCH --hold\n#SBATCH -t 00:01:00\n#SBATCH -J hpcjobs-bench\ntrue\n"
# what render writes for `name: 'a b #c'`, `time_min: 5`, `gpus: 1`, `output: '%x-%j.out'` (held here)
RENDERED = ('#!/bin/bash\n#SBATCH --job-name="a b #c"\n#SBATCH --partition=gpu\n#SBATCH --gpus=1\n'
            "#SBATCH --time=5\n#SBATCH --output=%x-%j.out\n#SBATCH --hold\necho $SLURM_JOB_NAME\n")  # fmt: skip
FIELDS = ("JobName", "Partition", "TimeLimit", "StdOut", "TresPerJob")
# one #SBATCH feature at a time, each fine through sbatch
VARIANTS = {
    "quoted name with '#'": '#!/bin/bash\n#SBATCH --hold\n#SBATCH --job-name="a b #c"\ntrue\n',
    "--partition=gpu": "#!/bin/bash\n#SBATCH --hold\n#SBATCH --partition=gpu\ntrue\n",
    "--time=5": "#!/bin/bash\n#SBATCH --hold\n#SBATCH --time=5\ntrue\n",
    "--gpus-per-node=1": "#!/bin/bash\n#SBATCH --hold\n#SBATCH --gpus-per-node=1\ntrue\n",
    "no -J (a script on stdin)": "#!/bin/bash\n#SBATCH --hold\ntrue\n",
}
# runs: where does %x put the output, and does the job see SLURM_JOB_NAME?
NAMED = "#!/bin/bash\n#SBATCH -t 00:01:00\n#SBATCH -J named\n#SBATCH -o %x-%j.out\necho name=$SLURM_JOB_NAME\n"

WAITER = """
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[3])
from hpcjobs.runner import RecordingRunner
from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend
from hpcjobs.schedulers.slurm_cli import SlurmCli
runner = RecordingRunner()
sched = SlurmCli(runner) if sys.argv[1] == "cli" else PyslurmBackend(runner)
ids = sys.argv[2].split(",")
polls = [0]
real_status = sched.status
def counted(job_ids):
    polls[0] += 1
    return real_status(job_ids)
sched.status = counted
def cpu():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
sched.cluster_version()
runner.calls.clear()
c0, t0 = cpu(), time.perf_counter()
st = sched.wait(ids, poll_s=float(sys.argv[4]), timeout_s=600)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "polls": polls[0], "processes": len(runner.calls),
                  "cpu_s": cpu() - c0,
                  "done": sum(1 for s in st.values() if s.is_terminal)}))
"""


def ms(values: Sequence[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms (min {min(values) * 1000:.1f})"


def pyslurm_submit(mod: Any, script: str, workdir: str) -> str:
    path = Path(workdir) / f"script-{time.monotonic_ns()}.sh"
    path.write_text(script)
    desc = mod.JobSubmitDescription(script=str(path), working_directory=workdir)
    desc.load_sbatch_options()
    return str(desc.submit())


def recorded(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    fields = scontrol_fields(out.strip())
    return {k: fields.get(k, "") for k in FIELDS}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=1000, help="held jobs for the status benchmark")
    ap.add_argument("--polls", type=int, default=5, help="status() polls per backend")
    ap.add_argument("--wait-jobs", type=int, default=100, help="short jobs to wait on")
    ap.add_argument("--poll-s", type=float, default=0.5, help="wait() poll interval")
    ap.add_argument("--submit-n", type=int, default=100, help="jobs per submission path")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cancel our jobs (finally) when stopped

    import pyslurm

    cli = SlurmCli()
    print(f"auto backend: {describe_backend()}")
    print(f"slurm {cli.cluster_version()}, pyslurm {pyslurm.__version__}")
    ids: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hpcjobs-bench-") as workdir:
        os.chmod(workdir, 0o755)
        try:
            # ------------------------------------------------------------ 1. submission
            t_sbatch: list[float] = []
            t_pyslurm: list[float] = []
            for _ in range(args.submit_n):  # interleaved: both see the same queue length
                t0 = time.perf_counter()
                ids.append(cli.submit(HELD, cwd=workdir))
                t_sbatch.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ids.append(pyslurm_submit(pyslurm, HELD, workdir))
                t_pyslurm.append(time.perf_counter() - t0)
            print(f"\nsubmit ({args.submit_n} each): sbatch {ms(t_sbatch)}, pyslurm {ms(t_pyslurm)}; "
                  f"ratio pyslurm/sbatch {statistics.median(t_pyslurm) / statistics.median(t_sbatch):.2f}")  # fmt: skip
            via_sbatch = cli.submit(RENDERED, cwd=workdir)
            ids.append(via_sbatch)
            want = recorded(via_sbatch)
            print(f"rendered script via sbatch: {want}")
            try:
                via_pyslurm = pyslurm_submit(pyslurm, RENDERED, workdir)
                ids.append(via_pyslurm)
                got = recorded(via_pyslurm)
                wrong = {k: got[k] for k in FIELDS if got[k] != want[k]}
                print(f"rendered script via pyslurm: {len(FIELDS) - len(wrong)}/{len(FIELDS)} fields as sbatch; "
                      f"differs: {wrong}")  # fmt: skip
            except Exception as exc:  # what a user saw: the submission itself fails
                print(f"rendered script via pyslurm: refused: {type(exc).__name__}: {exc}")
            for label, text in VARIANTS.items():
                ids.append(cli.submit(text, cwd=workdir))
                want = recorded(ids[-1])
                try:
                    ids.append(pyslurm_submit(pyslurm, text, workdir))
                except Exception as exc:
                    print(f"  {label}: sbatch ok; pyslurm refused: {type(exc).__name__}: {exc}")
                    continue
                got = recorded(ids[-1])
                wrong = {k: (got[k], want[k]) for k in FIELDS
                         if got[k].replace(ids[-1], "%j") != want[k].replace(ids[-2], "%j")}  # fmt: skip
                verdict = f"differs (pyslurm, sbatch): {wrong}" if wrong else "same fields"
                print(f"  {label}: sbatch ok; pyslurm {verdict}")
            named = pyslurm_submit(pyslurm, NAMED, workdir)
            ids.append(named)
            wait_for = time.monotonic() + 120
            while time.monotonic() < wait_for and not list(Path(workdir).glob(f"*-{named}.out")):
                time.sleep(0.2)
            time.sleep(1)
            files = sorted(p.name for p in Path(workdir).glob(f"*-{named}.out"))
            texts = [(Path(workdir) / f).read_text().strip() for f in files]
            record = recorded(named)["StdOut"].rsplit("/", 1)[-1]
            print(f"  -J named -o %x-%j.out via pyslurm: Slurm records {record!r}, "
                  f"the node wrote {files} saying {texts}")

            # ------------------------------------------------------------ 2. status of N jobs
            sample = ids[: 2 * args.submit_n]  # the held jobs of part 1
            while len(sample) < args.n:
                sample.append(cli.submit(HELD, cwd=workdir))
                ids.append(sample[-1])
            sample = sample[: args.n]
            counting = RecordingRunner()
            backends = {"cli": SlurmCli(counting), "pyslurm": PyslurmBackend(counting)}
            times: dict[str, list[float]] = {k: [] for k in backends}
            procs: dict[str, int] = {}
            for _ in range(max(1, args.polls)):
                for name, sched in backends.items():
                    counting.calls.clear()
                    t0 = time.perf_counter()
                    st = sched.status(sample)
                    times[name].append(time.perf_counter() - t0)
                    procs[name] = len(counting.calls)
                    assert all(st[j].state.name == "PENDING" for j in sample), name
            print(f"\nstatus of {len(sample)} held jobs ({args.polls} polls each, interleaved):")
            for name in backends:
                print(f"  {name:8s} {ms(times[name])}, {procs[name]} process(es) per poll")
            ratio = statistics.median(times["pyslurm"]) / statistics.median(times["cli"])
            print(f"  ratio pyslurm/cli: {ratio:.2f}")
        finally:
            if ids:
                cli.cancel(ids)

        # ------------------------------------------------------------ 3. wait on M jobs
        short = "#!/bin/bash\n#SBATCH -t 1\n#SBATCH -J hpcjobs-bench-wait\nsleep 1\n"
        wait_ids = [cli.submit(short, cwd=workdir) for _ in range(args.wait_jobs)]
        try:
            joined = ",".join(wait_ids)
            waiters = {
                name: subprocess.Popen([sys.executable, "-c", WAITER, name, joined, str(ROOT), str(args.poll_s)],
                                       stdout=subprocess.PIPE, text=True)
                for name in ("cli", "pyslurm")
            }  # fmt: skip
            results = {name: json.loads(p.communicate(timeout=900)[0]) for name, p in waiters.items()}
        finally:
            cli.cancel(wait_ids)
        print(f"\nwait on {args.wait_jobs} jobs (sleep 1 each; both waiters at once, poll {args.poll_s} s):")
        for name, r in results.items():
            print(f"  {name:8s} wall {r['wall_s']:.1f} s, {r['polls']} polls, {r['processes']} processes, "
                  f"CPU {r['cpu_s']:.2f} s, {r['done']} ended")  # fmt: skip
        print(f"  CPU ratio pyslurm/cli: {results['pyslurm']['cpu_s'] / results['cli']['cpu_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
