"""Skip pydantic's plugin lookup in a CLI call when no installed distribution declares a pydantic plugin.

The first validator pydantic builds calls ``pydantic.plugin._loader.get_plugins()``, which imports
``importlib.metadata`` (email, zipfile, csv …) and reads every installed distribution's entry
points: about 15 ms of CPU in a call that renders a job (docs/benchmarks.md). hpcjobs' entry-point
table (:mod:`hpcjobs.plugin_index`, keyed by the installed distributions) already holds the group
``pydantic``. When that group is empty, pydantic's lookup can find nothing, so :func:`skip_lookup`
registers a stand-in for ``pydantic.plugin._loader`` whose ``get_plugins()`` answers what the real
one would: no plugins. Any other name asked of the stand-in comes from the real module, loaded then.

Only the CLI's ``render`` and ``submit`` call it (hpcjobs owns that process; the library never
does). The normal path runs whenever the stand-in might differ from what pydantic expects: a pydantic
other than 2.x, its ``_loader`` already imported or not where pydantic 2 keeps it, an entry point
in the group ``pydantic``, or the entry-point cache turned off (``HPCJOBS_NO_SITE_CACHE=1``: the
answer would need ``importlib.metadata`` anyway). ``PYDANTIC_DISABLE_PLUGINS`` needs no case: with
no plugin installed, pydantic returns none whatever it says.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

LOADER = "pydantic.plugin._loader"
_GROUP = "pydantic"  # pydantic's PYDANTIC_ENTRY_POINT_GROUP


class _NoPluginsLoader(ModuleType):
    """``pydantic.plugin._loader`` when no distribution declares a pydantic plugin."""

    PYDANTIC_ENTRY_POINT_GROUP = _GROUP

    def __init__(self, real: ModuleSpec) -> None:
        super().__init__(LOADER, __doc__)
        self.__spec__ = real  # importlib.reload runs the real module in its place
        self.__file__ = real.origin
        self.__package__ = LOADER.rpartition(".")[0]
        self._plugins: dict[str, Any] = {}  # what the real module holds after a lookup found nothing
        self._loading_plugins = False

    @staticmethod
    def get_plugins(*_args: Any, **_kwargs: Any) -> tuple[()]:
        return ()

    def __getattr__(self, name: str) -> Any:
        # A name pydantic's loader may define that the stand-in does not: the real module's, run
        # under the same name but not registered, so that its own lookup is not what pydantic calls.
        if name.startswith("__"):
            raise AttributeError(name)
        import importlib.util

        real = self.__dict__.get("_real")
        if real is None:
            spec = self.__spec__
            if spec is None or spec.loader is None:
                raise AttributeError(name)
            real = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(real)
            self.__dict__["_real"] = real
        return getattr(real, name)


def skip_lookup(env: Mapping[str, str] | None = None) -> bool:
    """Register the stand-in when it is safe (see the module); whether it did."""
    if LOADER in sys.modules:
        return False
    from hpcjobs import plugin_index, user_cache

    if not user_cache.enabled(env) or plugin_index.entry_points(_GROUP, env):
        return False
    real = _real_loader_spec()
    if real is None:
        return False
    stand_in = _NoPluginsLoader(real)
    sys.modules[LOADER] = stand_in
    vars(sys.modules["pydantic.plugin"])["_loader"] = stand_in  # as an import would set it
    return True


def _real_loader_spec() -> ModuleSpec | None:
    """Where pydantic 2 keeps its plugin loader, when the installed pydantic is 2.x."""
    import importlib.util

    try:
        from pydantic.version import VERSION

        if not VERSION.startswith("2."):
            return None
        spec = importlib.util.find_spec(LOADER)
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None or spec.loader is None or not str(spec.origin).endswith("_loader.py"):
        return None
    return spec
