"""The plugin contract, version :data:`HPCJOBS_PLUGIN_API`: everything a plugin may see and return.

A plugin sees a :class:`ResolvedJob` (read it through its parts :attr:`~ResolvedJob.resources`,
:attr:`~ResolvedJob.sbatch`, :attr:`~ResolvedJob.container`, :attr:`~ResolvedJob.launch`) and adds to a
:class:`LaunchPlan`. The core builds the plan in one fixed order (see :func:`hpcjobs.plan.build_plan`):

1. the core: the ``#SBATCH`` directives and the header comments, from the resolved job;
2. the **launcher** (srun, mpirun; none for a single task): its words and the launch environment;
3. the **runtime** (apptainer, singularity, a third-party podman …): environment, script lines,
   the container words, the image and the program;
4. the **wrappers** the job names, in the order named (profilers: they put their words outside or
   inside the container), then every plugin's ``hpcjobs_plan`` hook (site hooks).

``render`` turns the finished plan into the script; it is the only place that quotes. Plugins never
quote: they hand over words (:class:`Words`), literal values (:class:`EnvVar`) and argv lines
(:class:`ScriptLine` with ``argv``). Every word carries its provenance, which ``render --explain`` prints.

This module imports nothing from hpcjobs but the leaves :mod:`hpcjobs.errors`, :mod:`hpcjobs.defaults` (and
:mod:`hpcjobs.models` for types only), so importing it pulls in no more of the core (checked by
tests/importgraph.py). Names here are stable within a major version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pluggy

from hpcjobs.defaults import BUILTIN
from hpcjobs.errors import PluginError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hpcjobs.models import Bind
    from hpcjobs.plugin_api_parts import ContainerPart, LaunchPart, Resources, SbatchPart, TargetStatus

GROUP = "hpcjobs"
"""The pluggy project name and the entry-point group plugins register under."""
hookspec = pluggy.HookspecMarker(GROUP)
hookimpl = pluggy.HookimplMarker(GROUP)

HPCJOBS_PLUGIN_API = "1.3"
"""Version of this contract (1.1 added targets: :class:`Target`, :class:`TargetStatus`, the hook
``hpcjobs_targets`` and :attr:`ResolvedJob.entrypoint_len`; 1.2 launcher options:
:attr:`ResolvedJob.launcher_options`, :attr:`ResolvedJob.launcher_notes`, the optional
:class:`Launcher` methods ``option_problem`` and ``option_key``; 1.3 whether the tasks' standard
streams may be a terminal: :attr:`ResolvedJob.stdio_tty`). A plugin declares the version it was
written against as a module (or entry-point object) attribute ``HPCJOBS_PLUGIN_API``; it loads when
the major versions are equal and its minor version is not newer than the core's. Additions bump the
minor version, changes the major."""

Mode = Literal["run", "exec"]
"""``run``: keep the image ENTRYPOINT (the job set at most a command); ``exec``: the job's entrypoint
replaces it (Docker semantics)."""


# --------------------------------------------------------------------------- resolved job


@dataclass(frozen=True)
class ResolvedJob:
    """Everything the plan needs, already decided by ``resolve``. Values only; no I/O handles.

    The flat fields are the storage (``dataclasses.replace`` works on them); plugins should read the
    four parts, which group them. ``provenance`` maps a setting (``ntasks``, ``env:NAME``,
    ``bind:DST``, ``runtime_flags[i]`` …) to where its value came from.
    """

    name: str
    image: str
    partition: str
    nodes: int
    ntasks: int
    cpus_per_task: int | None
    gpus: int
    mem_gb: float | None
    time_min: int | None
    mpi: str
    account: str | None
    qos: str | None
    array: str | None
    output: str
    extra_sbatch: tuple[str, ...]
    mode: Mode
    args: tuple[str, ...]
    binds: tuple[Bind, ...]
    unchecked_bind_sources: tuple[str, ...]
    env: Mapping[str, str]
    launch_env: Mapping[str, str]
    workdir: str | None
    runtime: str
    runtime_binary: str | None
    runtime_flags: tuple[str, ...]
    cleanenv: bool
    gpu_flag: str | None
    gpu_request: str
    gpu_type: str | None
    mpirun: str
    site: str
    provenance: Mapping[str, str] = field(default_factory=dict)
    image_ref: str | None = None
    image_digest: str | None = None
    dependency: str | None = None
    # with a bind deny list, binds may only come from the spec: drop APPTAINER_BIND & co. from the login env
    clear_bind_env: bool = False
    wrappers: tuple[str, ...] = ()
    # most array tasks running at once (Slurm's %N); already appended to ``array`` when that has none
    array_throttle: int | None = None
    # the site config's ``plugins:`` sections, as validated mappings (read yours with your own model)
    plugin_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # set when nobody published a site config: "discovered from the cluster NAME, cached in FILE"
    site_origin: str | None = None
    # mode exec: how many leading words of ``args`` are the job's entrypoint (the rest: its command)
    entrypoint_len: int = 0
    # API 1.2: the options for the launcher that serves ``mpi`` (site, partition, job, CLI laid over
    # each other; provenance ``launcher_options[i]``), and the lines --explain shows for options that
    # do not apply (another launcher's, or any for a single task)
    launcher_options: tuple[str, ...] = ()
    launcher_notes: tuple[str, ...] = ()
    # what a failed MPI pre-flight does: refuse, warn or off (hpcjobs.mpi.check)
    mpi_check: str = "refuse"
    # header notes from checks made before submission (the MPI pre-flight's verdict)
    preflight: tuple[str, ...] = ()
    # API 1.3: the tasks' standard streams may be a terminal: a local run whose output goes to one
    # (set by run_local). Batch tasks never have one (file output, stdin /dev/null).
    stdio_tty: bool = False

    @property
    def resources(self) -> Resources:
        from hpcjobs.plugin_api_parts import Resources

        return Resources(self.nodes, self.ntasks, self.cpus_per_task, self.gpus, self.mem_gb, self.time_min)

    @property
    def sbatch(self) -> SbatchPart:
        from hpcjobs.plugin_api_parts import SbatchPart

        return SbatchPart(
            self.name, self.partition, self.account, self.qos, self.array, self.output, self.dependency,
            self.extra_sbatch, self.gpu_request, self.gpu_type,
        )  # fmt: skip

    @property
    def container(self) -> ContainerPart:
        from hpcjobs.plugin_api_parts import ContainerPart

        return ContainerPart(
            self.runtime, self.runtime_binary, self.runtime_flags, self.image, self.image_ref, self.image_digest,
            self.mode, self.args, self.binds, self.env, self.workdir, self.cleanenv, self.gpu_flag,
            self.clear_bind_env,
        )  # fmt: skip

    @property
    def launch(self) -> LaunchPart:
        from hpcjobs.plugin_api_parts import LaunchPart

        return LaunchPart(self.mpi, self.mpirun, self.launch_env, self.wrappers, self.launcher_options, self.stdio_tty)

    @property
    def multi_task(self) -> bool:
        """More than one task or node: the tasks are started by a launcher."""
        return self.ntasks > 1 or self.nodes > 1

    def source(self, key: str) -> str:
        """Where setting ``key`` came from, in the words ``--explain`` uses."""
        src = self.provenance.get(key, BUILTIN)
        return "CLI override (--set)" if src == "cli" else src




# --------------------------------------------------------------------------- launch plan

Role = Literal["launcher", "wrapper", "runtime", "image", "program", "arguments"]
"""What a group of command words is: the launcher's prefix, a wrapper's words (profiler, env
forwarding), the runtime's own words and flags, the image, then either the program and its
arguments (the job's entrypoint replaced the image's) or only arguments to the image's own
ENTRYPOINT (mode run)."""


@dataclass(frozen=True)
class Words:
    """Consecutive command words with one provenance (one row of ``--explain``)."""

    argv: tuple[str, ...]
    source: str  # why these words are there, e.g. "bind: partition gpu"
    role: Role
    plugin: str = ""  # the plugin that added them

    def __post_init__(self) -> None:
        if not self.argv:
            raise PluginError(f"plugin {self.plugin or '?'}: empty word group ({self.source})")
        for w in self.argv:
            if not isinstance(w, str):
                raise PluginError(f"plugin {self.plugin or '?'}: command word {w!r} is not a string")


@dataclass(frozen=True)
class Directive:
    """``#SBATCH OPTION[=VALUE]``; render quotes VALUE for sbatch's own parser."""

    option: str  # --partition
    value: str | None  # None: a flag (--exclusive)
    source: str | None = None


@dataclass(frozen=True)
class EnvVar:
    """``export NAME=VALUE`` in the batch script, VALUE literal (render quotes it). A runtime that
    injects variables into the container (APPTAINERENV_NAME) applies its own escaping before."""

    name: str
    value: str
    source: str | None = None


@dataclass(frozen=True)
class ScriptLine:
    """A line of the batch script before the command: ``argv`` (quoted by render) or ``code``.

    ``code`` is shell the plugin wrote itself from constants (a function definition, ``unset``);
    never put a job value in it: use ``argv`` or an :class:`EnvVar`. ``explain_only`` lines appear
    only in ``render --explain`` (``code`` must then be a comment).
    """

    code: str = ""
    argv: tuple[str, ...] = ()
    source: str | None = None
    explain_only: bool = False


@dataclass
class LaunchPlan:
    """The batch script as data. Stages append; wrappers may also insert command words."""

    comments: list[str] = field(default_factory=list)  # header comment lines (without '# ')
    directives: list[Directive] = field(default_factory=list)
    shell_options: str = "-eo pipefail"
    prologue: list[ScriptLine] = field(default_factory=list)  # before the environment
    env: list[EnvVar] = field(default_factory=list)
    epilogue: list[ScriptLine] = field(default_factory=list)  # after the environment
    command: list[Words] = field(default_factory=list)  # run with exec, words in order

    def argv(self) -> list[str]:
        """The command as one argv list."""
        return [w for group in self.command for w in group.argv]

    def add(self, words: Words) -> None:
        self.command.append(words)

    def index(self, role: Role) -> int | None:
        """Index of the first group with ``role``, or None."""
        return next((i for i, g in enumerate(self.command) if g.role == role), None)

    def wrap_outside(self, words: Words) -> None:
        """Insert ``words`` before the container (after the launcher): runs once per task on the host."""
        first = next((i for i, g in enumerate(self.command) if g.role not in ("launcher", "wrapper")), None)
        self.command.insert(len(self.command) if first is None else first, words)

    def wrap_inside(self, words: Words) -> None:
        """Insert ``words`` before the program inside the container (after the image). Only possible
        when the job names its program (an entrypoint): with the image's own ENTRYPOINT the core
        cannot know what runs."""
        at = self.index("program")
        if at is None:
            raise PluginError(
                f"{words.plugin or 'a wrapper'} wraps the program inside the container, but the job runs the "
                "image's own ENTRYPOINT: set the job's entrypoint (the program to wrap)"
            )
        self.command.insert(at, words)


# --------------------------------------------------------------------------- plugin kinds


class PlanSubmitter(Protocol):
    """Submits a plan the core renders (the image conversion job); given to image preparation."""

    def submit_plan(self, plan: LaunchPlan, *, cwd: str | None = None) -> str:
        """Render and submit ``plan``; the job id."""
        ...

    def is_active(self, job_id: str) -> bool:
        """Whether the job is still queued or running (False when unknown)."""
        ...


@dataclass(frozen=True)
class ImageContext:
    """What a runtime's image preparation may use. With ``pin`` it names the image the job would run
    without side effects (for ``render``): nothing converted, pulled, leased or submitted."""

    site: Any  # hpcjobs.config.site.SiteConfig
    runner: Any = None  # hpcjobs.runner.Runner | None: the process seam
    submitter: PlanSubmitter | None = None  # None: no batch job may be submitted
    pin: bool = False
    cache_dir: str | None = None


class Runtime(Protocol):
    """A container runtime: prepares the image and adds environment, lines and container words."""

    name: str
    default_binary: str
    gpu_flags: Sequence[str]  # values of gpu.flag this runtime understands ("none": no flag)

    def mounts_host_path(self, flag: str) -> bool:
        """Whether a runtime flag (``--bind``, ``-v`` …) mounts a host path: the bind policy refuses
        such flags while the site has a deny list."""
        ...

    def prepare_image(self, job: ResolvedJob, ctx: ImageContext) -> ResolvedJob:
        """``job`` with ``image`` what this runtime runs (and ``image_ref``/``image_digest`` set),
        and maybe a ``dependency`` on a conversion job submitted through ``ctx.submitter``."""
        ...

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        """Add the environment, script lines and the container words (roles runtime, image, program)."""
        ...


class Launcher(Protocol):
    """Starts the tasks of a multi-task job: ``srun --mpi=pmix``, ``mpirun -np N``.

    A launcher that takes options (API 1.2) also has ``option_problem(option) -> str | None`` (why
    an entry of ``launcher_options.<name>`` is refused; called when a site config or job is
    validated) and may have ``option_key(option) -> str`` (what an option sets: a higher layer's
    option with the same key replaces a lower one's); its :meth:`contribute` adds every entry of
    :attr:`ResolvedJob.launcher_options` (role launcher). Options for a launcher without
    ``option_problem`` are refused, so a 1.0/1.1 launcher never drops them silently.
    """

    name: str
    mpi_kinds: Sequence[str]  # the values of ``mpi`` this launcher serves

    def handles(self, job: ResolvedJob) -> bool: ...

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        """Add launcher words (role launcher) and the launch environment."""
        ...


class Wrapper(Protocol):
    """Wraps each task (a profiler, a debugger): named by a job's or site's ``wrappers``."""

    name: str

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        """Insert words with :meth:`LaunchPlan.wrap_outside` / :meth:`LaunchPlan.wrap_inside`."""
        ...


class Target(Protocol):
    """Another place to run the same job (``--target NAME``; the built-in default ``slurm`` is the
    sbatch path). It renders the resolved job as text and submits, reads back and prints logs only
    through the injected Runner (argv lists). Image preparation and host checks are the Slurm path's:
    a target gets the job straight from ``resolve``."""

    name: str

    def render(self, job: ResolvedJob) -> str:
        """The job as this target's text (a manifest …). Pure; refuses what it cannot express."""
        ...

    def submit(self, job: ResolvedJob, text: str, runner: Any) -> str:
        """Submit ``text`` (from :meth:`render`); the job id."""
        ...

    def status(
        self, job_ids: Sequence[str], settings: Mapping[str, Mapping[str, Any]], runner: Any
    ) -> Mapping[str, TargetStatus]:
        """The state of each job; ``settings`` are the site's ``plugins:`` sections."""
        ...

    def logs(self, job_id: str, settings: Mapping[str, Mapping[str, Any]], runner: Any) -> str:
        """The job's output."""
        ...


class SweepPoint(Protocol):
    """One point of a sweep (:class:`hpcjobs.sweep.points.Point` is one): ``args`` follow the job's
    command, ``env`` is laid over its environment."""

    @property
    def args(self) -> tuple[str, ...]: ...

    @property
    def env(self) -> Mapping[str, str]: ...


class SweepTarget(Target, Protocol):
    """A target that also runs sweeps (a job file's ``sweep:``, ``ContainerJob.map``): optional,
    found by :func:`supports_sweeps`. A target without it refuses sweeps in the core."""

    def render_sweep(self, job: ResolvedJob, points: Sequence[SweepPoint]) -> str:
        """One task per point: ``points[i].args`` after the job's command, ``points[i].env`` over its
        environment, byte for byte. Pure; the text goes to :meth:`Target.submit`."""
        ...


_PARTS = ("ContainerPart", "LaunchPart", "Resources", "SbatchPart", "TargetStatus")


def __getattr__(name: str) -> Any:
    """The rarely used parts of the contract, created on first use (:mod:`hpcjobs.plugin_api_parts`)."""
    if name in _PARTS:
        from hpcjobs import plugin_api_parts

        value = getattr(plugin_api_parts, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def supports_sweeps(target: Target) -> bool:
    return callable(getattr(target, "render_sweep", None))


# --------------------------------------------------------------------------- hooks


class HookSpecs:
    """The hooks a plugin module implements (decorate with :data:`hookimpl`). All are optional."""

    @hookspec
    def hpcjobs_runtimes(self) -> Sequence[Runtime]:  # type: ignore[empty-body]
        """Container runtimes this plugin provides."""

    @hookspec
    def hpcjobs_launchers(self) -> Sequence[Launcher]:  # type: ignore[empty-body]
        """Task launchers this plugin provides."""

    @hookspec
    def hpcjobs_wrappers(self) -> Sequence[Wrapper]:  # type: ignore[empty-body]
        """Task wrappers (profilers …) this plugin provides, selected by name."""

    @hookspec
    def hpcjobs_targets(self) -> Sequence[Target]:  # type: ignore[empty-body]
        """Targets (``--target NAME``) this plugin provides (API 1.1)."""

    @hookspec
    def hpcjobs_site_sections(self) -> Mapping[str, type[BaseModel]]:  # type: ignore[empty-body]
        """Site-config sections (under ``plugins:``) this plugin validates, by section name."""

    @hookspec
    def hpcjobs_plan(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        """Last stage for every job (site hooks): may add to ``plan``; runs after the wrappers."""


# --------------------------------------------------------------------------- versions


def parse_api_version(text: object) -> tuple[int, int]:
    if not isinstance(text, str):
        raise PluginError(f"HPCJOBS_PLUGIN_API must be a string like {HPCJOBS_PLUGIN_API!r}, got {text!r}")
    major, sep, minor = text.partition(".")
    if not (major.isdigit() and (not sep or minor.isdigit())):
        raise PluginError(f"HPCJOBS_PLUGIN_API {text!r} is not MAJOR.MINOR")
    return int(major), int(minor or 0)


def check_api_version(wanted: object) -> None:
    """Raise PluginError unless a plugin written against API ``wanted`` can run on this core."""
    major, minor = parse_api_version(wanted)
    core_major, core_minor = parse_api_version(HPCJOBS_PLUGIN_API)
    if major != core_major or minor > core_minor:
        raise PluginError(f"written for plugin API {wanted}, this hpcjobs provides {HPCJOBS_PLUGIN_API}")


__all__ = [
    "BUILTIN",
    "GROUP",
    "HPCJOBS_PLUGIN_API",
    "ContainerPart",
    "Directive",
    "EnvVar",
    "HookSpecs",
    "ImageContext",
    "LaunchPart",
    "LaunchPlan",
    "Launcher",
    "Mode",
    "PlanSubmitter",
    "ResolvedJob",
    "Resources",
    "Role",
    "Runtime",
    "SbatchPart",
    "ScriptLine",
    "SweepPoint",
    "SweepTarget",
    "Target",
    "TargetStatus",
    "Words",
    "Wrapper",
    "check_api_version",
    "hookimpl",
    "hookspec",
    "parse_api_version",
    "supports_sweeps",
]  # fmt: skip
