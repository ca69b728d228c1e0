"""mpirun: the host MPI starts the ranks, each rank a container (``mpirun -np N apptainer exec …``)."""

from __future__ import annotations

from collections.abc import Sequence

from hpcjobs.launchers import mpirun_options
from hpcjobs.launchers.srun import launch_env, option_words
from hpcjobs.plugin_api import HPCJOBS_PLUGIN_API, Launcher, LaunchPlan, ResolvedJob, Words, hookimpl

__all__ = ["HPCJOBS_PLUGIN_API", "MpirunLauncher"]


class MpirunLauncher:
    name = "mpirun"
    mpi_kinds: Sequence[str] = ("mpirun",)

    def handles(self, job: ResolvedJob) -> bool:
        return job.multi_task

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        launch_env(job, plan)
        why = f"mpi: mpirun from {job.source('mpi')}; binary: {job.source('mpirun')}"
        plan.add(Words((job.mpirun,), why, "launcher", self.name))
        plan.add(Words(("-np", str(job.ntasks)), f"ntasks: {job.source('ntasks')}", "launcher", self.name))
        option_words(job, plan, self.name, mpirun_options.option_words)

    def option_problem(self, option: str) -> str | None:
        return mpirun_options.option_problem(option)

    def option_key(self, option: str) -> str:
        return mpirun_options.option_key(option)


@hookimpl
def hpcjobs_launchers() -> Sequence[Launcher]:
    return [MpirunLauncher()]
