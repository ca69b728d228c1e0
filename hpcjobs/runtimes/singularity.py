"""SingularityCE 3.x: same command line as Apptainer, ``singularity`` binary, SINGULARITYENV_ prefix."""

from __future__ import annotations

from collections.abc import Sequence

from hpcjobs.plugin_api import HPCJOBS_PLUGIN_API, Runtime, hookimpl
from hpcjobs.runtimes.apptainer import ApptainerRuntime

__all__ = ["HPCJOBS_PLUGIN_API", "SingularityRuntime"]


class SingularityRuntime(ApptainerRuntime):
    name = "singularity"
    default_binary = "singularity"
    env_prefix = "SINGULARITYENV_"


@hookimpl
def hpcjobs_runtimes() -> Sequence[Runtime]:
    return [SingularityRuntime()]
