"""Where hpcjobs keeps its per-user caches, and when a file there may be trusted.

Shared by the validated site config cache (:mod:`hpcjobs.config.cache`) and the entry-point table
(:mod:`hpcjobs.plugin_index`); a leaf module, so that neither depends on the other's package.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

DISABLE_VAR = "HPCJOBS_NO_SITE_CACHE"


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/hpcjobs`` or ``~/.cache/hpcjobs`` (the per-user cache of hpcjobs)."""
    environ = os.environ if env is None else env
    base = environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path(environ.get("HOME") or Path.home()) / ".cache"
    return root / "hpcjobs"


def enabled(env: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if env is None else env
    return environ.get(DISABLE_VAR, "") in ("", "0")


def owned_private(st: os.stat_result) -> bool:
    """Owned by the current user and writable by nobody else."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def private_dir(folder: Path) -> bool:
    """``folder`` is a real directory (not a symlink) that :func:`owned_private` holds for."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and owned_private(st)
