"""The on-disk cache: content digest → SIF, in layers.

One layer is a directory laid out as::

    sif/sha256-<hex>.sif            the image; published read-only (0444, shared: 0440), never replaced
    meta/sha256-<hex>.json          record written at publish: digest, size, created, source ref, manifest
    refs/<ref-hash>.<uid>.json      ref → digest, as last resolved by that user (a moved tag updates it)
    uses/sha256-<hex>.<uid>         empty; its mtime is that user's last use of the entry (LRU for gc)
    leases/sha256-<hex>.<uid>.json  "keep until" record per user (e.g. for queued jobs), see gc
    digests/<digest>.<platform>.json         immutable memo: manifest/index digest → config digest
    locks/sha256-<hex>.lock         lease lock of a conversion in progress (see lock.py)
    tmp/                            apptainer's temp dirs during conversions
    logs/                           output of conversion jobs (convert_on: slurm), kept 7 days
    apptainer-cache/<uid>/          APPTAINER_CACHEDIR for conversions (layer blobs), per user

Read-only site layers (admin pre-staged, ``images.site_caches``) are looked up first; the writable
layer (``cache_dir``) comes last and is the only one written or garbage-collected.

Permissions: per-user caches use 0700 directories. A shared cache (``images.shared``) uses
group-writable directories with the setgid bit (files get the directory's group) and the sticky bit
(nobody can delete or replace another user's files), except ``locks/`` (no sticky bit, so a stale lock
of a user whose job died can be taken over), all owned by the cache's designated owner. Nothing is
ever world-writable. What is served is checked against these promises first (trust.py): a layer or
entry that breaks them is refused with the command that fixes it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from hpcjobs.errors import ImageError
from hpcjobs.images.digest import key_stem
from hpcjobs.images.lock import LeaseLock, lease_is_live
from hpcjobs.images.refs import DIGEST_RE
from hpcjobs.images.trust import (
    NotPlain,
    Problem,
    Rules,
    UntrustedCache,
    load_json,
    open_nofollow,
    q,
    read_json_fd,
    sha256_fd,
    user_name,
)
from hpcjobs.log import get_logger

log = get_logger("hpcjobs.images")
SUBDIRS = ("sif", "meta", "refs", "uses", "leases", "digests", "locks", "tmp", "logs", "apptainer-cache")
LOG_KEEP_S = 7 * 86400
LayerKind = Literal["site", "cache", "in-place"]
Origin = Literal["hit", "converted", "waited", "in-place", "listed"]


@dataclass(frozen=True)
class CacheEntry:
    """One cached image (or a SIF used in place)."""

    digest: str | None
    path: str
    size: int
    created: float
    last_used: float | None = None
    refs: tuple[str, ...] = ()
    layer: LayerKind = "cache"
    origin: Origin = "listed"
    manifest: str | None = None
    source: str | None = None
    leased_until: float | None = None
    # the MPI probe's record made at conversion (hpcjobs.mpi.probe), from the metadata record
    mpi: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["refs"] = list(self.refs)
        return d


@dataclass
class GcReport:
    removed: list[CacheEntry] = field(default_factory=list)
    kept: list[tuple[CacheEntry, str]] = field(default_factory=list)
    freed_bytes: int = 0
    total_bytes_before: int = 0
    total_bytes_after: int = 0
    temps_removed: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": [e.to_dict() for e in self.removed],
            "kept": [{"entry": e.to_dict(), "reason": r} for e, r in self.kept],
            "freed_bytes": self.freed_bytes,
            "total_bytes_before": self.total_bytes_before,
            "total_bytes_after": self.total_bytes_after,
            "temps_removed": self.temps_removed,
            "dry_run": self.dry_run,
        }


class Layer:
    """One cache directory (see module doc for the layout)."""

    def __init__(self, root: str, kind: LayerKind) -> None:
        self.root = Path(root)
        self.kind = kind

    def sif(self, stem: str) -> Path:
        return self.root / "sif" / f"{stem}.sif"

    def meta(self, stem: str) -> Path:
        return self.root / "meta" / f"{stem}.json"

    def lock(self, stem: str) -> Path:
        return self.root / "locks" / f"{stem}.lock"

    def memo_path(self, top: str, platform: str) -> Path:
        return self.root / "digests" / f"{key_stem(top)}.{platform.replace('/', '-')}.json"

    def stems(self) -> list[str]:
        try:
            names = os.listdir(self.root / "sif")
        except OSError:
            return []
        return sorted(n[:-4] for n in names if n.endswith(".sif") and not n.startswith("."))


class ImageStore:
    def __init__(
        self,
        cache_dir: str,
        site_caches: tuple[str, ...] = (),
        *,
        shared: bool = False,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 60.0,
        owner: int | None = None,
        verify_hits: bool = False,
    ) -> None:
        self.layer = Layer(cache_dir, "cache")
        self.site_layers = [Layer(p, "site") for p in site_caches if os.path.abspath(p) != os.path.abspath(cache_dir)]
        self.shared = shared
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.owner = owner
        self.verify_hits = verify_hits
        self.uid = os.getuid()
        self._ready = False
        self._rules: dict[Path, Rules] = {}
        self._dirs_ok: set[Path] = set()
        self._verified: tuple[int, ...] | None = None

    # -- permissions ------------------------------------------------------------------------
    @property
    def file_mode(self) -> int:
        """Published files: read-only."""
        return 0o440 if self.shared else 0o444

    @property
    def private_mode(self) -> int:
        """Small per-user records (refs, uses, leases, locks)."""
        return 0o640 if self.shared else 0o600

    def dir_mode(self, name: str | None) -> int:
        if not self.shared:
            return 0o700
        if name == "locks":
            return 0o2770
        return 0o3770

    def check_command(self, fix: bool = True) -> str:
        shared = " --shared" if self.shared else ""
        return f"hpcjobs images --cache-dir {q(self.layer.root)} check{shared}{' --fix' if fix else ''}"

    def rules(self, layer: Layer) -> Rules | None:
        """``layer``'s rules once its root passed them (checked once per process); None: no such layer."""
        known = self._rules.get(layer.root)
        if known is not None:
            return known
        try:
            st = os.stat(layer.root)  # the configured path itself may be an admin's symlink
        except OSError:
            return None
        rules = self.rules_for(layer, st)
        problem = rules.root_problem(st)
        if problem is not None:
            raise UntrustedCache(problem, None if layer.kind == "site" else self.check_command())
        self._rules[layer.root] = rules
        return rules

    def rules_for(self, layer: Layer, st: os.stat_result) -> Rules:
        if layer.kind == "site":
            trusted = frozenset({0, self.uid, *([self.owner] if self.owner is not None else [])})
            return Rules("site", layer.root, st.st_uid, st.st_gid, self.uid, 0o444, trusted)
        if self.shared:
            owner = self.owner if self.owner is not None else st.st_uid
            return Rules("shared", layer.root, owner, st.st_gid, self.uid, self.file_mode)
        return Rules("private", layer.root, self.uid, st.st_gid, self.uid, self.file_mode)

    def dir_ok(self, layer: Layer, rules: Rules, name: str) -> bool:
        """Whether ``layer``'s subdirectory ``name`` exists (and keeps its promise: else refused)."""
        path = layer.root / name
        if path in self._dirs_ok:
            return True
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False  # looked at again next time: whoever creates it must pass then
        except OSError as exc:
            raise ImageError(f"image cache {path}: {exc.strerror}") from exc
        problem = rules.dir_problem(path, st, name)
        if problem is not None:
            raise UntrustedCache(problem, None if layer.kind == "site" else self.check_command())
        self._dirs_ok.add(path)
        return True

    def ensure(self) -> None:
        """Create the writable layer with its permissions (once per process), or refuse it."""
        if self._ready:
            return
        root = self.layer.root
        if not root.exists():
            self._create_root()
        with contextlib.suppress(OSError):
            st = os.stat(root)
            expected = self.rules_for(self.layer, st)
            if expected.root_problem(st) is not None and st.st_uid == self.uid == expected.owner:
                os.chmod(root, 0o3770 if self.shared else 0o700)  # our own root with a stray mode
        rules = self.rules(self.layer)
        if rules is None:
            raise ImageError(f"image cache {root}: cannot create it")
        for name in SUBDIRS:
            self._ensure_subdir(rules, name)
        mine = self.apptainer_cache()
        try:
            os.mkdir(mine, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ImageError(f"image cache {mine}: cannot create: {exc.strerror}") from exc
        problem = rules.user_dir_problem(mine, os.lstat(mine))
        if problem is not None:
            raise UntrustedCache(problem)
        self._ready = True

    def _create_root(self) -> None:
        root = self.layer.root
        if self.shared and self.owner is not None and self.uid not in (0, self.owner):
            raise UntrustedCache(
                Problem(
                    str(root),
                    f"does not exist, and only its owner {user_name(self.owner)} may create a shared cache",
                    f"install -d -o {user_name(self.owner)} -g GROUP -m 3770 {q(root)} && {self.check_command()}"
                    "  (as root)",
                )
            )
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
            st = os.lstat(root)
            if st.st_uid == self.uid:
                if self.shared and self.owner is not None and self.owner != self.uid:
                    os.chown(root, self.owner, -1)
                os.chmod(root, 0o3770 if self.shared else 0o700)
        except OSError as exc:
            raise ImageError(f"image cache {root}: cannot create: {exc.strerror}") from exc

    def _ensure_subdir(self, rules: Rules, name: str) -> None:
        path = rules.root / name
        want = rules.dir_mode(name)
        may_create = self.uid in (0, rules.owner)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not may_create:
                raise UntrustedCache(
                    Problem(
                        str(path),
                        f"missing, and only the cache's owner {user_name(rules.owner)} (or root) may create it "
                        "(its creator could delete anyone's entries)",
                        f"{self.check_command()}  (as {user_name(rules.owner)} or root)",
                    )
                ) from None
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, 0o700)
                st = os.lstat(path)
                if st.st_uid == self.uid and stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                    if rules.kind == "shared" and (self.uid != rules.owner or st.st_gid != rules.gid):
                        os.chown(path, rules.owner, rules.gid)  # root setting it up for the owner
                    os.chmod(path, want)
                    st = os.lstat(path)
            except OSError as exc:
                raise ImageError(f"image cache {path}: cannot create: {exc.strerror}") from exc
        except OSError as exc:
            raise ImageError(f"image cache {path}: {exc.strerror}") from exc
        problem = rules.dir_problem(path, st, name)
        if (
            problem is not None
            and st.st_uid == self.uid == rules.owner
            and stat.S_ISDIR(st.st_mode)
            and not stat.S_ISLNK(st.st_mode)
            and (rules.kind == "private" or st.st_gid == rules.gid)
        ):
            try:  # our own directory with a stray mode (a umask, an old version): put it right
                os.chmod(path, want)
            except OSError as exc:
                raise ImageError(f"image cache {path}: cannot set mode {want:o}: {exc.strerror}") from exc
            problem = rules.dir_problem(path, os.lstat(path), name)
        if problem is not None:
            raise UntrustedCache(problem, self.check_command())
        self._dirs_ok.add(path)

    # -- lookup -----------------------------------------------------------------------------
    def find(self, key: str, *, touch: bool = True) -> CacheEntry | None:
        """The published entry for ``key``: site layers first, then the writable layer."""
        stem = key_stem(key)
        for layer in self.site_layers:
            entry = self._entry(layer, stem, key, "hit")
            if entry is not None:
                return entry
        entry = self._entry(self.layer, stem, key, "hit")
        if entry is None or not touch:
            return entry
        # record the use, then look again: gc re-checks uses after renaming an entry away, so either
        # gc sees this use and puts the entry back, or we see it gone and convert again
        self.touch(key)
        entry = self._entry(self.layer, stem, key, "hit", same_as_verified=True)
        return None if entry is None else replace(entry, last_used=self.last_used(stem))

    def _entry(
        self,
        layer: Layer,
        stem: str,
        key: str,
        origin: Origin,
        *,
        strict: bool = True,
        same_as_verified: bool = False,
    ) -> CacheEntry | None:
        """The entry, if its SIF and metadata record keep the layer's promise (else refused:
        an UntrustedCache error, or None when not ``strict``)."""
        rules = self.rules(layer)
        if rules is None or not self.dir_ok(layer, rules, "sif"):
            return None
        path = layer.sif(stem)
        try:
            with open_nofollow(path) as opened:
                if opened is None:
                    return None
                fd, st = opened
                meta, why = self._checked_meta(layer, rules, stem, key, st)
                identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if why is None and self.verify_hits and not (same_as_verified and identity == self._verified):
                    want = meta.get("sha256")
                    self._verified = None
                    if not isinstance(want, str):
                        why = "its metadata record has no sha256 (an older hpcjobs published it): cannot verify"
                    elif sha256_fd(fd) != want:
                        why = f"its content does not match the sha256 in its metadata record ({want})"
                    else:
                        self._verified = identity  # the re-look right after (find) needn't hash it again
        except NotPlain as exc:
            why, meta = exc.what, {}
        if why is not None:
            problem = Problem(
                str(path),
                f"not served: {why}",
                f"rm -f {q(path)} {q(layer.meta(stem))}  (as its owner or root)"
                + ("" if layer.kind == "site" else f", or: {self.check_command()}"),
            )
            if strict:
                raise UntrustedCache(problem)
            log.warning("image.untrusted", path=str(path), reason=why)
            return None
        return CacheEntry(
            digest=key,
            path=str(path),
            size=st.st_size,
            created=float(meta.get("created", st.st_mtime)),
            refs=tuple(meta.get("refs", [])),
            layer=layer.kind,
            origin=origin,
            manifest=meta.get("manifest"),
            source=meta.get("source"),
            mpi=meta["mpi"] if isinstance(meta.get("mpi"), dict) else None,
        )

    def _checked_meta(
        self, layer: Layer, rules: Rules, stem: str, key: str, sif: os.stat_result
    ) -> tuple[dict[str, Any], str | None]:
        """The entry's metadata record, and why the pair (SIF, record) breaks the promise, if it does."""
        if not stat.S_ISREG(sif.st_mode):
            return {}, "not a regular file"
        path = layer.meta(stem)
        if not self.dir_ok(layer, rules, "meta"):
            return {}, "no metadata record"
        try:
            with open_nofollow(path) as opened:
                if opened is None:
                    return {}, "no metadata record"
                fd, st = opened
                why = rules.file_problem(str(path), st)
                meta = read_json_fd(fd) if why is None else None
        except NotPlain as exc:
            return {}, f"its metadata record is {exc.what}"
        if why is not None:
            return {}, f"its metadata record is {why}"
        if meta is None:
            return {}, "its metadata record is not a JSON object"
        if meta.get("digest") != key or meta.get("size") != sif.st_size:
            return meta, "its metadata record does not match it (digest or size)"
        publisher = None
        if rules.kind != "site":
            publisher = st.st_uid
            if meta.get("creator_uid") != st.st_uid:
                named = meta.get("creator_uid")
                return meta, f"its metadata record names uid {named} but is owned by {user_name(st.st_uid)}"
        why = rules.file_problem(str(layer.sif(stem)), sif, publisher=publisher)
        return meta, why

    def touch(self, key: str) -> None:
        """Record a use of ``key`` by this user (the entry's LRU time for gc)."""
        path = self.layer.root / "uses" / f"{key_stem(key)}.{self.uid}"
        try:
            os.utime(path, follow_symlinks=False)
            return
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            self.ensure()
            # O_NOFOLLOW: a link planted under our name must not make us create its target
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, self.private_mode)
            os.close(fd)
            os.utime(path, follow_symlinks=False)
        except (OSError, ImageError):
            return  # a read-only cache still serves; it just cannot record uses

    def last_used(self, stem: str) -> float | None:
        times = []
        for name in self._names("uses", f"{stem}.*"):
            with contextlib.suppress(OSError):
                times.append(os.stat(self.layer.root / "uses" / name).st_mtime)
        return max(times) if times else None

    # -- refs and digest memo ---------------------------------------------------------------
    def _ref_path(self, ref: str) -> Path:
        h = hashlib.sha256(ref.encode()).hexdigest()[:40]
        return self.layer.root / "refs" / f"{h}.{self.uid}.json"

    def record_ref(self, ref: str, key: str, manifest: str | None) -> None:
        path = self._ref_path(ref)
        old = load_json(path)
        if old is not None and old.get("digest") == key and old.get("manifest") == manifest:
            return
        with contextlib.suppress(OSError, ImageError):
            self.ensure()
            self._write_json(
                path,
                {"ref": ref, "digest": key, "manifest": manifest, "resolved": time.time()},
                self.private_mode,
                replace=True,
            )

    def refs_by_digest(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for layer in [*self.site_layers, self.layer]:
            for name in sorted(_names(layer.root / "refs", "*.json")):
                try:
                    rec = load_json(layer.root / "refs" / name) or {}
                    ref, digest = str(rec["ref"]), str(rec["digest"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if ref not in out.setdefault(digest, []):
                    out[digest].append(ref)
        return out

    def memo_get(self, top: str, platform: str) -> tuple[str, str] | None:
        """The memo for (top, platform): served only under the same rules as an entry."""
        for layer in [*self.site_layers, self.layer]:
            rules = self.rules(layer)
            if rules is None or not self.dir_ok(layer, rules, "digests"):
                continue
            hit = self.memo_at(layer, rules, layer.memo_path(top, platform), top, platform)
            if hit is not None:
                return hit
        return None

    def memo_at(self, layer: Layer, rules: Rules, path: Path, top: str, platform: str) -> tuple[str, str] | None:
        """The memo at ``path`` (None: there is none), or UntrustedCache when it breaks the rules."""
        rec: dict[str, Any] | None = None
        try:
            with open_nofollow(path) as opened:
                if opened is None:
                    return None
                fd, st = opened
                why = rules.file_problem(str(path), st)
                if why is None:
                    rec = read_json_fd(fd)
        except NotPlain as exc:
            why = exc.what
        if why is None and (
            rec is None
            or rec.get("digest") != top
            or rec.get("platform") != platform
            or not all(isinstance(rec.get(k), str) and DIGEST_RE.match(rec[k]) for k in ("manifest", "config"))
        ):
            why = "a record that does not match its name"
        if why is not None or rec is None:
            raise UntrustedCache(
                Problem(
                    str(path),
                    f"digest memo not trusted: {why}",
                    f"rm -f {q(path)}  (as its owner or root)"
                    + ("" if layer.kind == "site" else f", or: {self.check_command()}"),
                )
            )
        return str(rec["manifest"]), str(rec["config"])

    def memo_put(self, top: str, platform: str, manifest: str, config: str) -> None:
        with contextlib.suppress(OSError, ImageError):
            self.ensure()
            self._write_json(
                self.layer.memo_path(top, platform),
                {"digest": top, "platform": platform, "manifest": manifest, "config": config},
                self.file_mode,
                replace=False,
            )

    # -- conversion support -----------------------------------------------------------------
    def lock(self, key: str, **kwargs: Any) -> LeaseLock:
        self.ensure()
        return LeaseLock(
            self.layer.lock(key_stem(key)),
            heartbeat_s=self.heartbeat_s,
            stale_after_s=self.stale_after_s,
            mode=self.private_mode,
            **kwargs,
        )

    def temp_sif(self, key: str) -> Path:
        """A fresh temp name beside the final file (same directory, so publishing is a link)."""
        return self.layer.root / "sif" / f".{key_stem(key)}.{secrets.token_hex(6)}.tmp"

    def temp_dir(self, key: str) -> Path:
        d = self.layer.root / "tmp" / f"{key_stem(key)}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
        d.mkdir(mode=0o700)
        return d

    def apptainer_cache(self) -> Path:
        return self.layer.root / "apptainer-cache" / str(self.uid)

    def remove_temps(self, key: str) -> int:
        """Remove leftovers of earlier, killed conversions of ``key`` (call while holding its lock)."""
        stem = key_stem(key)
        n = 0
        for p in self._glob("sif", f".{stem}.*.tmp"):
            with contextlib.suppress(OSError):
                os.unlink(p)
                n += 1
        for p in self._glob("tmp", f"{stem}.*"):
            n += rmtree_quiet(p)
        return n

    def publish(self, key: str, tmp: Path, meta: dict[str, Any]) -> CacheEntry:
        """Atomically publish a verified temp file as the entry for ``key``; never replaces one.

        Returns the published entry (ours, or the one another process published first).
        """
        stem = key_stem(key)
        final = self.layer.sif(stem)
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
            os.fchmod(fd, self.file_mode)
            size = os.fstat(fd).st_size
            sha256 = sha256_fd(fd)  # for images.verify: always (checked on every hit)
        finally:
            os.close(fd)
        record = {
            **meta,
            "digest": key,
            "size": size,
            "sha256": sha256,
            "created": time.time(),
            "creator_uid": self.uid,
            "creator_host": socket.gethostname(),
        }
        self._write_meta(stem, record)
        try:
            os.link(tmp, final)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise ImageError(f"cannot publish {final}: {exc.strerror}") from exc
            if not final.exists():  # a filesystem without hard links: rename (same content anyway)
                os.rename(tmp, final)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _fsync_dir(final.parent)
        entry = self._entry(self.layer, stem, key, "converted")
        if entry is None:
            raise ImageError(f"published {final} but cannot see it")
        return entry

    def _write_meta(self, stem: str, record: dict[str, Any]) -> None:
        """The record goes first, so a published SIF always has one. A record left by a publisher
        that died before its link is replaced when it is ours; another user's blocks publishing
        (the sticky bit keeps us from removing it), with the fix in the message."""
        path = self.layer.meta(stem)
        if self.layer.sif(stem).exists():
            return  # someone published meanwhile: their record stays with their SIF
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise ImageError(f"image cache {path}: {exc.strerror}") from exc
        if st is not None and st.st_uid != self.uid:
            for _ in range(20):  # a publisher just between its record and its link
                if self.layer.sif(stem).exists():
                    return
                time.sleep(0.1)
            raise UntrustedCache(
                Problem(
                    str(path),
                    f"a metadata record of {user_name(st.st_uid)} without its SIF blocks publishing",
                    f"rm -f {q(path)}  (as {user_name(st.st_uid)} or root), or: {self.check_command()}",
                )
            )
        try:
            self._write_json(path, record, self.file_mode, replace=st is not None)
        except OSError as exc:
            raise ImageError(f"cannot write {path}: {exc.strerror}") from exc

    # -- leases -----------------------------------------------------------------------------
    def add_lease(self, key: str, seconds: float, note: str = "") -> Path:
        """Keep ``key`` for at least ``seconds`` (one record per user and entry, extended, never shortened)."""
        self.ensure()
        path = self.layer.root / "leases" / f"{key_stem(key)}.{self.uid}.json"
        until = time.time() + seconds
        try:
            until = max(until, float((load_json(path) or {})["until"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self._write_json(path, {"digest": key, "until": until, "note": note}, self.private_mode, replace=True)
        return path

    def leased_until(self, stem: str) -> float | None:
        latest: float | None = None
        for p in self._glob("leases", f"{stem}.*.json"):
            try:
                until = float((load_json(p) or {})["until"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            latest = until if latest is None else max(latest, until)
        return latest

    # -- listing ----------------------------------------------------------------------------
    def entries(self, *, layers: Literal["all", "cache"] = "all") -> list[CacheEntry]:
        refs = self.refs_by_digest()
        out: list[CacheEntry] = []
        chosen = [*self.site_layers, self.layer] if layers == "all" else [self.layer]
        for layer in chosen:
            for stem in layer.stems():
                key = stem.replace("-", ":", 1)
                try:
                    e = self._entry(layer, stem, key, "listed", strict=False)
                except UntrustedCache as exc:  # a layer refused as a whole: say so, list the others
                    log.warning("image.untrusted", path=str(layer.root), reason=str(exc))
                    break
                if e is None:
                    continue
                all_refs = tuple(dict.fromkeys([*e.refs, *refs.get(key, [])]))
                last = self.last_used(stem) if layer is self.layer else None
                leased = self.leased_until(stem) if layer is self.layer else None
                out.append(
                    CacheEntry(
                        e.digest,
                        e.path,
                        e.size,
                        e.created,
                        last,
                        all_refs,
                        e.layer,
                        "listed",
                        e.manifest,
                        e.source,
                        leased,
                        e.mpi,
                    )
                )
        return out

    # -- garbage collection ----------------------------------------------------------------
    def gc(
        self,
        *,
        max_size_bytes: int | None = None,
        older_than_days: float | None = None,
        in_use_grace_s: float = 600.0,
        dry_run: bool = False,
    ) -> GcReport:
        """Remove least-recently-used entries of the writable layer.

        ``older_than_days``: remove entries not used for that long. ``max_size_bytes``: then remove
        the least recently used until the layer's SIFs fit. Never removed: an entry whose lock is
        live (a conversion of it in progress), one with an unexpired lease, one used within the last
        ``in_use_grace_s`` seconds, and (in a shared cache) other users' files.
        """
        now = time.time()
        report = GcReport(dry_run=dry_run)
        entries = self.entries(layers="cache")
        report.total_bytes_before = sum(e.size for e in entries)
        entries.sort(key=lambda e: (e.last_used or e.created, e.created))

        def protected(e: CacheEntry, lock_held: bool = False) -> str | None:
            stem = key_stem(e.digest or "")
            if not lock_held and lease_is_live(self.layer.lock(stem), self.stale_after_s):
                return "locked"
            until = self.leased_until(stem)
            if until is not None and until > time.time():
                return "leased"
            used = self.last_used(stem) or e.created
            if time.time() - used < in_use_grace_s:
                return "in use"
            return None

        victims: list[CacheEntry] = []
        remaining = list(entries)
        if older_than_days is not None:
            cutoff = now - older_than_days * 86400
            for e in list(remaining):
                if (e.last_used or e.created) < cutoff:
                    reason = protected(e)
                    if reason is None:
                        victims.append(e)
                        remaining.remove(e)
                    else:
                        report.kept.append((e, reason))
        if max_size_bytes is not None:
            total = sum(e.size for e in remaining)
            for e in list(remaining):
                if total <= max_size_bytes:
                    break
                reason = protected(e)
                if reason is None:
                    victims.append(e)
                    remaining.remove(e)
                    total -= e.size
                elif all(k is not e for k, _ in report.kept):
                    report.kept.append((e, reason))
        for e in victims:
            why = None if dry_run else self._remove(e, protected)
            if why is None:
                report.removed.append(e)
                report.freed_bytes += e.size
            else:
                report.kept.append((e, why))
        report.total_bytes_after = report.total_bytes_before - report.freed_bytes
        if not dry_run:
            report.temps_removed = self._gc_leftovers(now)
        return report

    def _remove(self, e: CacheEntry, protected: Any) -> str | None:
        """Remove one entry under its lock; None when removed, else why it was kept."""
        stem = key_stem(e.digest or "")
        lock = self.lock(e.digest or "", purpose="gc")
        if not lock.try_acquire():
            return "locked"
        try:
            reason = protected(e, lock_held=True)
            if reason is not None:
                return str(reason)
            used_before = self.last_used(stem)
            trash = self.layer.root / "tmp" / f".gc.{stem}.{secrets.token_hex(4)}"
            try:
                os.rename(e.path, trash)
            except PermissionError:
                return "not permitted (another user's entry in a shared cache)"
            except OSError as exc:
                return f"cannot remove: {exc.strerror}"
            # a pull that recorded a use between our check and the rename keeps the entry
            if self.last_used(stem) != used_before:
                with contextlib.suppress(OSError):
                    os.link(trash, e.path)
                with contextlib.suppress(OSError):
                    os.unlink(trash)
                return "in use (looked up during gc)"
            with contextlib.suppress(OSError):
                os.unlink(trash)
            for p in [
                str(self.layer.meta(stem)),
                *self._glob("uses", f"{stem}.*"),
                *self._glob("leases", f"{stem}.*"),
            ]:
                with contextlib.suppress(OSError):
                    os.unlink(p)
            for p in self._glob("refs", "*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    if (load_json(p) or {}).get("digest") == e.digest:
                        os.unlink(p)
            return None
        finally:
            lock.release()

    def _gc_leftovers(self, now: float) -> int:
        """Temp files and dirs of conversions that died (no live lock), expired leases, orphan records."""
        n = 0
        for p in self._glob("sif", ".*.tmp"):
            stem = os.path.basename(p)[1:].split(".", 1)[0]
            if not lease_is_live(self.layer.lock(stem), self.stale_after_s) and _age(p, now) > self.stale_after_s:
                with contextlib.suppress(OSError):
                    os.unlink(p)
                    n += 1
        for p in self._glob("tmp", "*"):
            stem = os.path.basename(p).lstrip(".").removeprefix("gc.").split(".", 1)[0]
            if not lease_is_live(self.layer.lock(stem), self.stale_after_s) and _age(p, now) > self.stale_after_s:
                n += rmtree_quiet(p)
        for p in self._glob("leases", "*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if float((load_json(p) or {})["until"]) < now:
                    os.unlink(p)
        for p in self._glob("logs", "*"):
            if _age(p, now) > LOG_KEEP_S:
                with contextlib.suppress(OSError):
                    os.unlink(p)
        for sub in ("meta", "refs", "digests", "leases"):  # json temps of writers that died
            for p in self._glob(sub, ".*.tmp"):
                if _age(p, now) > self.stale_after_s:
                    with contextlib.suppress(OSError):
                        os.unlink(p)
        stems = set(self.layer.stems())
        for p in self._glob("uses", "*"):
            if os.path.basename(p).rsplit(".", 1)[0] not in stems and _age(p, now) > self.stale_after_s:
                with contextlib.suppress(OSError):
                    os.unlink(p)
        for p in self._glob("meta", "*.json"):
            if os.path.basename(p)[:-5] not in stems and _age(p, now) > self.stale_after_s:
                with contextlib.suppress(OSError):
                    os.unlink(p)
        return n

    def _names(self, sub: str, pattern: str) -> list[str]:
        return _names(self.layer.root / sub, pattern)

    def _glob(self, sub: str, pattern: str) -> list[str]:
        return [str(self.layer.root / sub / n) for n in self._names(sub, pattern)]

    # -- helpers ----------------------------------------------------------------------------
    def _write_json(self, path: Path, data: dict[str, Any], mode: int, *, replace: bool) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, json.dumps(data, sort_keys=True).encode())
        finally:
            os.close(fd)
        try:
            if replace:
                os.replace(tmp, path)
            else:
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _names(directory: Path, pattern: str) -> list[str]:
    """Names in ``directory`` matching ``pattern`` (fnmatch; hidden names included)."""
    try:
        return [n for n in os.listdir(directory) if fnmatch.fnmatchcase(n, pattern)]
    except OSError:
        return []


def _age(path: str, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def rmtree_quiet(path: str) -> int:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            # apptainer leaves read-only dirs in its temp trees: make them writable first
            for root, dirs, _files in os.walk(path):
                for d in dirs:
                    sub = os.path.join(root, d)
                    if not os.path.islink(sub):  # chmod follows links: never let one point it elsewhere
                        with contextlib.suppress(OSError):
                            os.chmod(sub, 0o700)
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return 1
    except OSError:
        return 0


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
