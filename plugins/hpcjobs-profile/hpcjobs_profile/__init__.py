"""Task profilers for hpcjobs: ``nsys``, ``perf-stat`` and ``strace`` wrappers.

Each wraps every task of a job (one report per rank, named from the Slurm job id and the rank),
outside the container (on the host, around the runtime) or inside it (around the job's program),
as the site config's ``plugins.profile`` section chooses. Uses only :mod:`hpcjobs.plugin_api`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpcjobs.plugin_api import Wrapper, hookimpl

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hpcjobs_profile.wrappers import NsysWrapper, PerfStatWrapper, ProfileSettings, StraceWrapper

__version__ = "0.1.0"
HPCJOBS_PLUGIN_API = "1.0"  # the contract version this plugin was written against

__all__ = ["HPCJOBS_PLUGIN_API", "NsysWrapper", "PerfStatWrapper", "ProfileSettings", "StraceWrapper"]


def __getattr__(name: str) -> Any:
    # hpcjobs loads every plugin on each render and submit: the wrappers and their settings' model
    # classes are imported when a job or site names a wrapper, or a caller asks for them
    if name in __all__:
        from hpcjobs_profile import wrappers

        return getattr(wrappers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def hpcjobs_wrappers() -> Sequence[Wrapper]:
    from hpcjobs_profile.wrappers import NsysWrapper, PerfStatWrapper, StraceWrapper

    return [NsysWrapper(), PerfStatWrapper(), StraceWrapper()]


@hookimpl
def hpcjobs_site_sections() -> Mapping[str, type[BaseModel]]:
    from hpcjobs_profile.wrappers import ProfileSettings

    return {"profile": ProfileSettings}
