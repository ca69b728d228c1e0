"""Apptainer (and, through a subclass, SingularityCE 3.x): the container part of the command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hpcjobs.plugins import ContainerRuntime, hookimpl

if TYPE_CHECKING:
    from hpcjobs.resolve import ResolvedJob


class ApptainerRuntime:
    name = "apptainer"
    default_binary = "apptainer"
    env_prefix = "APPTAINERENV_"

    def argv(self, job: ResolvedJob) -> list[str]:
        # run keeps the image ENTRYPOINT; --no-eval stops run from shell-evaluating the arguments
        cmd = [job.runtime_binary or self.default_binary]
        cmd += ["run", "--no-eval"] if job.mode == "run" else ["exec"]
        if job.gpu_flag and job.gpu_flag != "none":
            cmd.append(f"--{job.gpu_flag}")
        if job.cleanenv:
            cmd.append("--cleanenv")
        for b in job.binds:
            cmd += b.runtime_args()
        if job.workdir:
            cmd += ["--pwd", job.workdir]
        cmd += list(job.runtime_flags)
        cmd.append(job.image)
        cmd += list(job.args)
        return cmd


@hookimpl
def hpcjobs_runtimes() -> Sequence[ContainerRuntime]:
    return [ApptainerRuntime()]
