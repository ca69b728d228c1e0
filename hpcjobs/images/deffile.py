"""Cache key of an Apptainer definition file: sha256 over its text and the local files it copies.

Inputs hashed, in order: the definition file's bytes; then for every line of every ``%files``
section (not ``%files from STAGE``, whose inputs are built from this same file), the source path
as written and the content of what it names — a file's bytes, a directory's sorted tree (names,
symlink targets, file bytes and executable bits), glob patterns expanded and sorted. Relative
sources are taken relative to the definition file's directory (conversion builds from there).

``Bootstrap: localimage`` bases count by path, size, mtime and inode (not by content: they may be
large). Not tracked (documented): what ``%setup`` or ``%post`` fetch, and a ``From:`` tag that moves —
pin the base image by digest in the definition file for a key that means what it says.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shlex
import stat
from typing import Protocol

from hpcjobs.errors import ImageError

_MAX_DEF_BYTES = 4 * 1024 * 1024


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


def files_sources(text: str) -> list[str]:
    """Source paths named by the ``%files`` sections (``%files from STAGE`` excluded)."""
    sources: list[str] = []
    in_files = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("%"):
            words = line.split()
            in_files = words[0] == "%files" and len(words) == 1
            continue
        if not in_files or not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        if words:
            sources.append(words[0])
    return sources


def localimage_base(text: str) -> str | None:
    """The ``From:`` path of a ``Bootstrap: localimage`` header, else None."""
    header: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("%"):
            break
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            header[key.strip().lower()] = value.strip()
    if header.get("bootstrap", "").lower() == "localimage" and header.get("from"):
        return header["from"]
    return None


def def_digest(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_DEF_BYTES + 1)
    except OSError as exc:
        raise ImageError(f"definition file {path!r}: {exc.strerror}") from exc
    if len(data) > _MAX_DEF_BYTES:
        raise ImageError(f"definition file {path!r} is larger than 4 MiB")
    h = hashlib.sha256()
    _field(h, b"hpcjobs-def-v1")
    _field(h, data)
    base = os.path.dirname(os.path.abspath(path))
    local = localimage_base(data.decode("utf-8", "replace"))
    if local is not None:  # a local base image: its identity (not its bytes: it may be GBs)
        full = local if os.path.isabs(local) else os.path.join(base, local)
        try:
            st = os.stat(full)
            _field(h, f"localimage {full} {st.st_size} {st.st_mtime_ns} {st.st_ino}".encode())
        except OSError:
            _field(h, f"localimage {full} <missing>".encode())
    for src in files_sources(data.decode("utf-8", "replace")):
        _field(h, src.encode())
        full = src if os.path.isabs(src) else os.path.join(base, src)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not matches:
            _field(h, b"<missing>")
        for m in matches:
            _hash_path(h, m, os.path.relpath(m, base).encode())
    return "sha256:" + h.hexdigest()


def _field(h: _Hasher, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def _hash_path(h: _Hasher, path: str, label: bytes) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        _field(h, b"<missing>" + label)
        return
    if stat.S_ISLNK(st.st_mode):
        _field(h, b"L" + label)
        _field(h, os.readlink(path).encode())
        if os.path.isdir(path):
            return
        try:
            st = os.stat(path)
        except OSError:
            return
    if stat.S_ISDIR(st.st_mode):
        _field(h, b"D" + label)
        for name in sorted(os.listdir(path)):
            _hash_path(h, os.path.join(path, name), label + b"/" + name.encode())
    elif stat.S_ISREG(st.st_mode):
        _field(h, (b"X" if st.st_mode & 0o111 else b"F") + label)
        fh = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                fh.update(chunk)
        _field(h, fh.digest())
    else:
        _field(h, b"?" + label)
