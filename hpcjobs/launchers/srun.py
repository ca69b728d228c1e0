"""srun: the hybrid model, one container per task (``srun --mpi=pmix … apptainer exec …``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hpcjobs.plugins import Launcher, hookimpl

if TYPE_CHECKING:
    from hpcjobs.resolve import ResolvedJob


class SrunLauncher:
    name = "srun"

    def handles(self, job: ResolvedJob) -> bool:
        # a single task runs directly in the batch step: no step, nothing to wire up
        return job.mpi != "mpirun" and (job.ntasks > 1 or job.nodes > 1)

    def argv(self, job: ResolvedJob) -> list[str]:
        # the allocation already carries nodes/ntasks; srun inherits them from the batch step
        return ["srun", f"--mpi={job.mpi}"]


@hookimpl
def hpcjobs_launchers() -> Sequence[Launcher]:
    return [SrunLauncher()]
