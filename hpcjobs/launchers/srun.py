"""srun: the hybrid model, one container per task (``srun --mpi=pmix … apptainer exec …``)."""

from __future__ import annotations

from collections.abc import Sequence

from hpcjobs.plugin_api import HPCJOBS_PLUGIN_API, EnvVar, Launcher, LaunchPlan, ResolvedJob, Words, hookimpl

__all__ = ["HPCJOBS_PLUGIN_API", "SrunLauncher", "launch_env"]


def launch_env(job: ResolvedJob, plan: LaunchPlan) -> None:
    """The site's ``mpi.env`` for a multi-task launch, as literal exports."""
    for key, value in job.launch_env.items():
        plan.env.append(EnvVar(key, value, f"{job.source(f'launch_env:{key}')} (mpi.env: {job.ntasks} tasks)"))


class SrunLauncher:
    name = "srun"
    # Slurm's MPI plugin types (srun --mpi=list); "none" still starts one container per task
    mpi_kinds: Sequence[str] = ("pmix", "pmi2", "none")

    def handles(self, job: ResolvedJob) -> bool:
        # a single task runs directly in the batch step: no step, nothing to wire up
        return job.multi_task

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        launch_env(job, plan)
        # the allocation already carries nodes/ntasks; srun inherits them from the batch step
        why = f"{job.ntasks} tasks, one container each; --mpi from {job.source('mpi')}"
        plan.add(Words(("srun", f"--mpi={job.mpi}"), why, "launcher", self.name))


@hookimpl
def hpcjobs_launchers() -> Sequence[Launcher]:
    return [SrunLauncher()]
