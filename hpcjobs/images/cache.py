"""The pull path: resolve → look up (site layers, then the writable cache) → lock → convert →
verify → publish. One conversion per content digest, however many processes ask at once."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpcjobs.errors import ImageError
from hpcjobs.images.convert import Converter, spython_inspect
from hpcjobs.images.digest import Resolved, Resolver
from hpcjobs.images.lock import LeaseInfo
from hpcjobs.images.options import CacheOptions
from hpcjobs.images.refs import ImageRef, parse_ref, stat_sif
from hpcjobs.images.registry import InsecureRegistries
from hpcjobs.images.store import CacheEntry, GcReport, ImageStore, rmtree_quiet
from hpcjobs.images.trust import resolve_owner
from hpcjobs.log import get_logger
from hpcjobs.mpi.probe import probe_image
from hpcjobs.runner import Runner, default_runner

log = get_logger("hpcjobs.images")
EventHook = Callable[[str, Mapping[str, Any]], None]


class ImageCache:
    """An image cache configured by :class:`CacheOptions`; the functions in ``hpcjobs.images`` use one."""

    def __init__(self, opts: CacheOptions, runner: Runner | None = None, *, on_event: EventHook | None = None) -> None:
        self.opts = opts
        self.runner = runner or default_runner()
        self.store = ImageStore(
            opts.cache_dir,
            opts.site_caches,
            shared=opts.shared,
            heartbeat_s=opts.heartbeat_s,
            stale_after_s=opts.stale_after_s,
            owner=resolve_owner(opts.cache_owner),
            verify_hits=opts.verify_hits,
        )
        self.resolver = Resolver(
            self.runner,
            insecure=InsecureRegistries(opts.insecure_registries),
            memo=self.store,
            skopeo_binary=opts.skopeo,
        )
        self.converter = Converter(self.runner, opts)
        self.on_event = on_event

    def _event(self, name: str, **fields: Any) -> None:
        log.info(f"image.{name}", **fields)
        if self.on_event is not None:
            self.on_event(name, fields)

    # -- resolve and look up ----------------------------------------------------------------
    def resolve(self, ref: str | ImageRef) -> Resolved:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        self._event("resolve", ref=parsed.canonical)
        return self.resolver.resolve(parsed)

    def lookup(self, res: Resolved) -> CacheEntry | None:
        """The cached entry for ``res`` (a hit is recorded and logged), or None."""
        entry = self.store.find(res.key)
        if entry is not None:
            self._event("hit", ref=res.ref.canonical, digest=res.key, path=entry.path, layer=entry.layer)
            self.store.record_ref(res.ref.canonical, res.key, res.manifest)
        return entry

    def in_place(self, ref: ImageRef) -> CacheEntry:
        st = stat_sif(ref)
        assert ref.path is not None
        return CacheEntry(
            digest=None,
            path=ref.path,
            size=st.st_size,
            created=st.st_mtime,
            refs=(ref.original,),
            layer="in-place",
            origin="in-place",
            source="sif",
        )

    # -- pull -------------------------------------------------------------------------------
    def pull(self, ref: str, *, expect_digest: str | None = None) -> CacheEntry:
        parsed = parse_ref(ref)
        if parsed.kind == "sif":
            return self.in_place(parsed)
        res = self.resolve(parsed)
        if expect_digest is not None and res.key != expect_digest:
            raise ImageError(f"{parsed.canonical} is now {res.key}, not the expected {expect_digest}")
        return self.pull_resolved(res)

    def pull_resolved(self, res: Resolved) -> CacheEntry:
        ref = res.ref.canonical
        entry = self.lookup(res)
        if entry is not None:
            return entry
        self._event("miss", ref=ref, digest=res.key)

        def on_wait(holder: LeaseInfo | None) -> None:
            self._event("wait", ref=ref, digest=res.key, holder=holder.describe() if holder else "unknown")

        def on_takeover(holder: LeaseInfo | None, reason: str) -> None:
            self._event(
                "takeover",
                ref=ref,
                digest=res.key,
                holder=holder.describe() if holder else "unknown",
                reason=reason,
            )

        lock = self.store.lock(
            res.key,
            timeout_s=self.opts.wait_timeout_s,
            purpose=f"convert {ref}",
            on_wait=on_wait,
            on_takeover=on_takeover,
        )
        with lock:
            entry = self.store.find(res.key)
            if entry is not None:
                self._event("hit", ref=ref, digest=res.key, path=entry.path, layer=entry.layer, after_wait=True)
                self.store.record_ref(ref, res.key, res.manifest)
                return replace(entry, origin="waited")
            entry = self._convert(res, lock_lost=lambda: lock.lost)
        self.store.record_ref(ref, res.key, res.manifest)
        return entry

    def _convert(self, res: Resolved, lock_lost: Callable[[], bool]) -> CacheEntry:
        ref = res.ref.canonical
        self.store.remove_temps(res.key)
        tmp = self.store.temp_sif(res.key)
        work = self.store.temp_dir(res.key)
        started = time.monotonic()
        self._event("convert", ref=ref, digest=res.key, source=res.build.transport)
        try:
            self.converter.build(res, tmp, work, self.store.apptainer_cache())
            summary = self.converter.verify(tmp)
            if lock_lost():
                log.warning("image.lock_lost", ref=ref, digest=res.key)
            meta = {
                "source": res.ref.kind,
                "ref": ref,
                "refs": [ref],
                "manifest": res.manifest,
                "index": res.index,
                "key_kind": res.key_kind,
                "arch": summary.arch,
                "convert_s": round(time.monotonic() - started, 3),
                # what MPI the image carries, for the pre-flight (hpcjobs.mpi); never fails the conversion
                "mpi": probe_image(self.runner, self.opts.binary, str(tmp)).to_record(),
            }
            entry = self.store.publish(res.key, tmp, meta)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            rmtree_quiet(str(work))
        self._event(
            "publish",
            ref=ref,
            digest=res.key,
            path=entry.path,
            size=entry.size,
            seconds=round(time.monotonic() - started, 3),
        )
        return entry

    # -- list, inspect, gc ------------------------------------------------------------------
    def list_entries(self) -> list[CacheEntry]:
        return self.store.entries()

    def inspect(self, ref: str, *, labels: bool = True, use_spython: bool = True) -> dict[str, Any]:
        parsed = parse_ref(ref)
        info: dict[str, Any] = {"ref": parsed.original, "canonical": parsed.canonical, "kind": parsed.kind}
        entry: CacheEntry | None
        if parsed.kind == "sif":
            entry = self.in_place(parsed)
        else:
            res = self.resolve(parsed)
            info.update(
                digest=res.key,
                key_kind=res.key_kind,
                manifest=res.manifest,
                index=res.index,
                build_source=res.build.transport,
            )
            entry = self.store.find(res.key, touch=False)
        info["cached"] = entry is not None and entry.layer != "in-place"
        if entry is not None:
            info["entry"] = entry.to_dict()
            if labels:
                info["labels"] = self._labels(entry.path, use_spython)
        return info

    def _labels(self, path: str, use_spython: bool) -> dict[str, Any]:
        if use_spython:
            with contextlib.suppress(ImageError):
                return spython_inspect(path)
        try:
            return self.converter.inspect_labels(path)
        except ImageError as exc:
            return {"error": str(exc)}

    def gc(
        self,
        *,
        max_size_bytes: int | None = None,
        older_than_days: float | None = None,
        dry_run: bool = False,
        in_use_grace_s: float | None = None,
    ) -> GcReport:
        report = self.store.gc(
            max_size_bytes=max_size_bytes,
            older_than_days=older_than_days,
            dry_run=dry_run,
            in_use_grace_s=self.opts.in_use_grace_s if in_use_grace_s is None else in_use_grace_s,
        )
        self._event(
            "gc",
            removed=len(report.removed),
            freed_bytes=report.freed_bytes,
            kept=len(report.kept),
            dry_run=dry_run,
        )
        return report

    def planned_path(self, res: Resolved) -> Path:
        return self.store.layer.sif(res.file_key)
