"""The scheduler ``HPCJOBS_SCHEDULER=auto`` (the default) gets: it submits through ``sbatch`` at
once and chooses the backend that answers queries on the first status, wait, cancel or log-path
query, then keeps it.

Both backends submit through the same ``sbatch`` (see :mod:`hpcjobs.schedulers`), so choosing
before a submission is wasted work: where pyslurm is installed the choice costs a ``sinfo
--version`` process and ``import pyslurm`` (docs/benchmarks.md), which a plain ``hpcjobs submit``
never needs. The choice follows the same rules as before and is logged (``-v``) when it is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hpcjobs.runner import Pending, Runner
from hpcjobs.schedulers.base import ArrayLimits, JobStatus, Scheduler
from hpcjobs.schedulers.choice import decide, log_choice
from hpcjobs.schedulers.slurm_cli import SlurmCli

if TYPE_CHECKING:
    from hpcjobs.schedulers.base import JobRecord


class AutoScheduler:
    """The :class:`~hpcjobs.schedulers.base.Scheduler` protocol with the query backend chosen on
    first use. Submission and the cluster's configuration (version, limits, TaskPlugin) go through
    the CLI, as they do in both backends; the chosen pyslurm backend shares that CLI (its retry
    settings and what it has seen of the jobs).

    ``name`` is ``auto`` until the choice is made, then the chosen backend's (``slurm-cli`` or
    ``pyslurm``); reading it never makes the choice."""

    name: str = "auto"

    def __init__(self, runner: Runner | None = None, *, source: str = "auto", cli: SlurmCli | None = None) -> None:
        self._cli = cli if cli is not None else SlurmCli(runner)
        self._source = source
        self._backend: Scheduler | None = None
        self._kind: str | None = None
        self._why: str | None = None

    # ------------------------------------------------------------------------------- the choice

    @property
    def backend(self) -> Scheduler:
        """The backend that answers queries, chosen (and logged) on first use, then kept."""
        if self._backend is None:
            kind, why = decide(self._cli.runner, "auto", self._source)
            log_choice(kind, why)
            if kind == "pyslurm":
                from hpcjobs.schedulers.pyslurm_backend import PyslurmBackend

                self._backend = PyslurmBackend(self._cli.runner, cli=self._cli)
            else:
                self._backend = self._cli
            self._kind, self._why = kind, why
            self.name = self._backend.name
        return self._backend

    @property
    def chosen(self) -> tuple[str, str] | None:
        """(``cli`` | ``pyslurm``, why) once the backend is chosen; None before (choosing nothing)."""
        return None if self._kind is None or self._why is None else (self._kind, self._why)

    @property
    def cli(self) -> SlurmCli:
        """The CLI backend this one submits through."""
        return self._cli

    @property
    def runner(self) -> Runner:
        return self._cli.runner

    # ------------------------------------------------------------------------------- protocol

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        """Through ``sbatch``, without choosing the query backend."""
        return self._cli.submit(script, cwd=cwd)

    def submit_start(self, script: str, *, cwd: str | None = None) -> Pending[str]:
        """:meth:`SlurmCli.submit_start`: sbatch begun, its job id collected later."""
        return self._cli.submit_start(script, cwd=cwd)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return self.backend.status(job_ids)

    def wait(
        self, job_ids: Sequence[str], *, poll_s: float = 5.0, timeout_s: float | None = None
    ) -> dict[str, JobStatus]:
        return self.backend.wait(job_ids, poll_s=poll_s, timeout_s=timeout_s)

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.backend.cancel(job_ids)

    def log_path(self, job_id: str) -> str | None:
        return self.backend.log_path(job_id)

    def cluster_version(self) -> str:
        return self._cli.cluster_version()

    # the cluster's configuration: read through the CLI by both backends, so no choice is needed

    def config_limits(self) -> tuple[int, int, bool]:
        return self._cli.config_limits()

    def task_plugin(self) -> str:
        return self._cli.task_plugin()

    def array_limits(self, qos: str | None = None, config: tuple[int, int, bool] | None = None) -> ArrayLimits:
        return self._cli.array_limits(qos, config)

    def job_records(self) -> int:
        return self._cli.job_records()

    def job_records_start(self) -> Pending[int]:
        return self._cli.job_records_start()

    def lookup_history(self, job_ids: Sequence[str]) -> list[JobRecord]:
        return self._cli.lookup_history(job_ids)

    def __repr__(self) -> str:
        chosen = "not chosen yet" if self._backend is None else repr(self._backend)
        return f"AutoScheduler({chosen})"


__all__ = ["AutoScheduler"]
