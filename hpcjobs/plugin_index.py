"""The installed entry points of a group, cached per user so that a warm CLI call reads no package metadata.

``importlib.metadata.entry_points(group=...)`` reads every installed distribution's metadata, and
importing it (with email, zipfile, csv) costs more CPU than the ``sbatch`` call hpcjobs wraps; the CLI
asked it twice per call (the plugin registry, the site cache key), and pydantic asks it once more
for its own plugins. The answer for the groups in :data:`GROUPS` (``hpcjobs``, and ``pydantic``,
which :mod:`hpcjobs.pydantic_plugins` reads) is cached under
``$XDG_CACHE_HOME/hpcjobs/entry-points/<key>`` (default ``~/.cache``); the key hashes each
``sys.path`` entry holding ``*.dist-info``/``*.egg-info`` folders, those folders (their names carry
the versions) and the size and mtime of each one's ``entry_points.txt`` (and an egg's ``PKG-INFO``).
Installing, removing or upgrading a distribution, or editing its entry points, changes the key; a
miss asks ``importlib.metadata`` exactly as before. Loading an entry point and reporting a plugin
that fails to load are unchanged (:mod:`hpcjobs.plugins`).

A cache file is read only when it and its folder belong to the current user and nobody else can
write them (it names modules to import). ``HPCJOBS_NO_SITE_CACHE=1`` bypasses this cache too.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_FORMAT = "hpcjobs-entry-points-2"
GROUPS = ("hpcjobs", "pydantic")
"""The groups the table holds: hpcjobs' plugins, and pydantic's (whether any is installed)."""
_SEP = "\t"


class EntryPointRow:
    """One entry point: what ``importlib.metadata.EntryPoint`` gives hpcjobs, plus its distribution."""

    __slots__ = ("dist", "name", "value", "version")

    def __init__(self, name: str, value: str, dist: str | None, version: str | None) -> None:
        self.name = name
        self.value = value
        self.dist = dist
        self.version = version

    def load(self) -> Any:
        """Import ``module[:attr.path]`` (extras ignored), as ``EntryPoint.load`` does."""
        module, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        attr = attr.split("[", 1)[0].strip()
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntryPointRow) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"EntryPointRow{self._fields()!r}"

    def _fields(self) -> tuple[str, str, str | None, str | None]:
        return (self.name, self.value, self.dist, self.version)


def entry_points(group: str, env: Mapping[str, str] | None = None) -> list[EntryPointRow]:
    """The entry points of ``group`` in ``importlib.metadata``'s order, from the cache when it is warm."""
    if group not in GROUPS:
        return scan(group)
    return list(table(env)[group])


_held: dict[tuple[str, tuple[str, ...]], dict[str, list[EntryPointRow]]] | None = None


def hold() -> None:
    """Until :func:`release`, read the table once per cache folder and ``sys.path``.

    For a short CLI call (``render``, ``submit``), which asks for it up to three times (pydantic's
    plugins, the site cache key, the plugin registry): nothing is installed while it runs, and each
    key costs a stat call per installed distribution."""
    global _held
    if _held is None:
        _held = {}


def release() -> None:
    """End :func:`hold`: every later call looks at the installed distributions again."""
    global _held
    _held = None


def table(env: Mapping[str, str] | None = None) -> dict[str, list[EntryPointRow]]:
    """Group (each of :data:`GROUPS`) → its entry points, from the cache when it is warm."""
    from hpcjobs import user_cache as cache

    if not cache.enabled(env):
        return scan_groups(GROUPS)
    folder = cache.cache_root(env) / "entry-points"
    memo = (str(folder), tuple(sys.path))
    if _held is not None and memo in _held:
        return _held[memo]
    path = folder / metadata_key(sys.path)
    groups = _read(path, cache)
    if groups is None:
        groups = scan_groups(GROUPS)
        _write(folder, path, groups, cache)
    if _held is not None:
        _held[memo] = groups
    return groups


def scan(group: str) -> list[EntryPointRow]:
    """Ask ``importlib.metadata`` (reads every distribution's metadata)."""
    return scan_groups((group,))[group]


def scan_groups(groups: Sequence[str]) -> dict[str, list[EntryPointRow]]:
    """Ask ``importlib.metadata`` once for several groups (reads every distribution's metadata)."""
    from importlib.metadata import entry_points as metadata_entry_points

    everything = metadata_entry_points()
    out: dict[str, list[EntryPointRow]] = {}
    for group in groups:
        rows = out.setdefault(group, [])
        for ep in everything.select(group=group):
            dist = getattr(ep, "dist", None)
            rows.append(
                EntryPointRow(
                    ep.name,
                    ep.value,
                    dist.metadata["Name"] if dist is not None else None,
                    dist.version if dist is not None else None,
                )
            )
    return out


def metadata_key(path_entries: Sequence[str]) -> str:
    """What the installed entry points depend on; stat calls only, no file is read."""
    h = hashlib.sha256("\0".join([_FORMAT, *GROUPS]).encode())
    for entry in path_entries:
        # Only entries holding metadata count: `python -m` puts the working directory first, and
        # a folder with no distribution in it must not make every directory a cache miss.
        try:
            with os.scandir(entry or ".") as it:
                names = sorted(e.name for e in it if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:  # a zip file (its own size and mtime) or a missing folder (nothing)
            stat_text = _stat_text(entry)
            if stat_text != "-":
                h.update(b"\0" + os.fsencode(entry) + b"\0" + stat_text.encode())
            continue
        if names:
            h.update(b"\0" + os.fsencode(entry))
        for name in names:
            h.update(b"\1" + os.fsencode(name))
            for meta in ("entry_points.txt", "PKG-INFO") if name.endswith(".egg-info") else ("entry_points.txt",):
                h.update(_stat_text(os.path.join(entry or ".", name, meta)).encode())
    return h.hexdigest()


def _stat_text(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}"


def _read(path: Path, cache: Any) -> dict[str, list[EntryPointRow]] | None:
    data = cache.read_private(path, -1, math.inf)
    if data is None:
        return None
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines[0] != _FORMAT or lines[-1] != "":  # foreign or truncated
        return None
    groups: dict[str, list[EntryPointRow]] = {g: [] for g in GROUPS}
    for line in lines[1:-1]:
        fields = line.split(_SEP)
        if len(fields) != 5 or fields[0] not in groups:
            return None
        group, name, value, dist, version = fields
        groups[group].append(EntryPointRow(name, value, dist or None, version or None))
    return groups


def _write(folder: Path, path: Path, groups: Mapping[str, list[EntryPointRow]], cache: Any) -> None:
    fields = [(g, r.name, r.value, r.dist or "", r.version or "") for g in GROUPS for r in groups[g]]
    if any(_SEP in f or "\n" in f for row in fields for f in row):
        return  # not representable: stay uncached rather than guess
    text = "".join(f"{_SEP.join(row)}\n" for row in fields)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not cache.private_dir(folder):
            return
        import tempfile  # only on a miss: it pulls in shutil, bz2, lzma

        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{_FORMAT}\n{text}")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return
