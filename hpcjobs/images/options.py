"""Everything the image cache is configured by, gathered in one place.

Precedence: explicit arguments > environment (``HPCJOBS_IMAGE_CACHE``, ``HPCJOBS_INSECURE_REGISTRIES``,
``HPCJOBS_MKSQUASHFS_ARGS``, ``HPCJOBS_IMAGE_BUILD_TMPDIR``) > the site config (``images:``) > defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from hpcjobs.images.lock import DEFAULT_HEARTBEAT_S, DEFAULT_STALE_AFTER_S

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig

ENV_CACHE = "HPCJOBS_IMAGE_CACHE"
ENV_MKSQUASHFS = "HPCJOBS_MKSQUASHFS_ARGS"
ENV_LOCK_STALE = "HPCJOBS_IMAGE_LOCK_STALE_S"
ENV_LOCK_HEARTBEAT = "HPCJOBS_IMAGE_LOCK_HEARTBEAT_S"
ENV_BUILD_TMPDIR = "HPCJOBS_IMAGE_BUILD_TMPDIR"
DEFAULT_CACHE = "~/.cache/hpcjobs/images"
DEFAULT_JOB_LEASE_S = 7 * 86400
DEFAULT_IN_USE_GRACE_S = 600.0


@dataclass(frozen=True)
class CacheOptions:
    cache_dir: str
    site_caches: tuple[str, ...] = ()
    shared: bool = False
    insecure_registries: tuple[str, ...] = ()
    mksquashfs_args: str | None = None
    runtime: Literal["apptainer", "singularity"] = "apptainer"
    binary: str = "apptainer"
    skopeo: str = "skopeo"
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    wait_timeout_s: float | None = None
    verify: Literal["header", "inspect"] = "header"
    build_timeout_s: float | None = None
    job_lease_s: float = DEFAULT_JOB_LEASE_S
    in_use_grace_s: float = DEFAULT_IN_USE_GRACE_S
    extra_build_args: tuple[str, ...] = field(default_factory=tuple)
    build_tmpdir: str | None = None  # apptainer's scratch space; default: inside the cache
    cache_owner: str | None = None  # a shared cache's designated owner (name or uid); default: its root's owner
    verify_hits: bool = False  # sha256 of the SIF against its metadata record on every hit

    @classmethod
    def from_site(
        cls, site: SiteConfig | None = None, *, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> CacheOptions:
        environ = os.environ if env is None else env
        images = site.images if site is not None else None
        cache_dir = environ.get(ENV_CACHE) or (images.cache_dir if images is not None else None) or DEFAULT_CACHE
        insecure: list[str] = list(images.insecure_registries) if images is not None else []
        mksq = environ.get(ENV_MKSQUASHFS) or (images.mksquashfs_args if images is not None else None)
        runtime: Literal["apptainer", "singularity"] = "apptainer"
        binary = "apptainer"
        if site is not None:
            if site.defaults.runtime.name == "singularity":
                runtime = binary = "singularity"
            binary = site.defaults.runtime.binary or binary
        opts = cls(
            cache_dir=expand(cache_dir),
            site_caches=tuple(expand(p) for p in (images.site_caches if images is not None else [])),
            shared=bool(images.shared) if images is not None else False,
            insecure_registries=tuple(insecure),
            mksquashfs_args=str(mksq) if mksq else None,
            runtime=runtime,
            binary=binary,
            heartbeat_s=_float(environ.get(ENV_LOCK_HEARTBEAT), DEFAULT_HEARTBEAT_S),
            stale_after_s=_float(environ.get(ENV_LOCK_STALE), DEFAULT_STALE_AFTER_S),
            build_tmpdir=expand(environ[ENV_BUILD_TMPDIR]) if environ.get(ENV_BUILD_TMPDIR) else None,
            cache_owner=images.cache_owner if images is not None else None,
            verify_hits=images is not None and images.verify == "always",
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "cache_dir" in clean:
            clean["cache_dir"] = expand(clean["cache_dir"])
        for key in ("site_caches", "insecure_registries", "extra_build_args"):
            if key in clean:
                clean[key] = tuple(clean[key])
        return replace(opts, **clean)

    def mksquashfs_argv(self) -> list[str]:
        return ["--mksquashfs-args", self.mksquashfs_args] if self.mksquashfs_args else []

    def cli_args(self) -> list[str]:
        """Options for ``python -m hpcjobs.images pull`` that reproduce these settings elsewhere."""
        args = ["--cache-dir", self.cache_dir, "--shared" if self.shared else "--private"]
        if self.cache_owner is not None:
            args += ["--cache-owner", str(self.cache_owner)]
        if self.verify_hits:
            args += ["--verify", "always"]
        for reg in self.insecure_registries:
            args += ["--insecure-registry", reg]
        if self.mksquashfs_args:
            args += ["--mksquashfs-args", self.mksquashfs_args]
        args += ["--apptainer", self.binary]
        return args


def expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(os.path.expandvars(path)))


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default

