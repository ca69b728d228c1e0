"""Start-up cost of the hpcjobs CLI against raw sbatch, measured in the same run on the dev cluster.

Each round runs, one right after the other: raw ``sbatch script``, ``hpcjobs submit job.yaml`` and
``hpcjobs render job.yaml`` (and, with ``--baseline-src DIR``, the same two hpcjobs commands from
another source tree, e.g. ``git archive main hpcjobs | tar -x -C DIR``), so that every variant sees
the same machine load, and ``python -c pass`` and the "pydantic floor" (``python -c`` importing
click, yaml and pydantic and validating a one-field model: what any CLI that validates with pydantic
pays before doing anything). Medians over the rounds; overhead = hpcjobs submit - raw sbatch.

Bytecode caches are on (PYTHONDONTWRITEBYTECODE is removed from the children's environment) and
one untimed round warms them, as on a user's machine. The validated site config cache
(``~/.cache/hpcjobs/site-validated``) is warm after that round too; ``--no-site-cache`` measures
without it. Jobs are submitted held and cancelled at the end.

Usage: .venv/bin/python benchmarks/cli_startup.py [--runs 31] [--baseline-src DIR] [--phases]
``--phases`` also prints where one in-process ``hpcjobs submit`` spends its time (imports, models,
validation, resolve, render), the table in docs/benchmarks.md.
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

PHASES = r"""
import sys, time
t = [time.process_time()]; names = []
def mark(n): t.append(time.process_time()); names.append(n)
import click; mark("import click")
import hpcjobs.cli; mark("import hpcjobs.cli (commands)")
import gc; gc.disable()  # as hpcjobs.cli.main does for render and submit
import yaml; mark("import yaml")
import pydantic; from pydantic import BaseModel, Field, ConfigDict; mark("import pydantic (+ BaseModel)")
import hpcjobs.spec, hpcjobs.api; mark("import the job-spec model classes")
import hpcjobs.config.site, hpcjobs.config.loader, hpcjobs.jobfile, hpcjobs.config.sources
mark("import the site-config model classes, loader")
from hpcjobs.config.sources import load_site
site = load_site(sys.argv[2]); mark("read the site config (validated cache)")
from hpcjobs.config.loader import load_yaml_mapping, read_text
from pathlib import Path
data = load_yaml_mapping(read_text(Path(sys.argv[1]), "job file"), sys.argv[1]); mark("read + parse the job file")
import pydantic.plugin._loader as pl; pl.get_plugins()
mark("pydantic's plugin lookup (imports importlib.metadata)")
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
for n, a, b in zip(names, t, t[1:]): print(f"{n:56s} {1000 * (b - a):6.1f}")
print(f"{'total (CPU; the interpreter start is not included)':56s} {1000 * (t[-1] - t[0]):6.1f}")
"""

# The floor for any CLI that parses YAML and validates with pydantic: the same imports as hpcjobs'
# hot path and one one-field model validated (which builds a validator and so runs pydantic's
# plugin lookup), nothing else.
FLOOR = "import click, yaml, pydantic\nclass M(pydantic.BaseModel):\n    a: int\nM(a=1)\n"


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--baseline-src", type=Path, help="another hpcjobs source tree (holding hpcjobs/) to compare")
    ap.add_argument("--no-site-cache", action="store_true", help="validate the site config on every call")
    ap.add_argument("--phases", action="store_true", help="also print the in-process phase table")
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
                                text=True, env=env, check=True, cwd=work).stdout
        script_path = work / "job.sh"
        script_path.write_text(script)

        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "raw sbatch": (["sbatch", "--parsable", str(script_path)], env),
            "hpcjobs submit": ([*hpcjobs, "submit", "--site", str(SITE_PATH), str(job_yaml)], env),
            "hpcjobs render": ([*hpcjobs, "render", "--site", str(SITE_PATH), str(job_yaml)], env),
            "python -c pass": ([python, "-c", "pass"], env),
            "pydantic floor": ([python, "-c", FLOOR], env),
        }
        if opts.baseline_src:
            # cwd is `work`, so the baseline tree on PYTHONPATH comes before the installed hpcjobs
            base_env = {**env, "PYTHONPATH": str(opts.baseline_src.resolve())}
            variants["baseline submit"] = (variants["hpcjobs submit"][0], base_env)
            variants["baseline render"] = (variants["hpcjobs render"][0], base_env)
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for round_no in range(opts.runs + 1):
            for name, (argv, child_env) in variants.items():
                ms, cpu_ms, out = run_ms(argv, child_env, work)
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
        print(f"hpcjobs submit - raw sbatch: {med['hpcjobs submit'] - med['raw sbatch']:.1f} ms wall (goal <= 150)")
        print(f"hpcjobs render:              {med['hpcjobs render']:.1f} ms wall (goal <= 150)")
        print(f"CPU: submit - raw sbatch {med_cpu['hpcjobs submit'] - med_cpu['raw sbatch']:.1f} ms, "
              f"render {med_cpu['hpcjobs render']:.1f} ms; pydantic floor (click + yaml + pydantic + one "
              f"one-field model) {med_cpu['pydantic floor']:.1f} ms, so hpcjobs' own part of render is "
              f"{med_cpu['hpcjobs render'] - med_cpu['pydantic floor']:.1f} ms")
        if opts.baseline_src:
            print(f"baseline submit - raw sbatch: {med['baseline submit'] - med['raw sbatch']:.1f} ms wall; "
                  f"baseline render: {med['baseline render']:.1f} ms wall")
            print(f"CPU: baseline submit - raw sbatch "
                  f"{med_cpu['baseline submit'] - med_cpu['raw sbatch']:.1f} ms, "
                  f"baseline render {med_cpu['baseline render']:.1f} ms")
        if opts.phases:
            print(f"\nphases of one in-process submit (CPU ms, median of {PHASE_RUNS} processes, bytecode "
                  "cached, site cache warm):")
            rows: dict[str, list[float]] = {}
            for _ in range(PHASE_RUNS):
                out = subprocess.run([python, "-c", PHASES, str(job_yaml), str(SITE_PATH)], env=env, cwd=work,
                                     check=True, capture_output=True, text=True).stdout
                for line in out.splitlines():
                    label, _, value = line.rpartition(" ")
                    rows.setdefault(label.rstrip(), []).append(float(value))
            for label, values in rows.items():
                print(f"  {label:56s} {statistics.median(values):6.1f}")
    finally:
        for k in range(0, len(ids), 500):
            subprocess.run(["scancel", *[i for i in ids[k : k + 500] if i]], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
