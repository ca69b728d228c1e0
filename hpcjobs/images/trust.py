"""What a cache layer must look like before anything in it is served (docs/security.md).

A layer is one of three kinds, each with its own promise:

* **private** (per-user writable cache): every directory and file is this user's; directories are
  ``0700``, published files ``0444``.
* **shared** (group writable cache): the root and every subdirectory belong to the designated
  owner (``images.cache_owner``, default: the root's owner) and the cache's group; subdirectories
  are ``3770`` (``locks/`` ``2770``), so that only a file's owner, the designated owner and root can
  remove or rename a file; published files are ``0440`` in the cache's group, owned by their
  publisher, who also owns the matching metadata record.
* **site** (read-only, admin pre-staged): owned by root or the designated owner, nothing in it
  writable by group or others.

Checks work on what was opened (``O_NOFOLLOW`` + ``fstat``), never on a path looked up twice, and
the directory rules make the checked name stable: nobody but the publisher, the owner and root can
rename or replace a name in a sticky directory they do not own.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import shlex
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hpcjobs.errors import ImageError

LayerRule = Literal["private", "shared", "site"]
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cache, and the command that fixes it."""

    path: str
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.path}: {self.what}; fix: {self.fix}"


class UntrustedCache(ImageError):
    """A cache directory or entry that breaks its layer's promise: never served."""

    def __init__(self, problem: Problem, check_cmd: str | None = None) -> None:
        self.problem = problem
        more = f" (or: {check_cmd})" if check_cmd else ""
        super().__init__(f"image cache refused: {problem.line()}{more}")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def resolve_owner(owner: str | int | None) -> int | None:
    """``images.cache_owner`` (a user name or a uid) as a uid."""
    if owner is None or owner == "":
        return None
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(str(owner)).pw_uid
    except KeyError:
        raise ImageError(f"images.cache_owner: no such user {owner!r}") from None


def q(path: str | Path) -> str:
    return shlex.quote(str(path))


@dataclass(frozen=True)
class Rules:
    """The promise of one layer, made concrete: who owns it, its group, its modes."""

    kind: LayerRule
    root: Path
    owner: int  # uid owning the directories
    gid: int  # the layer's group (shared: files get it through setgid)
    uid: int  # this process
    file_mode: int
    trusted: frozenset[int] = frozenset({0})  # site layers: who may own their files

    def dir_mode(self, name: str | None) -> int:
        if self.kind == "private":
            return 0o700
        if name == "locks":
            return 0o2770
        return 0o3770

    # -- directories ------------------------------------------------------------------------
    def root_problem(self, st: os.stat_result) -> Problem | None:
        path = str(self.root)
        if not stat.S_ISDIR(st.st_mode):
            return Problem(path, "not a directory", f"rm {q(path)} (then let hpcjobs create it)")
        mode = stat.S_IMODE(st.st_mode)
        if self.kind == "private":
            if st.st_uid != self.uid:
                return Problem(
                    path,
                    f"a private cache owned by {user_name(st.st_uid)}, not by you ({user_name(self.uid)})",
                    "use a cache of your own (--cache-dir, $HPCJOBS_IMAGE_CACHE) or set images.shared: true",
                )
            if mode & WRITE_BITS:
                return Problem(path, f"mode {mode:o} lets others write", f"chmod 700 {q(path)}")
            return None
        if self.kind == "site":
            if st.st_uid not in self.trusted:
                return Problem(
                    path,
                    f"a site cache owned by {user_name(st.st_uid)} (must be root, images.cache_owner or you)",
                    f"chown -R root {q(path)}",
                )
            if mode & WRITE_BITS:
                what = f"a site cache writable by group or others (mode {mode:o})"
                return Problem(path, what, f"chmod -R go-w {q(path)}")
            return None
        if st.st_uid != self.owner:
            return Problem(
                path,
                f"shared cache owned by {user_name(st.st_uid)}, not by its designated owner {user_name(self.owner)}",
                f"chown {user_name(self.owner)} {q(path)}",
            )
        bad = []
        if mode & stat.S_IWOTH:
            bad.append("world-writable")
        if not mode & stat.S_ISGID:
            bad.append("no setgid bit")
        if mode & stat.S_IWGRP and not mode & stat.S_ISVTX:
            bad.append("group-writable without the sticky bit")
        if bad:
            return Problem(path, f"mode {mode:o}: {', '.join(bad)}", f"chmod 3770 {q(path)}")
        return None

    def dir_problem(self, path: Path, st: os.stat_result, name: str) -> Problem | None:
        """A subdirectory (looked at with lstat: a symlink is never followed)."""
        p = str(path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            return Problem(p, f"{what}, not the cache's directory", self._recreate(path, name))
        mode = stat.S_IMODE(st.st_mode)
        if self.kind == "site":
            if st.st_uid not in self.trusted:
                return Problem(p, f"owned by {user_name(st.st_uid)} in a site cache", f"chown -R root {q(p)}")
            if mode & WRITE_BITS:
                what = f"writable by group or others in a site cache (mode {mode:o})"
                return Problem(p, what, f"chmod -R go-w {q(p)}")
            return None
        want = self.dir_mode(name)
        if st.st_uid != self.owner:
            return Problem(
                p,
                f"owned by {user_name(st.st_uid)}, not by the cache's owner {user_name(self.owner)}"
                + (": its owner can delete or swap anyone's entries" if self.kind == "shared" else ""),
                self._recreate(path, name),
            )
        if self.kind == "shared" and st.st_gid != self.gid:
            return Problem(
                p,
                f"group {group_name(st.st_gid)}, not the cache's group {group_name(self.gid)}",
                f"chgrp {group_name(self.gid)} {q(p)} && chmod {want:o} {q(p)}",
            )
        if self.kind == "private":  # only writers matter in a cache nobody else may use
            if mode & WRITE_BITS:
                return Problem(p, f"mode {mode:o} lets others write", f"chmod {want:o} {q(p)}")
            return None
        if mode != want:
            return Problem(p, f"mode {mode:o}, not {want:o}", f"chmod {want:o} {q(p)}")
        return None

    def _recreate(self, path: Path, name: str) -> str:
        """Entries under a directory someone else controlled cannot be trusted: start it afresh."""
        mode = self.dir_mode(name)
        if self.kind == "private":
            return f"rm -rf {q(path)} (hpcjobs recreates it)"
        return (
            f"rm -rf {q(path)} && install -d -o {user_name(self.owner)} -g {group_name(self.gid)} "
            f"-m {mode:o} {q(path)}  (as root)"
        )

    def user_dir_problem(self, path: Path, st: os.stat_result) -> Problem | None:
        """``apptainer-cache/<uid>/``: this user's alone."""
        p = str(path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            return Problem(p, "not a directory (a symlink?)", f"rm -f {q(p)}  (as its owner or root)")
        if st.st_uid != self.uid:
            return Problem(
                p,
                f"owned by {user_name(st.st_uid)}, not by {user_name(self.uid)} whose apptainer cache it is",
                f"rm -rf {q(p)}  (as root)",
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            return Problem(p, f"mode {mode:o}: others can reach this user's layer cache", f"chmod 700 {q(p)}")
        return None

    # -- files -----------------------------------------------------------------------------
    def file_problem(self, path: str, st: os.stat_result, *, publisher: int | None = None) -> str | None:
        """Why a published file (SIF, metadata record, memo) breaks the promise, or None."""
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        mode = stat.S_IMODE(st.st_mode)
        if self.kind == "site":
            if st.st_uid not in self.trusted:
                return f"owned by {user_name(st.st_uid)} in a site cache"
            if mode & WRITE_BITS:
                return f"writable by group or others (mode {mode:o})"
            return None
        if mode != self.file_mode:
            return f"mode {mode:o}, not {self.file_mode:o}"
        if self.kind == "private" and st.st_uid != self.uid:
            return f"owned by {user_name(st.st_uid)} in your private cache"
        if self.kind == "shared" and st.st_gid != self.gid:
            return f"group {group_name(st.st_gid)}, not the cache's group {group_name(self.gid)}"
        if publisher is not None and st.st_uid != publisher:
            return f"owned by {user_name(st.st_uid)}, but its metadata record was written by {user_name(publisher)}"
        return None


@contextlib.contextmanager
def open_nofollow(path: str | Path) -> Iterator[tuple[int, os.stat_result] | None]:
    """The file at ``path`` opened without following a symlink, with its fstat; None if absent.

    A symlink (ELOOP) or anything else that is not a plain file yields its lstat-based refusal.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        yield None
        return
    except OSError as exc:
        raise NotPlain(str(path), "a symlink" if _is_link(path) else f"cannot be opened ({exc.strerror})") from exc
    try:
        yield fd, os.fstat(fd)
    finally:
        os.close(fd)


class NotPlain(Exception):
    """A name in the cache that is not a plain file (a symlink, a directory, …)."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(what)
        self.path = path
        self.what = what


def _is_link(path: str | Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def read_json_fd(fd: int, limit: int = 1 << 20) -> dict[str, Any] | None:
    chunks = []
    total = 0
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
        total += len(b)
        if total > limit:
            return None
    try:
        data = json.loads(b"".join(chunks))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def load_json(path: str | Path) -> dict[str, Any] | None:
    """A small JSON record read without following a symlink (a planted link to /dev/zero or to
    another user's file is not read); None when absent, not a plain file or not a JSON object."""
    try:
        with open_nofollow(path) as opened:
            if opened is None or not stat.S_ISREG(opened[1].st_mode):
                return None
            return read_json_fd(opened[0])
    except (NotPlain, OSError):
        return None


def sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        b = os.read(fd, HASH_CHUNK)
        if not b:
            break
        h.update(b)
    return "sha256:" + h.hexdigest()
