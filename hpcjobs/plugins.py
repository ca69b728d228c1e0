"""Plugin loading and lookup: pluggy, entry-point group ``hpcjobs`` (the contract: plugin_api).

Built-in runtimes and launchers register through the same entry points as third-party plugins.
A plugin that fails to load (import error, API version it was not written for, a hook that raises)
breaks nothing else: it is recorded, named when something asks for what it would have provided,
and listed by ``hpcjobs plugins``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from hpcjobs.errors import ConfigError, PluginError
from hpcjobs.plugin_api import (
    GROUP,
    HookSpecs,
    Launcher,
    ResolvedJob,
    Runtime,
    Target,
    Wrapper,
    check_api_version,
    hookimpl,
    hookspec,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "GROUP", "ContainerRuntime", "Launcher", "PluginFailure", "PluginInfo", "Runtime", "Wrapper", "failure_note",
    "failures",
    "get_launcher", "get_runtime", "get_target", "get_wrapper", "gpu_flags",
    "hookimpl", "hookspec", "launchers", "mpi_kinds",
    "plugin_infos", "plugin_manager", "runtimes", "site_sections", "targets", "wrappers",
]  # fmt: skip

ContainerRuntime = Runtime  # the name before plugin API 1.0

BUILTIN_MODULES = (
    "hpcjobs.runtimes.apptainer",
    "hpcjobs.runtimes.singularity",
    "hpcjobs.launchers.srun",
    "hpcjobs.launchers.mpirun",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that did not load or whose hook raised."""

    name: str
    dist: str | None
    version: str | None
    error: str

    def describe(self) -> str:
        where = f" ({self.dist} {self.version})" if self.dist else ""
        return f"plugin {self.name!r}{where} failed: {self.error}"


@dataclass
class _Registry:
    pm: pluggy.PluginManager
    dists: dict[str, tuple[str | None, str | None, str]] = field(default_factory=dict)  # name -> dist, ver, api
    failures: dict[str, PluginFailure] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _registry() -> _Registry:
    import importlib

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(HookSpecs)
    reg = _Registry(pm)
    for ep in _entry_points():
        if pm.get_plugin(ep.name) is not None or ep.name in reg.failures:
            continue
        dist_name, version = ep.dist, ep.version
        try:
            obj = ep.load()
            api = getattr(obj, "HPCJOBS_PLUGIN_API", None)
            if api is None:
                raise PluginError("declares no HPCJOBS_PLUGIN_API (the plugin API version it was written for)")
            check_api_version(api)
            pm.register(obj, name=ep.name)
        except Exception as exc:  # any failure of third-party code: recorded, reported when asked for
            reg.failures[ep.name] = PluginFailure(ep.name, dist_name, version, _exc_text(exc))
            continue
        reg.dists[ep.name] = (dist_name, version, str(api))
    # Running from a source tree without an install has no entry points: register built-ins directly.
    for modname in BUILTIN_MODULES:
        short = modname.rsplit(".", 1)[-1]
        if pm.get_plugin(short) is None and short not in reg.failures:
            mod = importlib.import_module(modname)
            if not pm.is_registered(mod):
                pm.register(mod, name=short)
                reg.dists[short] = ("hpcjobs", None, str(getattr(mod, "HPCJOBS_PLUGIN_API", "")))
    import sys

    if "logging" in sys.modules:  # a plugin that logs through logging gets the CLI's handler, as before
        from hpcjobs.log import apply_pending

        apply_pending()
    return reg


DISABLE_ENV = "HPCJOBS_DISABLE_PLUGINS"
"""Comma-separated entry-point or distribution names not to load (``hpcjobs-podman,profile``): turn
off an installed third-party plugin without uninstalling it. Built-ins always load."""


def _entry_points() -> Sequence[Any]:
    import os

    # importlib.metadata's answer, cached per user keyed by the installed distributions (a warm
    # CLI call then reads no package metadata); loading and failure reporting are unchanged
    from hpcjobs.plugin_index import entry_points

    off = {n.strip().lower() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    found = entry_points(GROUP)
    if not off:
        return found
    return [ep for ep in found if ep.name.lower() not in off and (ep.dist or "").lower() not in off]


def _exc_text(exc: BaseException) -> str:
    """One line: our own errors as they are, anything else with its type."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if isinstance(exc, PluginError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def plugin_manager() -> pluggy.PluginManager:
    return _registry().pm


def _reset() -> None:
    """Forget loaded plugins (tests that install or break entry points)."""
    _registry.cache_clear()


def _collect(hook_name: str) -> list[tuple[str, Any]]:
    """Each registered plugin's answer to a provider hook; a plugin whose hook raises is recorded
    as failed and left out."""
    reg = _registry()
    out: list[tuple[str, Any]] = []
    for impl in getattr(reg.pm.hook, hook_name).get_hookimpls():
        try:
            answer = getattr(impl.plugin, hook_name)()
            result = dict(answer) if isinstance(answer, Mapping) else list(answer)
        except Exception as exc:
            reg.failures.setdefault(
                impl.plugin_name,
                PluginFailure(impl.plugin_name, *reg.dists.get(impl.plugin_name, (None, None, ""))[:2],
                              f"{hook_name} raised {_exc_text(exc)}"),
            )
            continue
        out.append((impl.plugin_name, result))
    return out


def failures() -> list[PluginFailure]:
    """Plugins that failed to load or to answer (after every provider hook was asked)."""
    hooks = ("hpcjobs_runtimes", "hpcjobs_launchers", "hpcjobs_wrappers", "hpcjobs_targets", "hpcjobs_site_sections")
    for hook in hooks:
        _collect(hook)
    return sorted(_registry().failures.values(), key=lambda f: f.name)


def failure_note(name: str) -> str:
    """The load failures to mention when ``name`` was asked for and not found ('' when none)."""
    fails = _registry().failures
    if name in fails:
        return f"; {fails[name].describe()}"
    if fails:
        return "; plugins that failed to load: " + "; ".join(f.describe() for f in sorted(
            fails.values(), key=lambda f: f.name))
    return ""


def runtimes() -> dict[str, Runtime]:
    found: dict[str, Runtime] = {}
    for _plugin, items in _collect("hpcjobs_runtimes"):
        for rt in items:
            found.setdefault(rt.name, rt)
    return found


def launchers() -> list[Launcher]:
    return [ln for _plugin, items in _collect("hpcjobs_launchers") for ln in items]


def wrappers() -> dict[str, Wrapper]:
    found: dict[str, Wrapper] = {}
    for _plugin, items in _collect("hpcjobs_wrappers"):
        for w in items:
            found.setdefault(w.name, w)
    return found


def targets() -> dict[str, Target]:
    """Targets plugins provide (``--target NAME``); ``slurm``, the sbatch path, is the core's own."""
    found: dict[str, Target] = {}
    for _plugin, items in _collect("hpcjobs_targets"):
        for t in items:
            found.setdefault(t.name, t)
    return found


def get_target(name: str) -> Target:
    found = targets()
    if name not in found:
        have = ", ".join(["slurm", *sorted(found)])
        raise ConfigError(f"target {name!r} is not provided by any plugin (have: {have})" + failure_note(name))
    return found[name]


def gpu_flags() -> dict[str, list[str]]:
    """GPU flag name → the runtimes that understand it."""
    out: dict[str, list[str]] = {}
    for rt in runtimes().values():
        for flag in getattr(rt, "gpu_flags", ()):
            out.setdefault(flag, []).append(rt.name)
    return out


def mpi_kinds() -> dict[str, list[str]]:
    """``mpi`` value → the launchers that serve it."""
    out: dict[str, list[str]] = {}
    for ln in launchers():
        for kind in getattr(ln, "mpi_kinds", ()):
            out.setdefault(kind, []).append(ln.name)
    return out


def site_sections() -> dict[str, tuple[str, type[BaseModel]]]:
    """Section name → (plugin name, model)."""
    found: dict[str, tuple[str, type[BaseModel]]] = {}
    for plugin, sections in _collect("hpcjobs_site_sections"):
        for key, model in sections.items():
            found[key] = (plugin, model)
    return found


def get_runtime(name: str) -> Runtime:
    rts = runtimes()
    if name not in rts:
        raise ConfigError(
            f"container runtime {name!r} is not provided by any plugin (have: {', '.join(sorted(rts))})"
            + failure_note(name)
        )
    return rts[name]


def get_wrapper(name: str) -> Wrapper:
    found = wrappers()
    if name not in found:
        have = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(f"wrapper {name!r} is not provided by any plugin (have: {have})" + failure_note(name))
    return found[name]


def get_launcher(job: ResolvedJob) -> Launcher | None:
    """The launcher for a job, or None when the program runs directly in the batch step."""
    if not job.multi_task:
        return None
    for ln in launchers():
        if job.mpi in getattr(ln, "mpi_kinds", ()) and ln.handles(job):
            return ln
    raise ConfigError(
        f"no launcher serves mpi {job.mpi!r} (have: {', '.join(sorted(mpi_kinds()))})" + failure_note(job.mpi)
    )


def declared_names(kind: str) -> list[str]:
    """The names plugins declare for ``kind`` (``mpi``, ``gpu_flag``, ``runtime``, ``wrapper``),
    sorted, ``none`` last."""
    lookups: dict[str, Callable[[], Mapping[str, Any]]] = {
        "mpi": mpi_kinds, "gpu_flag": gpu_flags, "runtime": runtimes, "wrapper": wrappers,
    }  # fmt: skip
    return sorted(lookups[kind](), key=lambda n: (n == "none", n))


def check_name(kind: str, name: str) -> str:
    """Validate a plugin-declared name (``mpi``, ``gpu_flag``, ``runtime``, ``wrapper``); the error
    lists the valid ones and any plugin that failed to load."""
    names = declared_names(kind)
    if name not in names:
        quoted = [repr(n) for n in names]
        expected = (", ".join(quoted[:-1]) + " or " + quoted[-1]) if len(quoted) > 1 else "".join(quoted) or "nothing"
        raise ValueError(f"expected {expected}, got {name!r}" + failure_note(name))
    return name


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``hpcjobs plugins``."""

    name: str
    dist: str | None
    version: str | None
    api: str
    provides: dict[str, list[str]]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.dist, "version": self.version, "api": self.api,
                "provides": self.provides, "error": self.error}


def plugin_infos() -> list[PluginInfo]:
    """Every plugin: loaded ones with what they provide, failed ones with why."""
    from hpcjobs._version import __version__

    reg = _registry()
    provides: dict[str, dict[str, list[str]]] = {}
    for hook, kind in (("hpcjobs_runtimes", "runtimes"), ("hpcjobs_launchers", "launchers"),
                       ("hpcjobs_wrappers", "wrappers"), ("hpcjobs_targets", "targets")):
        for plugin, items in _collect(hook):
            provides.setdefault(plugin, {}).setdefault(kind, []).extend(i.name for i in items)
            for i in items:
                for attr, label in (("gpu_flags", "gpu flags"), ("mpi_kinds", "mpi")):
                    names = list(getattr(i, attr, ()))
                    if names:
                        listed = provides[plugin].setdefault(label, [])
                        # two runtimes of one plugin may share flags (podman, docker): list each once
                        listed.extend(n for n in names if n not in listed)
    for plugin, sections in _collect("hpcjobs_site_sections"):
        provides.setdefault(plugin, {}).setdefault("site sections", []).extend(sections)
    for plugin, _impl in _collect_plan_hooks():
        provides.setdefault(plugin, {}).setdefault("hooks", []).append("hpcjobs_plan")
    out: list[PluginInfo] = []
    for name, obj in reg.pm.list_name_plugin():
        if name in reg.failures:
            continue
        dist, version, api = reg.dists.get(name, (None, None, str(getattr(obj, "HPCJOBS_PLUGIN_API", ""))))
        if dist == "hpcjobs" and version is None:
            version = __version__
        out.append(PluginInfo(name, dist, version, api, provides.get(name, {})))
    for fail in reg.failures.values():
        out.append(PluginInfo(fail.name, fail.dist, fail.version, "", {}, fail.error))
    return sorted(out, key=lambda p: p.name)


def _collect_plan_hooks() -> list[tuple[str, Any]]:
    return [(impl.plugin_name, impl) for impl in _registry().pm.hook.hpcjobs_plan.get_hookimpls()]
