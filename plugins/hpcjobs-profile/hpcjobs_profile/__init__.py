"""Task profilers for hpcjobs: ``nsys``, ``perf-stat`` and ``strace`` wrappers.

Each wraps every task of a job (one report per rank, named from the Slurm job id and the rank),
outside the container (on the host, around the runtime) or inside it (around the job's program),
as the site config's ``plugins.profile`` section chooses. Uses only :mod:`hpcjobs.plugin_api`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hpcjobs.plugin_api import Wrapper, hookimpl
from hpcjobs_profile.wrappers import NsysWrapper, PerfStatWrapper, ProfileSettings, StraceWrapper

if TYPE_CHECKING:
    from pydantic import BaseModel

__version__ = "0.1.0"
HPCJOBS_PLUGIN_API = "1.0"  # the contract version this plugin was written against

__all__ = ["HPCJOBS_PLUGIN_API", "NsysWrapper", "PerfStatWrapper", "ProfileSettings", "StraceWrapper"]


@hookimpl
def hpcjobs_wrappers() -> Sequence[Wrapper]:
    return [NsysWrapper(), PerfStatWrapper(), StraceWrapper()]


@hookimpl
def hpcjobs_site_sections() -> Mapping[str, type[BaseModel]]:
    return {"profile": ProfileSettings}
