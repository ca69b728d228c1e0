"""srun: the hybrid model, one container per task (``srun --mpi=pmix … apptainer exec …``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hpcjobs.launchers import srun_options
from hpcjobs.plugin_api import HPCJOBS_PLUGIN_API, EnvVar, Launcher, LaunchPlan, ResolvedJob, Words, hookimpl

__all__ = ["HPCJOBS_PLUGIN_API", "SrunLauncher", "launch_env", "option_words"]


def launch_env(job: ResolvedJob, plan: LaunchPlan) -> None:
    """The site's ``mpi.env`` for a multi-task launch, as literal exports."""
    for key, value in job.launch_env.items():
        plan.env.append(EnvVar(key, value, f"{job.source(f'launch_env:{key}')} (mpi.env: {job.ntasks} tasks)"))


def option_words(job: ResolvedJob, plan: LaunchPlan, name: str, words_of: Callable[[str], tuple[str, ...]]) -> None:
    """The job's launcher options, one group each, with where it came from (``render --explain``)."""
    for i, opt in enumerate(job.launcher_options):
        plan.add(Words(words_of(opt), f"launcher_options.{name}: {job.source(f'launcher_options[{i}]')}",
                       "launcher", name))


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
        # one argv word each: srun reads --name=value itself (getopt_long), whatever the value holds
        option_words(job, plan, self.name, lambda opt: (opt,))

    def option_problem(self, option: str) -> str | None:
        return srun_options.option_problem(option)

    def option_key(self, option: str) -> str:
        return srun_options.option_key(option)


@hookimpl
def hpcjobs_launchers() -> Sequence[Launcher]:
    return [SrunLauncher()]
