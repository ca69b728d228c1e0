"""Plugin system: pluggy hookspecs, entry-point group ``hpcjobs``.

Built-in runtimes and launchers register through the same entry points as third-party
plugins. A plugin that fails to load or answer is named in the error.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from hpcjobs.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hpcjobs.resolve import ResolvedJob

GROUP = "hpcjobs"
hookspec = pluggy.HookspecMarker(GROUP)
hookimpl = pluggy.HookimplMarker(GROUP)

BUILTIN_MODULES = (
    "hpcjobs.runtimes.apptainer",
    "hpcjobs.runtimes.singularity",
    "hpcjobs.launchers.srun",
    "hpcjobs.launchers.mpirun",
)


class ContainerRuntime(Protocol):
    """Builds the container part of the command: ``apptainer run|exec [flags] IMAGE [ARGS]``."""

    name: str
    default_binary: str
    env_prefix: str  # APPTAINERENV_ / SINGULARITYENV_: host variables that reach the container

    def argv(self, job: ResolvedJob) -> list[str]: ...


class Launcher(Protocol):
    """Builds the prefix that starts the tasks: ``srun --mpi=pmix`` or ``mpirun -np N``."""

    name: str

    def handles(self, job: ResolvedJob) -> bool: ...

    def argv(self, job: ResolvedJob) -> list[str]: ...


class HookSpecs:
    @hookspec
    def hpcjobs_runtimes(self) -> Sequence[ContainerRuntime]:  # type: ignore[empty-body]
        """Container runtimes this plugin provides."""

    @hookspec
    def hpcjobs_launchers(self) -> Sequence[Launcher]:  # type: ignore[empty-body]
        """Task launchers this plugin provides."""

    @hookspec
    def hpcjobs_site_sections(self) -> Mapping[str, type[BaseModel]]:  # type: ignore[empty-body]
        """Site-config sections (under ``plugins:``) this plugin validates, by section name."""


@functools.lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(HookSpecs)
    try:
        pm.load_setuptools_entrypoints(GROUP)
    except Exception as exc:  # a broken third-party entry point: say which
        name = getattr(exc, "name", None) or str(exc)
        raise PluginError(f"plugin entry point in group {GROUP!r} failed to load: {name}: {exc}") from exc
    # Running from a source tree without an install has no entry points: register built-ins directly.
    for modname in BUILTIN_MODULES:
        mod = importlib.import_module(modname)
        if not pm.is_registered(mod) and pm.get_plugin(modname.rsplit(".", 1)[-1]) is None:
            pm.register(mod, name=modname.rsplit(".", 1)[-1])
    return pm


def _collect(hook_name: str) -> list[tuple[str, Any]]:
    pm = plugin_manager()
    out: list[tuple[str, Any]] = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        try:
            result = getattr(impl.plugin, hook_name)()
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc}") from exc
        out.append((impl.plugin_name, result))
    return out


def runtimes() -> dict[str, ContainerRuntime]:
    found: dict[str, ContainerRuntime] = {}
    for _plugin, items in _collect("hpcjobs_runtimes"):
        for rt in items:
            found.setdefault(rt.name, rt)
    return found


def launchers() -> list[Launcher]:
    return [ln for _plugin, items in _collect("hpcjobs_launchers") for ln in items]


def site_sections() -> dict[str, tuple[str, type[BaseModel]]]:
    """Section name → (plugin name, model)."""
    found: dict[str, tuple[str, type[BaseModel]]] = {}
    for plugin, sections in _collect("hpcjobs_site_sections"):
        for key, model in sections.items():
            found[key] = (plugin, model)
    return found


def get_runtime(name: str) -> ContainerRuntime:
    rts = runtimes()
    if name not in rts:
        raise ConfigError(f"container runtime {name!r} is not provided by any plugin (have: {', '.join(sorted(rts))})")
    return rts[name]


def get_launcher(job: ResolvedJob) -> Launcher | None:
    """The launcher for a job, or None when the program runs directly in the batch step."""
    for ln in launchers():
        if ln.handles(job):
            return ln
    return None
