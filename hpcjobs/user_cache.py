"""Where hpcjobs keeps its per-user caches, and when a file there may be trusted.

Shared by the validated site config cache (:mod:`hpcjobs.config.cache`), the entry-point table
(:mod:`hpcjobs.plugin_index`), the discovered site config (:mod:`hpcjobs.config.discovered`) and the
sweep's kept Slurm limits (:mod:`hpcjobs.sweep.limitcache`); a leaf module, so that none depends on
another's package.
"""

from __future__ import annotations

import os
import stat
import time
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


def read_private(path: Path, max_bytes: int, max_age_s: float, now_s: float | None = None) -> bytes | None:
    """Up to ``max_bytes`` (all: -1) of ``path`` when the file is a regular file :func:`owned_private` holds for,
    in a :func:`private_dir`, and modified less than ``max_age_s`` ago; otherwise ``None``.

    The checks are made on what was opened (``O_NOFOLLOW`` + ``fstat``), not on a path looked up twice.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) and owned_private(st) and private_dir(path.parent)):
            return None
        if (time.time() if now_s is None else now_s) - st.st_mtime > max_age_s:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(max_bytes)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_private(folder: Path, path: Path, text: str) -> str | None:
    """Publish ``text`` at ``path`` atomically; the reason when it cannot be (then nothing is cached)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not private_dir(folder):
            return f"{folder} is not a folder that only you can write, so the cluster is asked on every call"
        import tempfile  # only on a miss: it pulls in shutil, bz2, lzma

        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        return f"cannot write {path} ({exc.strerror or exc}), so the cluster is asked on every call"
    return None


def read_keyed(path: Path, key: str, field: str, max_bytes: int, max_age_s: float) -> object | None:
    """``field`` of a record :func:`write_keyed` kept at ``path`` for ``key`` (read as :func:`read_private`
    reads); ``None`` when there is none, it is another key's, or it is not such a record."""
    import json

    raw = read_private(path, max_bytes, max_age_s)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    value: object | None = data.get(field)
    return value


def write_keyed(path: Path, key: str, field: str, value: object) -> str | None:
    """Keep ``{"key": key, field: value}`` (JSON) at ``path`` through :func:`write_private`."""
    import json

    return write_private(path.parent, path, json.dumps({"key": key, field: value}) + "\n")
