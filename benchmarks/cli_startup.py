"""Start-up cost of the hpcjobs CLI against raw sbatch, measured in the same run on the dev cluster.

Each round runs, one right after the other: raw ``sbatch script``, ``hpcjobs submit job.yaml`` and
``hpcjobs render job.yaml`` as users run them (the warm start on: served by the user's warm server,
hpcjobs.warm), the same two with ``HPCJOBS_WARM=0`` ("cold": a fresh Python process does all of it)
(and, with ``--baseline-src DIR``, the same two hpcjobs commands from
another source tree, e.g. ``git archive main hpcjobs | tar -x -C DIR``), so that every variant sees
the same machine load, and ``python -c pass`` and the "pydantic floor" (``python -c`` importing
click, yaml and pydantic and validating a one-field model: what any CLI that validates with pydantic
pays before doing anything). Medians over the rounds; overhead = hpcjobs submit - raw sbatch.

Bytecode caches are on (PYTHONDONTWRITEBYTECODE is removed from the children's environment) and
one untimed round warms them, as on a user's machine. The validated site config cache
(``~/.cache/hpcjobs/site-validated``) is warm after that round too; ``--no-site-cache`` measures
without it. Jobs are submitted held and cancelled at the end.

A served call's CPU time is the client's plus the server's child's (the server reports what its
children used); the first call of a session, which starts the server, is timed once at the end.

Usage: .venv/bin/python benchmarks/cli_startup.py [--runs 31] [--baseline-src DIR] [--phases] [--callgrind]
``--phases`` also prints where one in-process ``hpcjobs submit`` spends its time (imports, models,
validation, resolve, render), the table in docs/benchmarks.md, for the baseline tree too.
``--callgrind`` also counts the instructions of one process of each variant (valgrind, with
``PYTHONHASHSEED=0``): the load of a shared machine moves wall and CPU time, not instructions.
The last line is the verdict: the medians of ``submit`` - ``sbatch`` and of ``render`` (wall time,
the goal's measure) against 150 ms, with the CPU medians beside them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_PATH = ROOT / "site-configs" / "dev-cluster.yaml"
IMAGE = "/var/lib/hpcjobs-dev/images/tiny.sif"
PHASE_RUNS = 9
GOAL_MS = 150.0

PHASES = r"""
import sys, time
t = [time.process_time()]; names = []
def mark(n): t.append(time.process_time()); names.append(n)
import click; mark("import click")
import hpcjobs.cli; mark("import hpcjobs.cli (commands)")
import gc; gc.disable()  # as hpcjobs.cli.main does for render and submit
import yaml; mark("import yaml")
import pydantic; from pydantic import BaseModel, Field, ConfigDict; mark("import pydantic (+ BaseModel)")
try:  # as the CLI's render and submit start (a tree before hpcjobs.pydantic_plugins: nothing)
    from hpcjobs import plugin_index; plugin_index.hold()
    from hpcjobs.pydantic_plugins import skip_lookup; skip_lookup()
except (ImportError, AttributeError):
    pass
mark("entry-point table; skip pydantic's plugin lookup when none")
import hpcjobs.spec, hpcjobs.api; mark("import the job-spec model classes")
import hpcjobs.config.site, hpcjobs.config.loader, hpcjobs.jobfile, hpcjobs.config.sources
mark("import the site-config model classes, loader")
from hpcjobs.config.sources import load_site
site = load_site(sys.argv[2]); mark("read the site config (validated cache)")
from hpcjobs.config.loader import load_yaml_mapping, read_text
from pathlib import Path
data = load_yaml_mapping(read_text(Path(sys.argv[1]), "job file"), sys.argv[1]); mark("read + parse the job file")
import pydantic.plugin._loader as pl; pl.get_plugins()
mark("pydantic's plugin lookup (importlib.metadata, unless skipped)")
hpcjobs.api.ContainerJob.model_rebuild(); mark("build the job spec's validator")
from hpcjobs.config.loader import validate_model
job = validate_model(hpcjobs.api.ContainerJob, data, sys.argv[1]); mark("validate the job file")
import hpcjobs.plugin_api; mark("import plugin_api (+ pluggy)")
from hpcjobs.resolve import resolve
from hpcjobs.render import render
from hpcjobs import plugins; plugins.plugin_manager(); mark("load the plugins (entry-point table)")
resolved = resolve(job, site); script = render(resolved); mark("resolve + render")
from hpcjobs.api import prepare
from hpcjobs.schedulers import get_scheduler
sched = get_scheduler(); prepared = prepare(job, site, scheduler=sched); mark("host checks, image step, scheduler")
for n, a, b in zip(names, t, t[1:]): print(f"{n:60s} {1000 * (b - a):6.1f}")
print(f"{'total (CPU; the interpreter start is not included)':60s} {1000 * (t[-1] - t[0]):6.1f}")
"""

# The floor for any CLI that parses YAML and validates with pydantic: the same imports as hpcjobs'
# hot path and one one-field model validated (which builds a validator and so runs pydantic's
# plugin lookup), nothing else.
FLOOR = "import click, yaml, pydantic\nclass M(pydantic.BaseModel):\n    a: int\nM(a=1)\n"
# The same with pydantic's plugin lookup skipped as hpcjobs' render and submit skip it (no pydantic
# plugin installed; hpcjobs.pydantic_plugins): the floor hpcjobs itself stands on.
FLOOR_SKIP = "import click, yaml, pydantic\nfrom hpcjobs.pydantic_plugins import skip_lookup\nskip_lookup()\n" + FLOOR


def run_ms(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(wall ms, CPU ms of the child and its children, stdout). CPU time is what the process itself
    costs; it varies far less than wall time on a shared machine whose load comes and goes."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, check=True)
    wall = (time.perf_counter() - t0) * 1000
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000
    return wall, cpu, r.stdout.strip()


def instructions(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Instructions one process runs (callgrind's total; children not traced), and its stdout."""
    # without address space randomization the count repeats to the instruction (dict layouts vary with it)
    no_aslr = ["setarch", os.uname().machine, "-R"] if shutil.which("setarch") else []
    with tempfile.NamedTemporaryFile(prefix="callgrind-", dir=cwd) as out_file:
        r = subprocess.run([*no_aslr, "valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file.name}", *argv],
                           capture_output=True, text=True, cwd=cwd, env={**env, "PYTHONHASHSEED": "0"}, check=True)
        for line in Path(out_file.name).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]), r.stdout.strip()
    raise RuntimeError(f"no instruction count from callgrind for {argv}")


def served_cpu_s(env: dict[str, str], wait: bool = False) -> float:
    """CPU seconds the warm server's children have used so far (0 without a server; cold variants)."""
    if env.get("HPCJOBS_WARM") != "1":
        return 0.0
    from hpcjobs.warm import control

    deadline = time.monotonic() + 60
    while True:
        rows = control.status(env)
        if rows or not wait or time.monotonic() > deadline:
            return sum(float(str(r.get("children_cpu_s", 0))) for r in rows)
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--baseline-src", type=Path, help="another hpcjobs source tree (holding hpcjobs/) to compare")
    ap.add_argument("--no-site-cache", action="store_true", help="validate the site config on every call")
    ap.add_argument("--phases", action="store_true", help="also print the in-process phase table")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count instructions (valgrind --tool=callgrind, PYTHONHASHSEED=0) of one process each")
    opts = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("PYTHONPATH", None)
    if opts.no_site_cache:
        env["HPCJOBS_NO_SITE_CACHE"] = "1"
    work = Path(tempfile.mkdtemp(prefix="hpcjobs-bench-"))
    ids: list[str] = []
    try:
        job_yaml = work / "job.yaml"
        job_yaml.write_text(f"image: {IMAGE}\ncommand: [x]\nextra_sbatch: [--hold]\noutput: {work}/%j.out\n")
        python = sys.executable
        hpcjobs = [python, "-m", "hpcjobs"]
        script = subprocess.run([*hpcjobs, "render", "--site", str(SITE_PATH), str(job_yaml)], capture_output=True,
                                text=True, env={**env, "HPCJOBS_WARM": "0"}, check=True, cwd=work).stdout
        script_path = work / "job.sh"
        script_path.write_text(script)

        warm_dir = work / "warm"
        warm_dir.mkdir(mode=0o700)
        warm_env = {**env, "HPCJOBS_WARM": "1", "HPCJOBS_WARM_DIR": str(warm_dir), "HPCJOBS_WARM_IDLE_S": "600"}
        cold_env = {**env, "HPCJOBS_WARM": "0"}
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "raw sbatch": (["sbatch", "--parsable", str(script_path)], env),
            "hpcjobs submit": ([*hpcjobs, "submit", "--site", str(SITE_PATH), str(job_yaml)], warm_env),
            "hpcjobs render": ([*hpcjobs, "render", "--site", str(SITE_PATH), str(job_yaml)], warm_env),
            "cold submit": ([*hpcjobs, "submit", "--site", str(SITE_PATH), str(job_yaml)], cold_env),
            "cold render": ([*hpcjobs, "render", "--site", str(SITE_PATH), str(job_yaml)], cold_env),
            "python -c pass": ([python, "-c", "pass"], env),
            "pydantic floor": ([python, "-c", FLOOR], env),
            "floor, no lookup": ([python, "-c", FLOOR_SKIP], env),
        }
        if opts.baseline_src:
            # cwd is `work`, so the baseline tree on PYTHONPATH comes before the installed hpcjobs, and
            # its plugins/* sources before the installed (editable) plugins of this tree
            base = opts.baseline_src.resolve()
            plugin_dirs = [d / "src" if (d / "src").is_dir() else d for d in sorted((base / "plugins").glob("*/"))]
            base_env = {**cold_env, "PYTHONPATH": os.pathsep.join(str(d) for d in [base, *plugin_dirs])}
            variants["baseline submit"] = (variants["hpcjobs submit"][0], base_env)
            variants["baseline render"] = (variants["hpcjobs render"][0], base_env)
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for round_no in range(opts.runs + 1):
            if round_no == 1:
                served_cpu_s(warm_env, wait=True)  # the server round 0 started is up
            for name, (argv, child_env) in variants.items():
                before_s = served_cpu_s(child_env)
                ms, cpu_ms, out = run_ms(argv, child_env, work)
                cpu_ms += (served_cpu_s(child_env) - before_s) * 1000
                if name.endswith("submit") or name == "raw sbatch":
                    ids.append(out.split(";")[0])
                if round_no:  # round 0 warms bytecode and the site config cache
                    times[name].append(ms)
                    cpu[name].append(cpu_ms)
        med = {name: statistics.median(v) for name, v in times.items()}
        med_cpu = {name: statistics.median(v) for name, v in cpu.items()}
        load = os.getloadavg()[0]
        print(f"medians of {opts.runs} interleaved rounds, site cache {'off' if opts.no_site_cache else 'on'}, "
              f"load average {load:.1f} on {os.cpu_count()} CPUs:")
        print(f"  {'':16s} {'wall ms':>8s} {'CPU ms':>8s}")
        for name in variants:
            print(f"  {name:16s} {med[name]:8.1f} {med_cpu[name]:8.1f}")
        print(f"CPU: pydantic floor (click + yaml + pydantic + one one-field model) "
              f"{med_cpu['pydantic floor']:.1f} ms ({med_cpu['floor, no lookup']:.1f} with pydantic's plugin lookup "
              f"skipped as hpcjobs skips it), so hpcjobs' own part of a cold render is "
              f"{med_cpu['cold render'] - med_cpu['floor, no lookup']:.1f} ms")
        from hpcjobs.warm import control

        control.stop(warm_env)
        while list(warm_dir.glob("*.sock")):
            time.sleep(0.05)
        first_ms, _, out = run_ms(variants["hpcjobs submit"][0], warm_env, work)  # no server: it starts one
        ids.append(out.split(";")[0])
        print(f"the first submit of a session (no server yet; it starts one in the background): {first_ms:.1f} ms "
              "wall")
        if opts.baseline_src:
            print(f"baseline: submit - raw sbatch {med['baseline submit'] - med['raw sbatch']:.1f} ms wall, "
                  f"{med_cpu['baseline submit'] - med_cpu['raw sbatch']:.1f} ms CPU; render "
                  f"{med['baseline render']:.1f} ms wall, {med_cpu['baseline render']:.1f} ms CPU")
        if opts.phases:
            trees = {"this tree": env}
            if opts.baseline_src:
                trees["baseline"] = variants["baseline render"][1]
            print(f"\nphases of one in-process submit (CPU ms, median of {PHASE_RUNS} processes per tree, "
                  "interleaved, bytecode cached, site cache warm):")
            rows: dict[str, dict[str, list[float]]] = {}
            for _ in range(PHASE_RUNS):
                for tree, tree_env in trees.items():
                    out = subprocess.run([python, "-c", PHASES, str(job_yaml), str(SITE_PATH)], env=tree_env,
                                         cwd=work, check=True, capture_output=True, text=True).stdout
                    for line in out.splitlines():
                        label, _, value = line.rpartition(" ")
                        rows.setdefault(label.rstrip(), {}).setdefault(tree, []).append(float(value))
            print(f"  {'':60s} " + " ".join(f"{tree:>10s}" for tree in trees))
            for label, by_tree in rows.items():
                print(f"  {label:60s} " + " ".join(f"{statistics.median(by_tree[tree]):10.1f}" for tree in trees))
        if opts.callgrind:
            print("\ninstructions of one process (valgrind --tool=callgrind, PYTHONHASHSEED=0; the sbatch "
                  "child not counted):")
            for name, (argv, child_env) in variants.items():
                if name == "raw sbatch":
                    continue
                count, out = instructions(argv, child_env, work)
                if name.endswith("submit"):
                    ids.append(out.split(";")[0])
                print(f"  {name:16s} {count / 1e6:8.1f} M")
        # the verdict the issue asks for: medians of wall time against 150 ms (the goal is wall time
        # on a quiet VM; under load compare CPU time and instructions against a baseline instead)
        over = med["hpcjobs submit"] - med["raw sbatch"]
        print(f"\ncold (HPCJOBS_WARM=0): submit - sbatch {med['cold submit'] - med['raw sbatch']:.1f} ms wall "
              f"({med_cpu['cold submit'] - med_cpu['raw sbatch']:.1f} CPU); render {med['cold render']:.1f} ms wall "
              f"({med_cpu['cold render']:.1f} CPU)")
        print(f"VERDICT (load average {load:.1f}; warm start on, as users run it): submit - sbatch {over:.1f} ms wall "
              f"({med_cpu['hpcjobs submit'] - med_cpu['raw sbatch']:.1f} CPU) "
              f"{'MEETS' if over <= GOAL_MS else 'MISSES'} <= {GOAL_MS:.0f} ms; "
              f"render {med['hpcjobs render']:.1f} ms wall ({med_cpu['hpcjobs render']:.1f} CPU) "
              f"{'MEETS' if med['hpcjobs render'] <= GOAL_MS else 'MISSES'} <= {GOAL_MS:.0f} ms")
    finally:
        from hpcjobs.warm import control

        control.stop({"HPCJOBS_WARM_DIR": str(work / "warm")})
        for k in range(0, len(ids), 500):
            subprocess.run(["scancel", *[i for i in ids[k : k + 500] if i]], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
