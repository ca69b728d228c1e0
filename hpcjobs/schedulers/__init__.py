"""Scheduler backends: Slurm through its CLI (always available) or through pyslurm (when an
importable pyslurm matching the cluster's Slurm is installed).

``HPCJOBS_SCHEDULER=cli|pyslurm`` (or ``prefer=``) forces one; ``auto`` (the default) picks
pyslurm only when it is usable, else the CLI. Importing this package never imports pyslurm.

Both backends submit through ``sbatch``, the reference parser of the ``#SBATCH`` lines ``render``
writes, so installing pyslurm can never change what a submission does; the pyslurm backend answers
status, wait, cancel and log-path queries in-process (see :mod:`.pyslurm_backend` for why).
"""

from __future__ import annotations

import importlib.util
import os

from hpcjobs.errors import BackendUnavailable, ConfigError, HpcjobsError
from hpcjobs.log import get_logger
from hpcjobs.runner import Runner
from hpcjobs.schedulers.base import JobStatus, Scheduler
from hpcjobs.schedulers.slurm_cli import SlurmCli
from hpcjobs.schedulers.states import JobState

ENV_VAR = "HPCJOBS_SCHEDULER"
_ALIASES = {
    "cli": "cli", "slurm-cli": "cli", "slurm_cli": "cli", "pyslurm": "pyslurm", "auto": "auto", "": "auto",
}  # fmt: skip


def _wanted(prefer: str | None) -> tuple[str, str]:
    """(cli|pyslurm|auto, where the choice came from)."""
    if prefer is not None:
        value, source = prefer, f"prefer={prefer!r}"
    else:
        value = os.environ.get(ENV_VAR, "")
        source = f"{ENV_VAR}={value}"
    choice = _ALIASES.get(value.strip().lower())
    if choice is None:
        raise ConfigError(f"{source}: unknown scheduler backend (use cli, pyslurm or auto)")
    return choice, source


def _choose(runner: Runner | None, prefer: str | None) -> tuple[str, str]:
    """(cli|pyslurm, why). Raises BackendUnavailable when pyslurm is forced but unusable."""
    choice, source = _wanted(prefer)
    if choice == "cli":
        return "cli", f"forced by {source}"
    try:
        present = importlib.util.find_spec("pyslurm") is not None
    except (ImportError, ValueError):
        present = False
    if present:
        from hpcjobs.schedulers.pyslurm_backend import pyslurm_usable

        try:
            version: str | None = SlurmCli(runner, retries=0).cluster_version()
        except HpcjobsError:
            version = None
        usable, why = pyslurm_usable(version)
    else:
        usable, why = False, "pyslurm not importable"
    if choice == "pyslurm":
        if not usable:
            raise BackendUnavailable(f"pyslurm backend requested ({source}) but unusable: {why}")
        return "pyslurm", f"{why}; forced by {source}"
    return ("pyslurm", why) if usable else ("cli", why)


def get_scheduler(runner: Runner | None = None, prefer: str | None = None) -> Scheduler:
    """The scheduler to use: pyslurm when usable and matching Slurm, else the Slurm CLI.

    ``prefer`` (``cli``, ``pyslurm``, ``auto``) beats the ``HPCJOBS_SCHEDULER`` environment
    variable; a forced but unusable pyslurm raises BackendUnavailable saying why. A missing
    or broken pyslurm never breaks the automatic choice.
    """
    kind, why = _choose(runner, prefer)
    submit, queries = roles(kind)
    get_logger("hpcjobs.schedulers").info("scheduler.backend", backend=kind, submit=submit, queries=queries,
                                          why=why)  # fmt: skip
    if kind == "pyslurm":
        from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend

        return PyslurmBackend(runner)
    return SlurmCli(runner)


def choose_backend(runner: Runner | None = None, prefer: str | None = None) -> tuple[str, str]:
    """(``cli`` | ``pyslurm``, why): the choice :func:`get_scheduler` makes, without building it."""
    return _choose(runner, prefer)


def roles(kind: str) -> tuple[str, str]:
    """(what submits, what answers status/wait/cancel/logs) for a backend kind."""
    if kind == "pyslurm":
        return "sbatch", "pyslurm"
    return "sbatch", "squeue/sacct/scancel/scontrol"


def describe_backend(runner: Runner | None = None, prefer: str | None = None) -> str:
    """One line naming the backend :func:`get_scheduler` picks, what does what, and why, e.g.
    ``slurm-cli: submit via sbatch, status/wait/cancel/logs via squeue/sacct/scancel/scontrol
    (pyslurm not importable)``."""
    try:
        kind, why = _choose(runner, prefer)
    except BackendUnavailable as exc:
        return f"none: {exc}"
    submit, queries = roles(kind)
    name = "pyslurm" if kind == "pyslurm" else SlurmCli.name
    return f"{name}: submit via {submit}, status/wait/cancel/logs via {queries} ({why})"


__all__ = [
    "ENV_VAR",
    "BackendUnavailable",
    "JobState",
    "JobStatus",
    "Scheduler",
    "SlurmCli",
    "choose_backend",
    "describe_backend",
    "get_scheduler",
    "roles",
]
