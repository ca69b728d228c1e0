"""mpirun: the host MPI starts the ranks, each rank a container (``mpirun -np N apptainer exec …``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hpcjobs.plugins import Launcher, hookimpl

if TYPE_CHECKING:
    from hpcjobs.resolve import ResolvedJob


class MpirunLauncher:
    name = "mpirun"

    def handles(self, job: ResolvedJob) -> bool:
        return job.mpi == "mpirun" and (job.ntasks > 1 or job.nodes > 1)

    def argv(self, job: ResolvedJob) -> list[str]:
        return [job.mpirun, "-np", str(job.ntasks)]


@hookimpl
def hpcjobs_launchers() -> Sequence[Launcher]:
    return [MpirunLauncher()]
