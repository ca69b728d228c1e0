"""Local runs: the same job, through the same runtime plugin, on this machine without Slurm.

The launch plan is built exactly as for a batch job, then the batch-only parts are handled
explicitly: ``#SBATCH`` directives are not applied (no allocation: resources and time limits are not
enforced), the launcher is replaced by one local process per task (``SLURM_PROCID``,
``SLURM_LOCALID`` and ``SLURM_NTASKS`` set for each, as srun would), output goes to this terminal
instead of the ``--output`` file, and array jobs and dependencies are refused. The rest — runtime
words, binds, environment, entrypoint semantics, wrappers — is the plan's, rendered by the same
code as the batch script, and each task's exit status is the run's.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcjobs.errors import ConfigError
from hpcjobs.plugin_api import ResolvedJob

Spawn = Callable[..., Any]
"""Starts a process from an argv list (``subprocess.Popen``'s signature, never a shell): the I/O seam
of local runs, which stream the tasks' output instead of capturing it as :class:`~hpcjobs.runner.Runner` does."""


@dataclass(frozen=True)
class LocalResult:
    exit_code: int  # the first failing task's (in rank order), else 0
    task_exit_codes: tuple[int, ...]
    script: str  # what each task ran


def local_job(job: ResolvedJob, runtime: str | None = None) -> ResolvedJob:
    """``job`` made runnable here: a single launch (tasks are started by :func:`run_local`), and
    optionally another runtime than the site's (``--runtime``: Docker on a workstation)."""
    if job.array is not None:
        raise ConfigError(f"array {job.array!r}: array jobs run only under Slurm (run one element with --set)")
    if job.dependency is not None:
        raise ConfigError("a job with a dependency runs only under Slurm")
    changes: dict[str, Any] = {"nodes": 1, "ntasks": 1, "provenance": dict(job.provenance)}
    if runtime is not None and runtime != job.runtime:
        from hpcjobs import plugins

        rt = plugins.get_runtime(runtime)
        changes.update(runtime=runtime, runtime_binary=None)
        changes["provenance"]["runtime"] = "CLI (run --runtime)"
        if job.gpu_flag is not None and job.gpu_flag not in rt.gpu_flags:
            changes["gpu_flag"] = None  # the site's flag is another runtime's; no GPUs are allocated here anyway
        if job.runtime_flags:
            raise ConfigError(
                f"the job's runtime flags {list(job.runtime_flags)} are {job.runtime}'s; they cannot be given to "
                f"{runtime}"
            )
    return dataclasses.replace(job, **changes)


def task_env(rank: int, ntasks: int, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NTASKS=str(ntasks))
    return env


def run_local(
    job: ResolvedJob,
    *,
    ntasks: int,
    cwd: str | None = None,
    spawn: Spawn | None = None,
    env: Mapping[str, str] | None = None,
    tty: bool | None = None,
) -> LocalResult:
    """Run the plan of ``job`` (from :func:`local_job`, image prepared) as ``ntasks`` local tasks.
    ``tty``: whether the tasks' output goes to a terminal (they inherit this process's stdout and
    stderr; stdin is /dev/null); None: look. The runtime sees it as ``job.stdio_tty``."""
    from hpcjobs.render import render

    if tty is None:
        tty = os.isatty(1) or os.isatty(2)
    script = render(dataclasses.replace(job, stdio_tty=tty))
    start = spawn or subprocess.Popen
    base = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="hpcjobs-local-") as tmp:
        path = os.path.join(tmp, "job.sh")
        with open(path, "w", encoding="utf-8") as f:
            f.write(script)
        procs = [
            start(["bash", path], cwd=cwd, env=task_env(rank, ntasks, base), stdin=subprocess.DEVNULL)
            for rank in range(ntasks)
        ]
        codes = tuple(_exit_status(p.wait()) for p in procs)
    failed = [c for c in codes if c != 0]
    return LocalResult(failed[0] if failed else 0, codes, script)


def _exit_status(returncode: int) -> int:
    """A shell's view: a task killed by signal N exits 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def describe_differences(job: ResolvedJob, ntasks: int) -> Sequence[str]:
    """What a local run does not do that the batch job would (printed by ``hpcjobs run --local -v``)."""
    notes = ["#SBATCH directives are not applied: no allocation, resources and time limit not enforced"]
    if ntasks > 1:
        notes.append(f"{ntasks} tasks as local processes instead of srun/mpirun (no MPI wiring, no PMI)")
    if job.launcher_options:
        notes.append(f"launcher options {' '.join(job.launcher_options)!r} are not applied (no launcher, no binding)")
    if job.gpus:
        notes.append("no GPUs are allocated: CUDA_VISIBLE_DEVICES is whatever this shell has")
    notes.append("output goes to this terminal, not to the --output file")
    return notes


__all__ = ["LocalResult", "describe_differences", "local_job", "run_local", "task_env"]
