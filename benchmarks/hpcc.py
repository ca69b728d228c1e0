"""A real MPI workload bare vs through hpcjobs: Debian's hpcc (HPL, DGEMM, STREAM), 2 ranks.

Run as root on the dev cluster: .venv/bin/python benchmarks/hpcc.py [--runs 5] [--launch-runs 20] [--n 2000]

* The image is issue 14's recipe, built once by ``scripts/dev-cluster hpcc-image`` (stamp-cached;
  it also installs the same hpcc on the host for the bare side): mmdebstrap --variant=apt with hpcc,
  openmpi-bin and the host's PMIx package, podman import, podman push to the local registry.
* One real ``ContainerJob.submit()`` of the hpcc job first (untimed): the job hpcjobs submits runs
  and writes a parseable hpccoutf.txt in its job directory.
* Then one batch job (2 tasks) runs the pairs interleaved, alternating which side goes first:
  bare = ``srun --mpi=pmix hpcc``; hpcjobs = the very script hpcjobs renders for the job (``bash``
  runs it inside the allocation, where its ``exec srun`` starts the step). Both export the same
  PMIx environment: the site's ``mpi.env`` (``PMIX_MCA_gds=hash`` on the dev cluster).
  Each step is timed with ``date +%s%N`` around it, and the 1-minute load average is recorded.
* The launch overhead: the same for a 2-task ``true`` step, ``--launch-runs`` pairs.
* What the PMIx environment itself costs: a bare 2-rank MPI_Init/MPI_Finalize step (the dev
  cluster's mpi_hello) with and without the site's ``mpi.env``, ``--init-runs`` pairs.

Prints medians, min/max and the paired ratio (hpcjobs/bare, per pair, then the median).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_PATH = ROOT / "site-configs" / "dev-cluster.yaml"
HPCC_JSON = Path("/var/lib/hpcjobs-dev/images/hpcc.json")
MPI_HELLO = "/var/lib/hpcjobs-dev/build/mpi_hello"  # on the host, built against its OpenMPI by dev-cluster up
RANKS = 2
P, Q = 1, 2  # process grid: 1 x 2 for 2 ranks
NB = 80

# (label, summary key, factor to the unit shown)
METRICS = (
    ("HPL Gflops", "HPL_Tflops", 1000.0),
    ("DGEMM Gflops/rank", "StarDGEMM_Gflops", 1.0),
    ("STREAM triad GB/s/rank", "StarSTREAM_Triad", 1.0),
)


def hpccinf(n: int, nb: int = NB, p: int = P, q: int = Q) -> str:
    """hpcc's input file: HPL's with one problem size N, one block size NB and one P x Q grid
    (the other lines are Debian's example, /usr/share/doc/hpcc/examples/_hpccinf.txt)."""
    return f"""HPLinpack benchmark input file
Innovative Computing Laboratory, University of Tennessee
HPL.out      output file name (if any)
8            device out (6=stdout,7=stderr,file)
1            # of problems sizes (N)
{n}         Ns
1            # of NBs
{nb}           NBs
0            PMAP process mapping (0=Row-,1=Column-major)
1            # of process grids (P x Q)
{p}            Ps
{q}            Qs
16.0         threshold
1            # of panel fact
2            PFACTs (0=left, 1=Crout, 2=Right)
1            # of recursive stopping criterium
4            NBMINs (>= 1)
1            # of panels in recursion
2            NDIVs
1            # of recursive panel fact.
1            RFACTs (0=left, 1=Crout, 2=Right)
1            # of broadcast
1            BCASTs (0=1rg,1=1rM,2=2rg,3=2rM,4=Lng,5=LnM)
1            # of lookahead depth
1            DEPTHs (>=0)
2            SWAP (0=bin-exch,1=long,2=mix)
64           swapping threshold
0            L1 in (0=transposed,1=no-transposed) form
0            U  in (0=transposed,1=no-transposed) form
1            Equilibration (0=no,1=yes)
8            memory alignment in double (> 0)
##### This line (no. 32) is ignored (it serves as a separator). ######
0                      		Number of additional problem sizes for PTRANS
1200 10000 30000        	values of N
0                       	number of additional blocking sizes for PTRANS
40 9 8 13 13 20 16 32 64       	values of NB
"""


def parse_hpccoutf(text: str) -> dict[str, str]:
    """The last run's summary section of an hpccoutf.txt (hpcc appends each run to the file):
    its ``key=value`` lines. Raises ValueError when there is none or the run did not succeed."""
    begin, end = "Begin of Summary section.", "End of Summary section."
    start = text.rfind(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no complete summary section in hpccoutf.txt")
    summary = {}
    for line in text[start + len(begin):stop].splitlines():
        key, sep, value = line.partition("=")
        if sep:
            summary[key.strip()] = value.strip()
    if summary.get("Success") != "1":
        raise ValueError(f"hpcc reports Success={summary.get('Success')!r}")
    return summary


def metrics(summary: dict[str, str]) -> dict[str, float]:
    return {label: float(summary[key]) * factor for label, key, factor in METRICS}


def ensure_image() -> str:
    """The hpcc image's reference (built and pushed on first use; the step is stamp-cached)."""
    subprocess.run([str(ROOT / "scripts" / "dev-cluster"), "hpcc-image"], check=True)
    return str(json.loads(HPCC_JSON.read_text())["ref"])


def scripts(ref: str, entry: list[str], work: Path) -> tuple[str, str]:
    """(bare script, hpcjobs script) running ``entry`` in 2 tasks with the same PMIx environment."""
    from hpcjobs import ContainerJob
    from hpcjobs.api import prepare
    from hpcjobs.config import load_site
    from hpcjobs.render import render, sh_join, sh_quote

    site = load_site(SITE_PATH)
    job = prepare(ContainerJob(image=ref, ntasks=RANKS, entrypoint=entry, time_min=30), site, job_dir=str(work))
    exports = [f"export {k}={sh_quote(v)}" for k, v in job.launch_env.items()]
    bare = "\n".join(["#!/bin/bash", "set -eo pipefail", *exports, "exec " + sh_join(["srun", f"--mpi={job.mpi}",
                                                                                       *entry])]) + "\n"
    return bare, render(job)


def driver(work: Path, pairs: list[tuple[str, int, str, str]], time_min: int) -> str:
    """The batch script that runs each (kind, i, side, script) in its own directory, timed."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "#SBATCH --job-name=hpcc-bench",
        "#SBATCH --partition=cpu",
        f"#SBATCH --ntasks={RANKS}",
        f"#SBATCH --time={time_min}",
        f"#SBATCH --output={work}/driver-%j.out",
        "step() {  # step KIND I SIDE SCRIPT: run SCRIPT in KIND-SIDE-I/, record times and the load",
        '  local dir="$1-$3-$2" load t0 t1 rc',
        '  mkdir -p "$dir" && cp hpccinf.txt "$dir"/ && cd "$dir" || exit 1',
        "  read -r load _ </proc/loadavg",
        '  t0=$(date +%s%N); bash "$4" >step.out 2>&1; rc=$?; t1=$(date +%s%N)',
        '  echo "$1 $2 $3 $t0 $t1 $rc $load" >>../results.txt',
        "  cd .. || exit 1",
        "}",
    ]
    lines += [f"step {q(kind)} {i} {q(side)} {q(script)}" for kind, i, side, script in pairs]
    return "\n".join(lines) + "\n"


def interleaved(kind: str, runs: int, bare: str, hpcjobs: str,
                sides: tuple[str, str] = ("bare", "hpcjobs")) -> list[tuple[str, int, str, str]]:
    """ABBA order: drift in the machine's load falls on both sides alike."""
    out = []
    a, b = (sides[0], bare), (sides[1], hpcjobs)
    for i in range(runs):
        out += [(kind, i, side, script) for side, script in ([a, b] if i % 2 == 0 else [b, a])]
    return out


def init_scripts(mpi_env: dict[str, str], mpi: str) -> tuple[str, str]:
    """(with, without) the site's mpi.env: a bare 2-rank MPI_Init/MPI_Finalize step (the dev
    cluster's mpi_hello), which is what PMIX_MCA_gds changes; ``true`` never starts PMIx."""
    from hpcjobs.render import sh_join, sh_quote

    step = "exec " + sh_join(["srun", f"--mpi={mpi}", MPI_HELLO])
    with_env = [f"export {k}={sh_quote(v)}" for k, v in mpi_env.items()]
    without = [f"unset {' '.join(mpi_env)}"] if mpi_env else []
    head = ["#!/bin/bash", "set -eo pipefail"]
    return "\n".join([*head, *with_env, step]) + "\n", "\n".join([*head, *without, step]) + "\n"


def wait_for(job_id: str, timeout_s: float) -> None:
    from hpcjobs.schedulers import get_scheduler

    st = get_scheduler().wait([job_id], poll_s=2.0, timeout_s=timeout_s)[job_id]
    if st.state.name != "COMPLETED" or st.exit_code not in (0, None):
        raise SystemExit(f"job {job_id} ended {st.state.name} (exit {st.exit_code})")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):9.3f} [{min(values):.3f} .. {max(values):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5, help="hpcc runs per side")
    ap.add_argument("--launch-runs", type=int, default=20, help="2-task `true` steps per side")
    ap.add_argument("--init-runs", type=int, default=20,
                    help="bare 2-rank MPI_Init steps with and without the site's mpi.env (PMIX_MCA_gds)")
    ap.add_argument("--n", type=int, default=2000, help="HPL problem size N")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = ap.parse_args()
    from hpcjobs import ContainerJob
    from hpcjobs.config import load_site
    from hpcjobs.resolve import resolve

    ref = ensure_image()
    work = Path(tempfile.mkdtemp(prefix="hpcc-bench-", dir="/tmp"))  # /tmp: a site bind on the dev cluster
    try:
        (work / "hpccinf.txt").write_text(hpccinf(opts.n))
        # 1. the job as hpcjobs submits it, end to end (also converts the image once, untimed)
        e2e = work / "e2e"
        e2e.mkdir()
        shutil.copy(work / "hpccinf.txt", e2e)
        job = ContainerJob(image=ref, ntasks=RANKS, entrypoint=["hpcc"], time_min=30)
        submitted = job.submit(load_site(SITE_PATH), cwd=e2e)
        wait_for(submitted.job_id, 1800)
        e2e_metrics = metrics(parse_hpccoutf((e2e / "hpccoutf.txt").read_text()))
        print(f"ContainerJob.submit() job {submitted.job_id}: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                            e2e_metrics.items()))
        # 2. the pairs, in one allocation
        paths: dict[str, str] = {}
        for kind, entry in (("hpcc", ["hpcc"]), ("launch", ["true"])):
            bare, hpcjobs = scripts(ref, entry, work)
            for side, text in (("bare", bare), ("hpcjobs", hpcjobs)):
                path = work / f"{kind}-{side}.sh"
                path.write_text(text)
                paths[f"{kind}-{side}"] = str(path)
        pairs = interleaved("hpcc", opts.runs, paths["hpcc-bare"], paths["hpcc-hpcjobs"])
        pairs += interleaved("launch", opts.launch_runs, paths["launch-bare"], paths["launch-hpcjobs"])
        job = resolve(ContainerJob(image=ref, ntasks=RANKS), load_site(SITE_PATH))
        for side, text in zip(("with", "without"), init_scripts(job.launch_env, job.mpi), strict=True):
            (work / f"init-{side}.sh").write_text(text)
        pairs += interleaved("init", opts.init_runs, str(work / "init-with.sh"), str(work / "init-without.sh"),
                             sides=("with", "without"))
        (work / "driver.sh").write_text(driver(work, pairs, time_min=60))
        t0 = time.time()
        r = subprocess.run(["sbatch", "--parsable", str(work / "driver.sh")], capture_output=True, text=True,
                           cwd=work, check=True)
        job_id = r.stdout.strip().split(";")[0]
        wait_for(job_id, 3600)
        print(f"driver job {job_id}: {time.time() - t0:.0f} s; work directory {work}")
        report(work, opts)
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(work: Path, opts: argparse.Namespace) -> None:
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for line in (work / "results.txt").read_text().splitlines():
        kind, i, side, t0, t1, rc, load = line.split()
        if rc != "0":
            raise SystemExit(f"{kind} {side} run {i} failed (exit {rc}): see {work}/{kind}-{side}-{i}/step.out")
        row = {"i": float(i), "wall_s": (int(t1) - int(t0)) / 1e9, "load1": float(load)}
        if kind == "hpcc":
            row.update(metrics(parse_hpccoutf((work / f"{kind}-{side}-{i}" / "hpccoutf.txt").read_text())))
        rows.setdefault((kind, side), []).append(row)
    if ("hpcc", "bare") in rows:
        print(f"\nhpcc, {RANKS} ranks, N={opts.n} NB={NB} P={P} Q={Q}; {opts.runs} runs per side, interleaved "
              "(ABBA); median [min .. max]; ratio = median over pairs of hpcjobs/bare")
        print(f"{'metric':<24} {'bare':>28} {'hpcjobs':>28} {'paired ratio':>14}")
        for label in [m[0] for m in METRICS] + ["wall_s"]:
            b = [r[label] for r in rows[("hpcc", "bare")]]
            c = [r[label] for r in rows[("hpcc", "hpcjobs")]]
            ratio = statistics.median(x / y for x, y in zip(c, b, strict=True))
            print(f"{label:<24} {spread(b):>28} {spread(c):>28} {ratio:>14.3f}")
        for side in ("bare", "hpcjobs"):
            loads = [r["load1"] for r in rows[("hpcc", side)]]
            print(f"load average (1 min) before the {side} hpcc runs: {spread(loads)}")
    pairs = (("launch", ("bare", "hpcjobs"), f"launch overhead, a {RANKS}-task `true` step"),
             ("init", ("without", "with"), f"bare {RANKS}-rank MPI_Init/Finalize step ({MPI_HELLO}), "
                                           "without vs with the site's mpi.env"))  # fmt: skip
    for kind, (first, second), what in pairs:
        if (kind, first) not in rows:
            continue
        a = [r["wall_s"] for r in rows[(kind, first)]]
        b = [r["wall_s"] for r in rows[(kind, second)]]
        loads = [r["load1"] for r in rows[(kind, first)] + rows[(kind, second)]]
        diff = statistics.median(y - x for x, y in zip(a, b, strict=True))
        print(f"\n{what}, {len(a)} per side, interleaved: {first} {spread(a)} s, {second} {spread(b)} s, "
              f"median difference ({second} - {first}) {diff:.3f} s; load average {spread(loads)}")


if __name__ == "__main__":
    sys.exit(main())
