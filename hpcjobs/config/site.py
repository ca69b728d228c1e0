"""The site config models: site-wide defaults, partitions, image cache and policy.

Layering rule (one place, see :func:`SiteConfig.effective`): a partition's settings are laid
over the site defaults; scalars are replaced, lists and maps add up.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from hpcjobs.models import (
    Bind,
    GpuFlag,
    GpuRequest,
    MpiKind,
    NonNegInt,
    PosFloat,
    PosInt,
    StrictModel,
)


class Limits(StrictModel):
    """Hard limits; a request beyond one is refused before submission, never clamped."""

    max_gpus_per_node: NonNegInt | None = Field(
        None, description="GPUs a job may request per node; 0 marks a CPU-only partition."
    )
    max_nodes: PosInt | None = Field(None, description="Nodes a job may request.")
    max_ntasks: PosInt | None = Field(None, description="Tasks a job may request in total.")
    max_cpus_per_task: PosInt | None = Field(None, description="CPUs per task.")
    max_time_min: PosInt | None = Field(None, description="Wall time in minutes.")
    max_mem_gb: PosFloat | None = Field(None, description="Memory per node in GB.")


class GpuSettings(StrictModel):
    flag: GpuFlag | None = Field(
        None, description="Runtime GPU flag used when GPUs are requested: nv, nvccli, rocm or none."
    )
    request: GpuRequest | None = Field(
        None, description="How GPUs are asked of Slurm: 'gpus' (--gpus=N) or 'gres' (--gres=gpu[:type]:N)."
    )
    type: str | None = Field(None, description="GPU type for the request, e.g. a100.")


class RuntimeSettings(StrictModel):
    name: str | None = Field(None, description="Container runtime plugin: apptainer or singularity.")
    binary: str | None = Field(None, description="Runtime executable (default: the plugin's).")
    flags: list[str] = Field(default_factory=list, description="Extra flags for every run/exec.")
    cleanenv: bool | None = Field(
        None, description="Start containers with --cleanenv (launch variables are still forwarded)."
    )


class MpiSettings(StrictModel):
    default: MpiKind | None = Field(None, description="MPI launch when a job names none.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment for MPI launches, e.g. PMIX_MCA_gds: hash."
    )
    mpirun: str | None = Field(None, description="mpirun executable for mpi: mpirun.")


class Settings(StrictModel):
    """Settings allowed both site-wide (``defaults``) and per partition."""

    limits: Limits = Field(default_factory=Limits)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    mpi: MpiSettings = Field(default_factory=MpiSettings)
    binds: list[Bind] = Field(default_factory=list, description="Binds every job gets.")
    node_local_paths: list[str] = Field(
        default_factory=list,
        description="Paths that exist only on compute nodes; binds from them are not checked at submit.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment inside every container.")
    sbatch: list[str] = Field(
        default_factory=list, description="Extra sbatch options, e.g. --exclusive, written as directives."
    )
    time_min: PosInt | None = Field(None, description="Default wall time in minutes.")
    mem_gb: PosFloat | None = Field(None, description="Default memory per node in GB.")
    cpus_per_task: PosInt | None = Field(None, description="Default CPUs per task.")
    account: str | None = Field(None, description="Default Slurm account.")
    qos: str | None = Field(None, description="Default QoS.")


class Partition(Settings):
    description: str | None = None


class ImageCacheSettings(StrictModel):
    cache_dir: str | None = Field(
        None, description="Writable cache (shared per site, or per user). Default: ~/.cache/hpcjobs/images."
    )
    site_caches: list[str] = Field(
        default_factory=list, description="Read-only caches pre-staged by admins, looked up first."
    )
    shared: bool = Field(False, description="cache_dir is shared by a group: entries are group-readable.")
    convert_on: Literal["submit", "slurm"] = Field(
        "submit", description="Convert on the submitting host, or as a Slurm job the workload depends on."
    )
    build_partition: str | None = Field(None, description="Partition for conversion jobs (convert_on: slurm).")
    build_time_min: PosInt = Field(60, description="Time limit of a conversion job.")


class Policy(StrictModel):
    deny_bind_sources: list[str] = Field(
        default_factory=list, description="Host paths (and everything below them) users may not bind."
    )
    locked: list[str] = Field(
        default_factory=list,
        description="Job fields users may not set or override (e.g. runtime_flags, account).",
    )
    require_account: bool = Field(False, description="Every job must name an account.")
    require_qos: bool = Field(False, description="Every job must name a QoS.")


class SiteConfig(StrictModel):
    name: str = Field(description="Short site name, shown in scripts and messages.")
    default_partition: str = Field(description="Partition used when a job names none.")
    gpu_partition: str | None = Field(
        None, description="Partition for GPU jobs that name none (else default_partition)."
    )
    defaults: Settings = Field(default_factory=Settings, description="Site-wide defaults.")
    partitions: dict[str, Partition] = Field(min_length=1)
    images: ImageCacheSettings = Field(default_factory=ImageCacheSettings)
    policy: Policy = Field(default_factory=Policy)
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Settings for plugins, one section per plugin."
    )

    @model_validator(mode="after")
    def _check_partitions(self) -> SiteConfig:
        names = sorted(self.partitions)
        if self.default_partition not in self.partitions:
            raise ValueError(
                f"default_partition {self.default_partition!r} is not a partition (have: {', '.join(names)})"
            )
        if self.gpu_partition is not None and self.gpu_partition not in self.partitions:
            raise ValueError(f"gpu_partition {self.gpu_partition!r} is not a partition (have: {', '.join(names)})")
        if self.images.build_partition is not None and self.images.build_partition not in self.partitions:
            raise ValueError(
                f"images.build_partition {self.images.build_partition!r} is not a partition "
                f"(have: {', '.join(names)})"
            )
        for where, settings in [("defaults", self.defaults), *((f"partitions.{n}", p) for n, p in self.partitions.items())]:
            seen: set[str] = set()
            for b in settings.binds:
                if b.dst in seen:
                    raise ValueError(f"{where}.binds: duplicate destination {b.dst!r}")
                seen.add(b.dst)
        return self

    def effective(self, partition: str) -> Partition:
        """The partition's settings laid over the site defaults (scalars replace; lists, maps add)."""
        part = self.partitions[partition]
        merged = _layer(self.defaults.model_dump(exclude_unset=True), part.model_dump(exclude_unset=True))
        return Partition.model_validate(merged)

    def partition_source(self, partition: str, dotted: str) -> str | None:
        """Where an effective setting comes from: 'partition' or 'site', or None when unset."""
        if _is_set(self.partitions[partition], dotted):
            return "partition"
        if _is_set(self.defaults, dotted):
            return "site"
        return None


def _is_set(model: StrictModel, dotted: str) -> bool:
    obj: Any = model
    for part in dotted.split("."):
        if not isinstance(obj, StrictModel) or part not in obj.model_fields_set:
            return False
        obj = getattr(obj, part)
    return True


def _layer(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = _layer(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = _merge_list(key, old, value)
        else:
            out[key] = value
    return out


def _merge_list(key: str, old: list[Any], new: list[Any]) -> list[Any]:
    if key == "binds":
        # a partition bind to the same destination as a site bind replaces it
        dsts = {b["dst"] for b in new}
        return [b for b in old if b["dst"] not in dsts] + new
    return old + [v for v in new if v not in old]
