"""Where a job's output goes: one rule, stated by ``render --explain`` with absolute paths. Pure.

* The job starts in the **job directory**: where ``hpcjobs submit`` runs (the API's ``cwd=``, by
  default the caller's working directory), which hpcjobs hands to sbatch as ``--chdir``.
* The **Slurm log** (``output``) is a path relative to the job directory, unless absolute.
* The **program** runs in ``workdir`` inside the container; without one, in the job directory
  itself, where the runtime mounts it at its own path (Apptainer does; a runtime that does not says
  so). Files the program writes to relative paths land in the host directory that its working
  directory maps to: the job directory, or the source of the bind that holds ``workdir``.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from hpcjobs.models import Bind
    from hpcjobs.plugin_api import ResolvedJob

JOB_DIR = "the job directory (sbatch --chdir): where hpcjobs submit runs; the API's cwd="
UNKNOWN_JOB_DIR = "<the directory hpcjobs submit runs in>"


def log_path(output: str, job_dir: str) -> str:
    """The Slurm log's path as Slurm opens it: relative to the job directory, patterns kept."""
    return output if output.startswith("/") else f"{job_dir.rstrip('/') or ''}/{output}"


def bind_holding(path: str, binds: tuple[Bind, ...] | list[Bind]) -> Bind | None:
    """The bind whose destination holds ``path`` (the innermost, when binds nest)."""
    path = posixpath.normpath(path)
    best: Bind | None = None
    for b in binds:
        dst = posixpath.normpath(b.dst)
        if (path == dst or path.startswith(dst.rstrip("/") + "/")) and (best is None or len(dst) > len(best.dst)):
            best = b
    return best


def host_path(path: str, bind: Bind, job_dir: str) -> str:
    """The host path ``path`` (inside the container, under ``bind``) maps to."""
    rest = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(bind.dst))
    src = bind.src if bind.src.startswith("/") else posixpath.join(job_dir, bind.src)
    return posixpath.normpath(src if rest == "." else posixpath.join(src, rest))


def within(path: str, directory: str) -> bool:
    path, directory = posixpath.normpath(path), posixpath.normpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def where_output_goes(job: ResolvedJob, job_dir: str | None, *, starts_in_job_dir: bool | None) -> list[str]:
    """The explanation lines (comment text, without '# '). ``job_dir`` None: not known here.
    ``starts_in_job_dir``: whether the runtime, with no workdir, runs the program in the job
    directory mounted at its own path (None: the runtime does not say)."""
    known = job_dir is not None
    jd = job_dir if job_dir is not None else UNKNOWN_JOB_DIR
    lines = [
        "Where output goes (user guide: 'Where output goes'):",
        f"  job starts in: {jd}  <- {JOB_DIR}",
        f"  Slurm log (stdout and stderr): {log_path(job.output, jd)}  <- output: {job.source('output')}"
        + ("" if job.output.startswith("/") else " (relative to the job directory)"),
    ]
    if job.workdir is None:
        if starts_in_job_dir:
            lines.append(f"  program runs in: {jd}, the job directory, which {job.runtime} mounts at its own path: "
                         "files it writes to relative paths land there, on the host")  # fmt: skip
        else:
            why = "does not mount the job directory with these runtime flags" if starts_in_job_dir is False else (
                "does not start it in the job directory")
            lines.append(f"  program runs in: the image's own working directory ({job.runtime} {why}): "
                         "files written there do not reach the host unless a bind holds it")  # fmt: skip
        return lines
    wd = job.workdir
    lines.append(f"  program runs in: {wd} inside the container  <- workdir: {job.source('workdir')}")
    bind = bind_holding(wd, job.binds)
    if bind is not None:
        host = host_path(wd, bind, jd)
        what = f"bind {bind.spec()} <- {job.source('bind:' + bind.dst)}"
        if bind.mode == "ro":
            lines.append(f"    = host {host} ({what}): read-only, the program cannot write files there")
        else:
            lines.append(f"    = host {host} ({what}): files it writes to relative paths land there")
    elif known and starts_in_job_dir and within(wd, jd):
        lines.append(f"    = host {posixpath.normpath(wd)}, inside the job directory, which {job.runtime} mounts "
                     "at its own path: files it writes to relative paths land there")  # fmt: skip
    else:
        lines.append(f"    on no bind of this job: files written there stay in the container and do not reach "
                     f"the host (the image is read-only; {job.runtime}'s own default mounts aside)")  # fmt: skip
    return lines


def check_job_dir(job: ResolvedJob, job_dir: str, isdir: Callable[[str], bool]) -> None:
    """Refuse, before submission, a job directory that Slurm's records cannot carry, and a log whose
    directory does not exist: Slurm creates none, and such a job fails at launch with no log
    anywhere (JobLaunchFailure, seen on 22.05). A log directory with a %-pattern is only known on
    the node."""
    from hpcjobs.directives import uncarriable
    from hpcjobs.errors import ConfigError

    bad = uncarriable(job_dir)
    if bad is not None:
        # squeue, scontrol and sacct print WorkDir and StdOut raw: a newline splits the job's record
        raise ConfigError(f"the job directory {job_dir!r} {bad}, which Slurm's job records (squeue, scontrol) "
                          "print raw, so the job could not be followed: submit from another directory")  # fmt: skip
    if not job.output.startswith("/"):
        for ch in ("%", "\\"):
            if ch in job_dir:
                # seen on 22.05: Slurm expands %-patterns in the whole path (%j in the directory
                # became the job id) and drops backslashes, so the log went to a directory that is not there
                raise ConfigError(
                    f"the job directory {job_dir!r} contains {ch!r}, which Slurm reads as part of a pattern in the "
                    f"log's path {log_path(job.output, job_dir)!r}: give output an absolute path, or submit from "
                    "another directory"
                )
    directory = posixpath.dirname(log_path(job.output, job_dir))
    if "%" in directory or isdir(directory):
        return
    raise ConfigError(
        f"output {job.output!r}: the log's directory {directory} does not exist; Slurm creates none and the "
        "job would fail at launch with no log: create it first"
    )
