"""The site config models: site-wide defaults, partitions, image cache and policy.

Layering rule (one place, see :func:`SiteConfig.effective`): a partition's settings are laid
over the site defaults; scalars are replaced, lists and maps add up.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from hpcjobs.models import (
    ENV_NAME,
    SLURM_NAME,
    Bind,
    EnvMap,
    GpuRequest,
    MpiCheck,
    NonNegInt,
    PosFloat,
    PosInt,
    StrictModel,
)
from hpcjobs.names import GpuFlag, MpiKind, WrapperName

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from typing_extensions import Self

M = TypeVar("M", bound=BaseModel)



def _check_each(items: Iterable[tuple[str | int, Any]], check: Callable[[Any], str | None]) -> None:
    """Raise one problem per failing item, each at its own key path (``env.NAME``, ``sbatch.0``)."""
    problems = [((key,), msg, value) for key, value in items if (msg := check(value)) is not None]
    if problems:
        raise _problems("items", problems)


def _env_names(value: dict[str, str]) -> dict[str, str]:
    def check(key: str) -> str | None:
        if ENV_NAME.fullmatch(key):
            return None
        return f"{key!r} is not an environment variable name (letters, digits and _, not first a digit)"

    _check_each(((k, k) for k in value), check)
    return value


SiteEnv = Annotated[EnvMap, AfterValidator(_env_names)]
"""An environment in the site config: one problem per bad name, at ``env.NAME``."""


def _option_problem(opt: str) -> str | None:
    if not opt.startswith("-"):
        return f"{opt!r} is not an option (must start with '-')"
    if "\n" in opt:
        return f"{opt!r} may not contain a newline"
    return None


def _options(value: list[str]) -> list[str]:
    _check_each(enumerate(value), _option_problem)
    return value


def _problems(title: str, problems: Sequence[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """A ValidationError whose problems carry their own key paths (below the model that raises it)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{msg}", {"msg": msg}), loc=loc, input=value
            )
            for loc, msg, value in problems
        ],
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
    """How GPUs are asked of Slurm and handed to the container."""

    flag: GpuFlag | None = Field(
        None,
        description="Runtime GPU flag used when GPUs are requested, one the runtime plugin declares "
        "(Apptainer: nv, nvccli, rocm or none; see `hpcjobs plugins`).",
    )
    request: GpuRequest | None = Field(
        None, description="How GPUs are asked of Slurm: 'gpus' (--gpus=N) or 'gres' (--gres=gpu[:type]:N)."
    )
    type: str | None = Field(None, description="GPU type for the request, e.g. a100.")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        # written into an #SBATCH line as gpu:TYPE:N
        if value is not None and not SLURM_NAME.fullmatch(value):
            raise ValueError(f"GPU type {value!r} may only contain letters, digits and . _ + -")
        return value


class RuntimeSettings(StrictModel):
    """The container runtime and the flags every container gets."""

    name: str | None = Field(None, description="Container runtime plugin: apptainer or singularity.")
    binary: str | None = Field(None, description="Runtime executable (default: the plugin's).")
    flags: list[str] = Field(default_factory=list, description="Extra flags for every run/exec.")
    cleanenv: bool | None = Field(
        None, description="Start containers with --cleanenv (launch variables are still forwarded)."
    )

    @field_validator("flags")
    @classmethod
    def _flags(cls, value: list[str]) -> list[str]:
        return _options(value)


class MpiSettings(StrictModel):
    """How multi-task jobs are launched (hybrid model: one container per task)."""

    default: MpiKind | None = Field(
        None,
        description="MPI launch when a job names none, one a launcher plugin serves "
        "(srun: pmix, pmi2, none; mpirun: mpirun; see `hpcjobs plugins`).",
    )
    env: SiteEnv = Field(default_factory=dict, description="Environment for MPI launches, e.g. PMIX_MCA_gds: hash.")
    mpirun: str | None = Field(None, description="mpirun executable for mpi: mpirun.")
    check: MpiCheck | None = Field(
        None,
        description="What a failed MPI/PMIx pre-flight of a multi-task job does: refuse (default), warn "
        "(submit anyway) or off (see the admin guide).",
    )


class Settings(StrictModel):
    """Settings allowed both site-wide (``defaults``) and per partition."""

    limits: Limits = Field(default_factory=Limits, description="Hard limits on what a job may request.")
    gpu: GpuSettings = Field(default_factory=GpuSettings, description="GPU request and runtime flag.")
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings, description="Container runtime.")
    mpi: MpiSettings = Field(default_factory=MpiSettings, description="MPI launch.")
    binds: list[Bind] = Field(default_factory=list, description="Binds every job gets.")
    node_local_paths: list[str] = Field(
        default_factory=list,
        description="Paths that exist only on compute nodes; binds from them are not checked at submit.",
    )
    env: SiteEnv = Field(default_factory=dict, description="Environment inside every container.")
    sbatch: list[str] = Field(
        default_factory=list,
        description="Extra sbatch options, one per entry (--name, --name=value or -x), e.g. --exclusive.",
    )
    wrappers: list[WrapperName] = Field(
        default_factory=list, description="Task wrappers from plugins (profilers …) every job gets, outermost first."
    )
    launcher_options: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Options for the launcher of multi-task jobs, per launcher, one option per entry, e.g. "
        "srun: [--cpu-bind=cores], mpirun: [--bind-to core]. A partition's, then a job's option replaces "
        "the one it sets here.",
    )
    time_min: PosInt | None = Field(None, description="Default wall time in minutes.")
    mem_gb: PosFloat | None = Field(None, description="Default memory per node in GB.")
    cpus_per_task: PosInt | None = Field(None, description="Default CPUs per task.")
    account: str | None = Field(None, description="Default Slurm account.")
    qos: str | None = Field(None, description="Default QoS.")
    array_throttle: PosInt | None = Field(
        None, description="Most tasks of one job array or sweep array running at once (Slurm's %N)."
    )

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, value: list[str]) -> list[str]:
        from hpcjobs.sbatch_options import managed_sbatch_problem

        _check_each(enumerate(value), managed_sbatch_problem)
        return value

    @field_validator("launcher_options")
    @classmethod
    def _launcher_options(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        from hpcjobs.launchers.options import problems

        found = problems(value)
        if found:
            raise _problems("launcher_options", [(loc, msg, loc) for loc, msg in found])
        return value


class Partition(Settings):
    """A partition's profile: every setting of ``defaults``, laid over them, plus a description."""

    description: str | None = Field(None, description="What the partition is for, shown by `site show`.")


class ImageCacheSettings(StrictModel):
    """Where OCI images converted to SIF are kept, and where they are converted."""

    cache_dir: str | None = Field(
        None, description="Writable cache (shared per site, or per user). Default: ~/.cache/hpcjobs/images."
    )
    site_caches: list[str] = Field(
        default_factory=list, description="Read-only caches pre-staged by admins, looked up first."
    )
    shared: bool = Field(False, description="cache_dir is shared by a group: entries are group-readable.")
    cache_owner: str | None = Field(
        None,
        description="User (name or uid) who must own a shared cache's directories. Default: cache_dir's owner.",
    )
    verify: Literal["publish", "always"] = Field(
        "publish",
        description="Check a SIF's content when it is published, or also its sha256 on every cache hit.",
    )
    convert_on: Literal["submit", "slurm"] = Field(
        "submit", description="Convert on the submitting host, or as a Slurm job the workload depends on."
    )
    build_partition: str | None = Field(
        None, description="Partition for conversion jobs (convert_on: slurm)."
    )
    build_time_min: PosInt = Field(60, description="Time limit of a conversion job.")
    insecure_registries: list[str] = Field(
        default_factory=list,
        description="Registries (host[:port]) reached over plain HTTP; loopback registries always are.",
    )
    mksquashfs_args: str | None = Field(
        None, description="Extra mksquashfs arguments for conversions, e.g. '-comp gzip -Xcompression-level 1'."
    )


class Policy(StrictModel):
    """Rules for users' jobs. They are guard rails in hpcjobs, not a security boundary: a user can
    always write an sbatch script by hand. Enforce hard limits in Slurm and apptainer.conf."""

    deny_bind_sources: list[str] = Field(
        default_factory=list,
        description="Host paths users may not bind: each, everything below it and every directory above it.",
    )
    locked: list[str] = Field(
        default_factory=list,
        description="Job fields users may not set or override (e.g. runtime_flags, account).",
    )
    require_account: bool = Field(False, description="Every job must name an account.")
    require_qos: bool = Field(False, description="Every job must name a QoS.")

    @field_validator("deny_bind_sources")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        def check(path: str) -> str | None:
            return None if path.startswith("/") else f"{path!r} is not an absolute path"

        _check_each(enumerate(value), check)
        return value

    @field_validator("locked")
    @classmethod
    def _job_fields(cls, value: list[str]) -> list[str]:
        from hpcjobs.spec import JobSpec

        valid = sorted(set(JobSpec.model_fields) - {"image"})
        msg = f"not a job field that can be locked (valid: {', '.join(valid)})"
        _check_each(enumerate(value), lambda key: None if key in valid else f"{key!r} is {msg}")
        return value

    def denied_bind_source(self, src: str) -> str | None:
        """The ``deny_bind_sources`` entry that ``src`` would expose, or None: the entry itself,
        anything below it, and anything above it (binding ``/etc`` shows ``/etc/munge`` too).

        Pure: ``src`` is normalised lexically (``//etc/./munge/..`` is ``/etc``); a caller that may
        touch the file system should pass ``os.path.realpath(src)`` too, to see through symlinks.
        """
        path = _norm(src)
        for denied in self.deny_bind_sources:
            if is_within(path, denied) or is_within(denied, path):
                return denied
        return None


def is_within(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or below it, both normalised lexically first."""
    p, t = _norm(path), _norm(top)
    return t == "/" or p == t or p.startswith(t + "/")


def _norm(path: str) -> str:
    # posixpath.normpath keeps a leading '//' (POSIX leaves it implementation-defined; Linux: '/')
    return "/" + posixpath.normpath(path).lstrip("/") if path.startswith("/") else posixpath.normpath(path)


class SiteConfig(StrictModel):
    """A site config: site-wide defaults, partition profiles, image cache, policy and plugin settings."""

    name: str = Field(description="Short site name, shown in scripts and messages.", min_length=1)
    default_partition: str = Field(description="Partition used when a job names none.")
    gpu_partition: str | None = Field(
        None, description="Partition for GPU jobs that name none (else default_partition)."
    )
    defaults: Settings = Field(default_factory=Settings, description="Site-wide defaults.")
    partitions: dict[str, Partition] = Field(
        min_length=1, description="Partition profiles by Slurm partition name, laid over `defaults`."
    )
    images: ImageCacheSettings = Field(default_factory=ImageCacheSettings, description="Image cache.")
    policy: Policy = Field(default_factory=Policy, description="Rules for users' jobs.")
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Settings for plugins, one section per plugin."
    )
    # where the config came from when nobody published it (see hpcjobs.config.discovered); not a key
    _origin: str | None = PrivateAttr(default=None)

    @property
    def origin(self) -> str | None:
        """``discovered from the cluster NAME (cached in FILE)`` for a discovered config, else None."""
        return self._origin

    def with_origin(self, origin: str | None) -> SiteConfig:
        """A copy that says where it came from (shown by ``render --explain`` and ``site show``)."""
        copy = self.model_copy()
        copy._origin = origin
        return copy

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("may not contain control characters (it is written into job scripts)")
        return value

    @model_validator(mode="after")
    def _check_partitions(self) -> SiteConfig:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        names = sorted(self.partitions)
        have = f"(have: {', '.join(names)})"
        for name in names:
            if not SLURM_NAME.fullmatch(name):
                problems.append((("partitions", name), "a partition name may only contain letters, digits "
                                 "and . _ + -", name))
        for loc, value in (
            (("default_partition",), self.default_partition),
            (("gpu_partition",), self.gpu_partition),
            (("images", "build_partition"), self.images.build_partition),
        ):
            if value is not None and value not in self.partitions:
                problems.append((loc, f"{value!r} is not a partition {have}", value))
        layers: list[tuple[tuple[str, ...], Settings]] = [(("defaults",), self.defaults)]
        layers += [(("partitions", n), p) for n, p in self.partitions.items()]
        for where, settings in layers:
            seen: dict[str, int] = {}
            for i, b in enumerate(settings.binds):
                if b.dst in seen:
                    first = ".".join([*where, "binds", str(seen[b.dst])])
                    msg = f"duplicate destination {b.dst!r} (also {first})"
                    problems.append(((*where, "binds", i), msg, b.dst))
                seen.setdefault(b.dst, i)
        if problems:
            raise _problems(type(self).__name__, problems)
        for name in names:
            problems += self._check_defaults_within_limits(name)
        gpu_part = self.gpu_partition
        if gpu_part is not None and self.effective(gpu_part).limits.max_gpus_per_node == 0:
            msg = f"partition {gpu_part!r} has no GPUs (limits.max_gpus_per_node = 0)"
            problems.append((("gpu_partition",), msg, gpu_part))
        if problems:
            raise _problems(type(self).__name__, problems)
        return self

    def _check_defaults_within_limits(self, name: str) -> list[tuple[tuple[str | int, ...], str, Any]]:
        """A default above a limit would make every job that relies on it fail: say so at load time."""
        eff = self.effective(name)
        out: list[tuple[tuple[str | int, ...], str, Any]] = []
        for key, limit_name in (("time_min", "max_time_min"), ("mem_gb", "max_mem_gb"),
                                ("cpus_per_task", "max_cpus_per_task")):
            value, limit = getattr(eff, key), getattr(eff.limits, limit_name)
            if value is None or limit is None or value <= limit:
                continue
            layer = ("partitions", name) if key in self.partitions[name].model_fields_set else ("defaults",)
            msg = f"default {value} is above partitions.{name} limits.{limit_name} = {limit}"
            out.append(((*layer, key), msg, value))
        return out

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; with ``update``, the partitions worked out by :meth:`effective` are worked out anew."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy.__dict__.pop("_effective", None)
        return copy

    def effective(self, partition: str) -> Partition:
        """The partition's settings laid over the site defaults (scalars replace; lists, maps add)."""
        # Worked out once per partition and kept in the instance (not a field: equality, dumps and
        # the schema ignore it); the validated-config cache pickles it along, so a cached config
        # never builds the Partition validators (hpcjobs.config.cache).
        done: dict[str, Partition] = self.__dict__.setdefault("_effective", {})
        found = done.get(partition)
        if found is None:
            part = self.partitions[partition]
            merged = _layer(self.defaults.model_dump(exclude_unset=True), part.model_dump(exclude_unset=True))
            found = done[partition] = Partition.model_validate(merged)
        return found

    def partition_source(self, partition: str, dotted: str) -> str | None:
        """Where an effective setting comes from: 'partition' or 'site', or None when unset."""
        if _is_set(self.partitions[partition], dotted):
            return "partition"
        if _is_set(self.defaults, dotted):
            return "site"
        return None


    def item_sources(self, partition: str) -> dict[str, str]:
        """Where each item of the partition's effective lists and maps comes from: 'partition' or 'site'.

        Keys: ``binds:DST``, ``env:NAME``, ``mpi.env:NAME``, ``sbatch:OPTION``, ``runtime.flags:FLAG``,
        ``node_local_paths:PATH``.
        """
        out: dict[str, str] = {}
        for layer, settings in (("site", self.defaults), ("partition", self.partitions[partition])):
            # the partition comes second: its binds (by destination) and variables replace the site's
            for b in settings.binds:
                out[f"binds:{b.dst}"] = layer
            for key in settings.env:
                out[f"env:{key}"] = layer
            for key in settings.mpi.env:
                out[f"mpi.env:{key}"] = layer
            for items, prefix in ((settings.sbatch, "sbatch"), (settings.runtime.flags, "runtime.flags"),
                                  (settings.node_local_paths, "node_local_paths")):
                for item in items:
                    out.setdefault(f"{prefix}:{item}", layer)  # list items add up; the first one stays
        return out

    def plugin_settings(self, section: str, model: type[M]) -> M:
        """The ``plugins.<section>`` settings as ``model`` (the loader validated them already)."""
        return model.model_validate(self.plugins.get(section) or {})


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
        if key == "launcher_options" and isinstance(old, dict) and isinstance(value, dict):
            from hpcjobs.launchers.options import merge_site_layers

            out[key] = merge_site_layers(old, value)  # per option, not appended (see resolve)
        elif isinstance(old, dict) and isinstance(value, dict):
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
