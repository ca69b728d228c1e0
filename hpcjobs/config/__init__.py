"""Site configuration: the models admins publish, and how a file is found and loaded."""

from __future__ import annotations

from hpcjobs.config.loader import find_site_file, load_site_text
from hpcjobs.config.site import (
    GpuSettings,
    ImageCacheSettings,
    Limits,
    MpiSettings,
    Partition,
    Policy,
    RuntimeSettings,
    Settings,
    SiteConfig,
)
from hpcjobs.config.sources import find_site, load_site

__all__ = [
    "GpuSettings",
    "ImageCacheSettings",
    "Limits",
    "MpiSettings",
    "Partition",
    "Policy",
    "RuntimeSettings",
    "Settings",
    "SiteConfig",
    "find_site",
    "find_site_file",
    "load_site",
    "load_site_text",
]
