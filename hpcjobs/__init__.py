"""hpcjobs: container workloads as correct Slurm batch jobs running in Apptainer.

Imports are lazy so that ``import hpcjobs`` and ``hpcjobs --help`` stay fast.
"""

from __future__ import annotations

from hpcjobs._lazy import lazy_attributes
from hpcjobs._version import __version__

TYPE_CHECKING = False  # not typing's: the warm client (hpcjobs.warm.client) imports this package

if TYPE_CHECKING:
    from hpcjobs.api import ContainerJob, Job
    from hpcjobs.errors import HpcjobsError
    from hpcjobs.schedulers.states import JobState
    from hpcjobs.sweep.handle import Sweep
    from hpcjobs.sweep.points import Point, grid

__all__ = ["ContainerJob", "HpcjobsError", "Job", "JobState", "Point", "Sweep", "__version__", "grid"]

_LAZY = {
    "ContainerJob": "hpcjobs.api",
    "Job": "hpcjobs.api",
    "HpcjobsError": "hpcjobs.errors",
    "JobState": "hpcjobs.schedulers.states",
    "Point": "hpcjobs.sweep.points",
    "Sweep": "hpcjobs.sweep.handle",
    "grid": "hpcjobs.sweep.points",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
