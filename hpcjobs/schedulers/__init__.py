"""Scheduler backends: Slurm through its CLI (always available) or through pyslurm (when an
importable pyslurm matching the cluster's Slurm is installed).

``HPCJOBS_SCHEDULER=cli|pyslurm`` (or ``prefer=``) forces one; ``auto`` (the default) picks
pyslurm only when it is usable, else the CLI, and makes that choice only when the first status,
wait, cancel or log-path query needs it (:class:`~hpcjobs.schedulers.auto.AutoScheduler`).
Importing this package never imports pyslurm.

Both backends submit through ``sbatch``, the reference parser of the ``#SBATCH`` lines ``render``
writes, so installing pyslurm can never change what a submission does; the pyslurm backend answers
status, wait, cancel and log-path queries in-process (see :mod:`.pyslurm_backend` for why).
"""

from __future__ import annotations

from hpcjobs.errors import BackendUnavailable
from hpcjobs.runner import Runner
from hpcjobs.schedulers.auto import AutoScheduler
from hpcjobs.schedulers.base import JobStatus, Scheduler
from hpcjobs.schedulers.choice import ENV_VAR, decide, log_choice, roles, wanted
from hpcjobs.schedulers.slurm_cli import SlurmCli
from hpcjobs.schedulers.states import JobState


def _choose(runner: Runner | None, prefer: str | None) -> tuple[str, str]:
    """(cli|pyslurm, why). Raises BackendUnavailable when pyslurm is forced but unusable."""
    return decide(runner, *wanted(prefer))


def get_scheduler(runner: Runner | None = None, prefer: str | None = None) -> Scheduler:
    """The scheduler to use: pyslurm when usable and matching Slurm, else the Slurm CLI.

    ``prefer`` (``cli``, ``pyslurm``, ``auto``) beats the ``HPCJOBS_SCHEDULER`` environment
    variable, which is read here. ``auto`` (the default) gives an :class:`AutoScheduler`: it
    submits through ``sbatch`` at once and chooses the backend for status/wait/cancel/logs on
    the first such query, so a plain submission never runs ``sinfo --version`` nor imports
    pyslurm. A forced choice is made here: ``cli`` costs nothing, and a forced but unusable
    pyslurm raises BackendUnavailable saying why before anything is submitted. A missing or
    broken pyslurm never breaks the automatic choice.
    """
    choice, source = wanted(prefer)
    if choice == "auto":
        return AutoScheduler(runner, source=source)
    kind, why = decide(runner, choice, source)
    log_choice(kind, why)
    if kind == "pyslurm":
        from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend

        return PyslurmBackend(runner)
    return SlurmCli(runner)


def choose_backend(runner: Runner | None = None, prefer: str | None = None) -> tuple[str, str]:
    """(``cli`` | ``pyslurm``, why): the choice :func:`get_scheduler`'s scheduler makes for its
    queries, made now (a ``sinfo --version`` and ``import pyslurm`` where pyslurm is installed)."""
    return _choose(runner, prefer)


def describe_backend(runner: Runner | None = None, prefer: str | None = None) -> str:
    """One line naming the backend :func:`get_scheduler`'s scheduler queries through, what does
    what, and why (the choice is made now), e.g. ``slurm-cli: submit via sbatch,
    status/wait/cancel/logs via squeue/sacct/scancel/scontrol (pyslurm not importable)``."""
    try:
        kind, why = _choose(runner, prefer)
    except BackendUnavailable as exc:
        return f"none: {exc}"
    submit, queries = roles(kind)
    name = "pyslurm" if kind == "pyslurm" else SlurmCli.name
    return f"{name}: submit via {submit}, status/wait/cancel/logs via {queries} ({why})"


__all__ = [
    "ENV_VAR",
    "AutoScheduler",
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
