"""Which backend answers queries: ``HPCJOBS_SCHEDULER`` / ``prefer`` read, pyslurm checked
against the cluster's Slurm, the choice logged. Importing this module never imports pyslurm."""

from __future__ import annotations

import importlib.util
import os

from hpcjobs.errors import BackendUnavailable, ConfigError, HpcjobsError
from hpcjobs.log import get_logger
from hpcjobs.runner import Runner
from hpcjobs.schedulers.slurm_cli import SlurmCli

ENV_VAR = "HPCJOBS_SCHEDULER"
_ALIASES = {
    "cli": "cli", "slurm-cli": "cli", "slurm_cli": "cli", "pyslurm": "pyslurm", "auto": "auto", "": "auto",
}  # fmt: skip


def wanted(prefer: str | None) -> tuple[str, str]:
    """(cli|pyslurm|auto, where the choice came from); ConfigError for an unknown name."""
    if prefer is not None:
        value, source = prefer, f"prefer={prefer!r}"
    else:
        value = os.environ.get(ENV_VAR, "")
        source = f"{ENV_VAR}={value}"
    choice = _ALIASES.get(value.strip().lower())
    if choice is None:
        raise ConfigError(f"{source}: unknown scheduler backend (use cli, pyslurm or auto)")
    return choice, source


def decide(runner: Runner | None, choice: str, source: str) -> tuple[str, str]:
    """(cli|pyslurm, why) for a :func:`wanted` answer. Costs a ``sinfo --version`` process and
    ``import pyslurm`` where pyslurm is installed and not ruled out by ``choice``. Raises
    BackendUnavailable when pyslurm is forced but unusable."""
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


def roles(kind: str) -> tuple[str, str]:
    """(what submits, what answers status/wait/cancel/logs) for a backend kind."""
    if kind == "pyslurm":
        return "sbatch", "pyslurm"
    return "sbatch", "squeue/sacct/scancel/scontrol"


def log_choice(kind: str, why: str) -> None:
    """The ``-v`` line saying which backend does what, and why."""
    submit, queries = roles(kind)
    get_logger("hpcjobs.schedulers").info("scheduler.backend", backend=kind, submit=submit, queries=queries,
                                          why=why)  # fmt: skip


__all__ = ["ENV_VAR", "decide", "log_choice", "roles", "wanted"]
