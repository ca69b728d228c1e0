"""Where an image's probe result is kept, and when it may be trusted.

* An image converted by hpcjobs: the probe runs at conversion, on the new SIF before it is
  published, and its result is a field (``mpi``) of the entry's metadata record. That record is
  written once with the SIF and served only under the layer's rules (owned by the SIF's publisher,
  read-only, in a directory nobody else can rename things in: :mod:`hpcjobs.images.trust`), so the
  probe result is exactly as trustworthy as the SIF it describes.
* An entry without that field (published by an older hpcjobs, or pre-staged in a site layer) and a
  SIF used in place: probed at first use, the result kept in the user's own cache
  (``~/.cache/hpcjobs/mpi/image-*.json``, read only when owned by the user and writable by nobody
  else): for an entry under its digest, for a SIF under its identity (real path, device, inode,
  size, mtime and ctime: a changed file is probed again). A result another user could have written
  is never read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hpcjobs.mpi.probe import ImageMpi, probe_image, unknown

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.plugin_api import ResolvedJob
    from hpcjobs.runner import Runner

KEEP_S = 365 * 86400.0  # a digest's content never changes; a SIF's identity changes with it
PROBED_RUNTIMES = {"apptainer": "apptainer", "singularity": "singularity"}


def image_mpi(
    job: ResolvedJob,
    site: SiteConfig,
    runner: Runner | None = None,
    *,
    cache_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ImageMpi:
    """The job's image's MPI: recorded with its cache entry, kept from an earlier probe, or probed now."""
    from hpcjobs.runner import default_runner

    default = PROBED_RUNTIMES.get(job.runtime)
    if default is None:
        return unknown(f"images of runtime {job.runtime!r} are not probed")
    binary = job.runtime_binary or default
    run = runner or default_runner()
    if job.image_digest:
        from hpcjobs.images import open_cache

        entry = open_cache(site, runner=runner, cache_dir=cache_dir).store.find(job.image_digest, touch=False)
        if entry is None:
            return unknown("the image is not converted yet; its conversion records its MPI")
        recorded = ImageMpi.from_record(entry.mpi)
        if recorded is not None:
            return recorded
        return _kept_or_probed(f"digest-{job.image_digest}", entry.path, binary, run, runner, env)
    try:
        real = os.path.realpath(job.image)
        st = os.stat(real)
    except OSError as exc:
        return unknown(f"cannot read {job.image}: {exc.strerror}")
    ident = f"{real}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
    return _kept_or_probed(f"sif-{ident}", real, binary, run, runner, env)


def _kept_or_probed(
    key: str, path: str, binary: str, run: Runner, runner: Runner | None, env: Mapping[str, str] | None
) -> ImageMpi:
    from hpcjobs.sweep.limitcache import asks_this_host
    from hpcjobs.user_cache import read_keyed, write_keyed

    # a fake runner's answers describe no real image: neither read nor write the user's cache then
    keep = asks_this_host(runner)
    file = kept_path(key, env)
    if keep:
        kept = ImageMpi.from_record(read_keyed(file, key, "mpi", 65536, KEEP_S))
        if kept is not None:
            return kept
    found = probe_image(run, binary, path)
    if keep and found.error is None:
        write_keyed(file, key, "mpi", found.to_record())
    return found


def kept_path(key: str, env: Mapping[str, str] | None = None) -> Path:
    """The user-cache file for ``key`` (tests and ``docs/images.md`` name it)."""
    from hpcjobs.user_cache import cache_root

    return cache_root(env) / "mpi" / f"image-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
