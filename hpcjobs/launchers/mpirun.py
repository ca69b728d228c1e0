"""mpirun: the host MPI starts the ranks, each rank a container (``mpirun -np N apptainer exec …``)."""

from __future__ import annotations

from collections.abc import Sequence

from hpcjobs.launchers.srun import launch_env
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


@hookimpl
def hpcjobs_launchers() -> Sequence[Launcher]:
    return [MpirunLauncher()]
