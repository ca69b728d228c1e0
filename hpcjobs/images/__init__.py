"""The image cache: each container image converted to SIF once per content digest.

Shared, race-free, never corrupt (see docs/images.md). From Python::

    from hpcjobs import images
    entry = images.pull("docker://ghcr.io/org/tool:1.2")   # CacheEntry: .path .digest .size …
    images.list_entries()
    images.inspect("oci-archive:/data/tool.tar")
    images.gc(max_size_bytes=50 * 2**30, older_than_days=30)
    job = images.prepare_job(resolved_job, site)           # digest-pinned SIF path in job.image

Every function takes ``site`` (a SiteConfig: its ``images:`` section) and ``runner`` (the process
seam); ``cache_dir`` overrides the writable cache (as does ``$HPCJOBS_IMAGE_CACHE``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hpcjobs._lazy import lazy_attributes

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.images.cache import EventHook, ImageCache
    from hpcjobs.images.options import CacheOptions
    from hpcjobs.images.refs import ImageRef, parse_ref
    from hpcjobs.images.store import CacheEntry, GcReport
    from hpcjobs.plugin_api import PlanSubmitter, ResolvedJob
    from hpcjobs.runner import Runner

# Loaded on first use: a job whose image is a plain .sif never needs the cache machinery,
# and ``hpcjobs submit`` should not pay for importing it.
_LAZY = {
    "CacheEntry": "hpcjobs.images.store",
    "GcReport": "hpcjobs.images.store",
    "CacheOptions": "hpcjobs.images.options",
    "ImageCache": "hpcjobs.images.cache",
    "ImageRef": "hpcjobs.images.refs",
    "parse_ref": "hpcjobs.images.refs",
}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "CacheEntry", "CacheOptions", "GcReport", "ImageCache", "ImageRef", "gc", "inspect", "list_entries",
    "open_cache", "parse_ref", "pin_job", "prepare_job", "pull",
]  # fmt: skip


def open_cache(
    site: SiteConfig | None = None,
    *,
    runner: Runner | None = None,
    cache_dir: str | None = None,
    on_event: EventHook | None = None,
    **options: Any,
) -> ImageCache:
    """An :class:`ImageCache` for ``site`` (None: defaults); ``options`` override CacheOptions fields."""
    from hpcjobs.images.cache import ImageCache
    from hpcjobs.images.options import CacheOptions

    opts = CacheOptions.from_site(site, cache_dir=cache_dir, **options)
    return ImageCache(opts, runner, on_event=on_event)


def pull(
    ref: str,
    *,
    site: SiteConfig | None = None,
    runner: Runner | None = None,
    cache_dir: str | None = None,
    expect_digest: str | None = None,
    on_event: EventHook | None = None,
    **options: Any,
) -> CacheEntry:
    """Resolve ``ref`` to its digest and return the cached SIF, converting it first if needed.

    A ``.sif`` file is returned in place (``digest`` None). ``expect_digest`` refuses a source
    that no longer has that digest.
    """
    cache = open_cache(site, runner=runner, cache_dir=cache_dir, on_event=on_event, **options)
    return cache.pull(ref, expect_digest=expect_digest)


def list_entries(*, site: SiteConfig | None = None, cache_dir: str | None = None) -> list[CacheEntry]:
    """Entries of the site layers and the writable cache (site layers first)."""
    return open_cache(site, cache_dir=cache_dir).list_entries()


def inspect(
    ref: str,
    *,
    site: SiteConfig | None = None,
    runner: Runner | None = None,
    cache_dir: str | None = None,
    labels: bool = True,
) -> dict[str, Any]:
    """What ``ref`` resolves to (digest, manifest), whether it is cached, and the SIF's labels."""
    cache = open_cache(site, runner=runner, cache_dir=cache_dir)
    return cache.inspect(ref, labels=labels, use_spython=runner is None)


def gc(
    max_size_bytes: int | None = None,
    older_than_days: float | None = None,
    *,
    site: SiteConfig | None = None,
    cache_dir: str | None = None,
    dry_run: bool = False,
    in_use_grace_s: float | None = None,
) -> GcReport:
    """Remove least-recently-used entries of the writable cache; never one in use, leased or locked."""
    cache = open_cache(site, cache_dir=cache_dir)
    return cache.gc(
        max_size_bytes=max_size_bytes,
        older_than_days=older_than_days,
        dry_run=dry_run,
        in_use_grace_s=in_use_grace_s,
    )


def prepare_job(
    job: ResolvedJob,
    site: SiteConfig,
    runner: Runner | None = None,
    submitter: PlanSubmitter | None = None,
    *,
    cache_dir: str | None = None,
) -> ResolvedJob:
    """``job`` with ``image`` = the digest-pinned SIF path, ``image_ref`` = the original reference,
    ``image_digest`` = the digest; with ``images.convert_on: slurm`` and a cold image, also
    ``dependency`` on the conversion job submitted through ``submitter``
    (:func:`hpcjobs.api.plan_submitter` wraps a scheduler)."""
    from hpcjobs.images.refs import parse_ref, stat_sif

    ref_text = job.image_ref or job.image
    parsed = parse_ref(ref_text)
    if parsed.kind == "sif":  # used in place, never copied: no cache involved
        stat_sif(parsed)
        assert parsed.path is not None
        return replace(job, image=parsed.path, image_ref=ref_text, image_digest=None)
    from hpcjobs.images.jobs import prepare

    cache = open_cache(site, runner=runner, cache_dir=cache_dir)
    return prepare(cache, job, site, submitter)


def pin_job(
    job: ResolvedJob, site: SiteConfig, runner: Runner | None = None, *, cache_dir: str | None = None
) -> ResolvedJob:
    """Like :func:`prepare_job` without side effects: ``job`` naming the digest-pinned SIF it would
    run (cached, or where the conversion will put it). For ``hpcjobs render``."""
    from hpcjobs.images.refs import parse_ref

    if parse_ref(job.image_ref or job.image).kind == "sif":
        return job
    from hpcjobs.images.jobs import pin

    return pin(open_cache(site, runner=runner, cache_dir=cache_dir), job)
