"""Podman as an hpcjobs runtime, in the shape HPC sites deploy it.

Rootless, host network and PID namespace, the user's own uid inside (``--userns keep-id``), one
container per task under ``srun``. Images come from Podman's own store: ``docker://`` references are
pulled into it (with the registry's TLS setting from the site config) and pinned by digest; nothing
goes through SIF conversion. Everything here uses only the plugin contract, :mod:`hpcjobs.plugin_api`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hpcjobs.plugin_api import Runtime, hookimpl
from hpcjobs_podman.runtime import DockerRuntime, DockerSettings, PodmanRuntime, PodmanSettings

if TYPE_CHECKING:
    from pydantic import BaseModel

__version__ = "0.1.0"
# the contract version this plugin was written against (not the core's: the core checks this one)
HPCJOBS_PLUGIN_API = "1.0"

__all__ = ["HPCJOBS_PLUGIN_API", "DockerRuntime", "DockerSettings", "PodmanRuntime", "PodmanSettings"]


@hookimpl
def hpcjobs_runtimes() -> Sequence[Runtime]:
    return [PodmanRuntime(), DockerRuntime()]


@hookimpl
def hpcjobs_site_sections() -> Mapping[str, type[BaseModel]]:
    return {"podman": PodmanSettings, "docker": DockerSettings}
