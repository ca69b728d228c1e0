"""The job spec: the fields a user writes, in Python (ContainerJob) or YAML (hpcjobs submit)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from hpcjobs.models import ENV_NAME, Bind, EnvMap, MpiCheck, NonNegInt, PosFloat, PosInt, StrictModel
from hpcjobs.names import MpiKind, WrapperName

# Slurm dependency lists: afterok:12:13,afterany:14+5 or singleton; ? separates any-of lists
_DEPENDENCY = re.compile(
    r"^(singleton|(after|afterany|afterburstbuffer|aftercorr|afternotok|afterok|aftersuccess)(:[0-9_]+(\+[0-9]+)?)+)"
    r"([,?](singleton|(after|afterany|afterburstbuffer|aftercorr|afternotok|afterok|aftersuccess)(:[0-9_]+(\+[0-9]+)?)+))*\Z"
)
_ARRAY = re.compile(r"^[0-9]+(-[0-9]+)?(:[0-9]+)?(,[0-9]+(-[0-9]+)?(:[0-9]+)?)*(%[0-9]+)?\Z")


class JobSpec(StrictModel):
    """What to run and what it needs. Unset fields come from the partition, then the site."""

    image: str = Field(
        min_length=1,
        description="A .sif path or an OCI reference: docker://, oci-archive:, docker-archive:, oci:DIR.",
    )
    name: str | None = Field(None, description="Job name (default: from the image).")
    entrypoint: list[str] | None = Field(
        None, description="Replaces the image ENTRYPOINT (Docker semantics); a string is split like a shell."
    )
    command: list[str] | None = Field(
        None, description="Replaces the image CMD (Docker semantics); a string is split like a shell."
    )
    partition: str | None = None
    nodes: PosInt | None = None
    ntasks: PosInt | None = Field(None, description="Tasks in total (MPI ranks).")
    cpus_per_task: PosInt | None = None
    gpus: NonNegInt | None = Field(None, description="GPUs per node.")
    mem_gb: PosFloat | None = Field(None, description="Memory per node in GB.")
    time_min: PosInt | None = Field(None, description="Wall time in minutes.")
    mpi: MpiKind | None = Field(
        None,
        description="pmix, pmi2, none (srun) or mpirun, or one a launcher plugin serves (default: the partition's).",
    )
    mpi_check: MpiCheck | None = Field(
        None, description="What a failed MPI/PMIx pre-flight does: refuse (default), warn or off."
    )
    binds: list[Bind] = Field(default_factory=list, description="SRC:DST[:ro|rw] strings or {src, dst, mode}.")
    env: EnvMap = Field(default_factory=dict, description="Environment inside the container.")
    workdir: str | None = Field(None, description="Working directory inside the container.")
    array: str | None = Field(None, description="Slurm array, e.g. 0-9 or 1,3,5%2.")
    array_throttle: PosInt | None = Field(
        None, description="Most tasks of an array or sweep running at once (Slurm's %N)."
    )
    dependency: str | None = Field(
        None, description="Slurm dependency, e.g. afterok:123 (the job ends if it can never be met)."
    )
    account: str | None = None
    qos: str | None = None
    extra_sbatch: list[str] = Field(
        default_factory=list, description="More sbatch options, one per entry: --name, --name=value or -x."
    )
    launcher_options: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Options for the task launcher, per launcher, one option per entry: srun: [--cpu-bind=cores], "
        "mpirun: [--bind-to core]; each replaces the partition's option that sets the same thing.",
    )
    runtime_flags: list[str] = Field(default_factory=list, description="Extra container runtime flags.")
    cleanenv: bool | None = Field(None, description="Start the container with a clean environment.")
    output: str | None = Field(None, description="Log file (Slurm filename pattern); default hpcjobs-%x-%j.out.")
    wrappers: list[WrapperName] = Field(
        default_factory=list, description="Task wrappers from plugins (profilers …), outermost first."
    )

    @field_validator("entrypoint", "command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            # Compose splits a string command/entrypoint like a POSIX shell would
            return shlex.split(value)
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"environment variable name {key!r} is not a valid name")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str | None) -> str | None:
        # a relative one would depend on where the runtime happens to start (see hpcjobs.outputs)
        if value is not None and not value.startswith("/"):
            raise ValueError(f"workdir {value!r} must be an absolute path inside the container")
        return value

    @field_validator("array")
    @classmethod
    def _array(cls, value: str | None) -> str | None:
        if value is not None and not _ARRAY.fullmatch(value):
            raise ValueError(f"array {value!r} is not Slurm array syntax (e.g. 0-9, 1,3,5, 0-15:4%2)")
        return value

    @field_validator("dependency")
    @classmethod
    def _dependency(cls, value: str | None) -> str | None:
        if value is not None and not _DEPENDENCY.fullmatch(value):
            raise ValueError(f"dependency {value!r} is not Slurm dependency syntax (e.g. afterok:123, afterany:1:2)")
        return value

    @field_validator("launcher_options")
    @classmethod
    def _launcher_options(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        from hpcjobs.launchers.options import problems

        found = problems(value)
        if found:
            raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in found))
        return value

    @field_validator("extra_sbatch", "runtime_flags")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for opt in value:
            if not opt.startswith("-"):
                raise ValueError(f"{opt!r} is not an option (must start with '-')")
        return value

