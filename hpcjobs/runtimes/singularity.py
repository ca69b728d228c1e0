"""SingularityCE 3.x: same command line as Apptainer, ``singularity`` binary, SINGULARITYENV_ prefix."""

from __future__ import annotations

from collections.abc import Sequence

from hpcjobs.plugins import ContainerRuntime, hookimpl
from hpcjobs.runtimes.apptainer import ApptainerRuntime


class SingularityRuntime(ApptainerRuntime):
    name = "singularity"
    default_binary = "singularity"
    env_prefix = "SINGULARITYENV_"


@hookimpl
def hpcjobs_runtimes() -> Sequence[ContainerRuntime]:
    return [SingularityRuntime()]
