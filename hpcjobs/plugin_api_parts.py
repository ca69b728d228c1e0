"""The parts of the plugin contract that the core's own ``render`` and ``submit`` never use,
created on first use: :class:`Resources`, :class:`SbatchPart`, :class:`ContainerPart`,
:class:`LaunchPart` (the views of a :class:`~hpcjobs.plugin_api.ResolvedJob`) and
:class:`TargetStatus`.

Import them from :mod:`hpcjobs.plugin_api` (they present themselves as its classes). Creating a
frozen dataclass compiles its generated methods, about 0.5 ms of CPU each on the dev VM; every CLI
call imports the plugin contract, and these five are only read by plugins that ask for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from hpcjobs.models import Bind

__all__ = ["ContainerPart", "LaunchPart", "Resources", "SbatchPart", "TargetStatus"]


@dataclass(frozen=True)
class Resources:
    """What the job asks of Slurm, in units."""

    __module__ = "hpcjobs.plugin_api"

    nodes: int
    ntasks: int
    cpus_per_task: int | None
    gpus: int  # per node
    mem_gb: float | None  # per node
    time_min: int | None


@dataclass(frozen=True)
class SbatchPart:
    """Scheduler-facing settings besides resources."""

    __module__ = "hpcjobs.plugin_api"

    name: str
    partition: str
    account: str | None
    qos: str | None
    array: str | None
    output: str
    dependency: str | None
    extra_sbatch: tuple[str, ...]
    gpu_request: str  # gpus | gres
    gpu_type: str | None


@dataclass(frozen=True)
class ContainerPart:
    """What the runtime plugin turns into a container command."""

    __module__ = "hpcjobs.plugin_api"

    runtime: str
    runtime_binary: str | None  # None: the plugin's own
    runtime_flags: tuple[str, ...]
    image: str  # after image preparation: what the runtime runs (for Apptainer: the SIF path)
    image_ref: str | None  # the reference the job named
    image_digest: str | None
    mode: Literal["run", "exec"]  # plugin_api.Mode
    args: tuple[str, ...]  # entrypoint + command (exec) or command (run)
    binds: tuple[Bind, ...]
    env: Mapping[str, str]
    workdir: str | None
    cleanenv: bool
    gpu_flag: str | None  # None: no GPUs asked for
    clear_bind_env: bool  # the site has a bind deny list: binds may come from the job and site only


@dataclass(frozen=True)
class LaunchPart:
    """How the tasks are started."""

    __module__ = "hpcjobs.plugin_api"

    mpi: str
    mpirun: str
    launch_env: Mapping[str, str]
    wrappers: tuple[str, ...]
    launcher_options: tuple[str, ...] = ()  # API 1.2: for the launcher that starts the tasks
    stdio_tty: bool = False  # API 1.3: the tasks' standard streams may be a terminal (a local run on one)


@dataclass(frozen=True)
class TargetStatus:
    """A job's state as a target reports it. ``state`` uses the scheduler state names
    (PENDING, RUNNING, COMPLETED, FAILED, UNKNOWN …)."""

    __module__ = "hpcjobs.plugin_api"

    job_id: str
    state: str
    exit_code: int | None = None
    reason: str | None = None
