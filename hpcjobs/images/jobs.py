"""Make a resolved job run from a digest-pinned SIF: convert now, or as a Slurm job it depends on.

The rendered script always names the SIF path (compute nodes never pull) and its header records
the original reference and the digest. With ``images.convert_on: slurm`` a cold image is converted
by a small batch job on ``images.build_partition`` that runs ``python -m hpcjobs.images pull`` with
the same interpreter, so it goes through the same lock and publish path. That job is a launch plan
(:func:`conversion_plan`) the caller's :class:`~hpcjobs.plugin_api.PlanSubmitter` renders and
submits: this package renders and submits nothing itself. The workload gets
``--dependency=afterok:<id>``. Several workloads prepared while one conversion job is queued
depend on that one job.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from hpcjobs.errors import ImageError
from hpcjobs.images.cache import ImageCache, log
from hpcjobs.images.digest import Resolved
from hpcjobs.images.options import CacheOptions
from hpcjobs.images.refs import parse_ref
from hpcjobs.images.trust import load_json
from hpcjobs.plugin_api import Directive, LaunchPlan, PlanSubmitter, Words

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.plugin_api import ResolvedJob


def prepare(
    cache: ImageCache, job: ResolvedJob, site: SiteConfig, submitter: PlanSubmitter | None = None
) -> ResolvedJob:
    """An OCI or definition-file image: look it up, convert it or queue its conversion (see prepare_job)."""
    ref_text = job.image_ref or job.image
    res = cache.resolve(parse_ref(ref_text))
    entry = cache.lookup(res)
    if entry is None and site.images.convert_on == "slurm":
        _check_dependency_extendable(job.dependency)  # before a conversion job exists, not after
        if submitter is None:
            raise ImageError(
                f"image {ref_text!r} is not cached and images.convert_on is slurm, but nothing was given to "
                "submit the conversion job with (pass submitter=hpcjobs.api.plan_submitter(scheduler))"
            )
        job_id = _conversion_job(cache, res, site, submitter)
        path = str(cache.planned_path(res))
        cache.store.add_lease(res.key, cache.opts.job_lease_s, note=f"job {job.name}, conversion job {job_id}")
        return replace(
            job,
            image=path,
            image_ref=ref_text,
            image_digest=res.key,
            dependency=_add_dependency(job.dependency, f"afterok:{job_id}"),
        )
    if entry is None:
        entry = cache.pull_resolved(res)
    if entry.layer == "cache":
        cache.store.add_lease(res.key, cache.opts.job_lease_s, note=f"job {job.name}")
    return replace(job, image=entry.path, image_ref=ref_text, image_digest=res.key)


def pin(cache: ImageCache, job: ResolvedJob) -> ResolvedJob:
    """``job`` naming the digest-pinned SIF it would run: the cached file, or the path a conversion
    will publish. Resolves the digest only: nothing is converted, locked, leased or submitted."""
    ref_text = job.image_ref or job.image
    res = cache.resolve(parse_ref(ref_text))
    entry = cache.store.find(res.key, touch=False)  # looking is not using: gc's LRU order stays
    path = entry.path if entry is not None else str(cache.planned_path(res))
    return replace(job, image=path, image_ref=ref_text, image_digest=res.key)


def _check_dependency_extendable(old: str | None) -> None:
    if old and "?" in old:
        raise ImageError(
            f"cannot add the image conversion job to the dependency {old!r} (it uses '?', any-of): "
            "convert the image first (hpcjobs images pull) or use an all-of dependency"
        )


def _add_dependency(old: str | None, new: str) -> str:
    _check_dependency_extendable(old)
    return f"{old},{new}" if old else new


def conversion_plan(
    res: Resolved,
    opts: CacheOptions,
    *,
    partition: str | None,
    time_min: int,
    python: str | None = None,
    log_dir: str | None = None,
) -> LaunchPlan:
    """The conversion job as a launch plan: the caller renders and submits it like any job."""
    source = res.ref.canonical
    if res.ref.kind == "docker" and res.manifest:
        source = f"docker://{res.ref.name}@{res.manifest}"  # the digest resolved now, whatever the tag does
    argv = (
        python or sys.executable,
        "-m",
        "hpcjobs.images",
        "pull",
        *opts.cli_args(),
        "--expect-digest",
        res.key,
        "--",
        source,
    )
    directives = [Directive("--job-name", f"hpcjobs-convert-{res.key.split(':', 1)[1][:12]}")]
    if partition:
        directives.append(Directive("--partition", partition))
    directives += [
        Directive("--nodes", "1"),
        Directive("--ntasks", "1"),
        Directive("--time", str(time_min)),
        Directive("--output", os.path.join(log_dir or ".", "hpcjobs-convert-%j.out")),
    ]
    return LaunchPlan(
        comments=[f"hpcjobs image conversion: {res.ref.canonical}", f"digest: {res.key}"],
        directives=directives,
        shell_options="-euo pipefail",
        command=[Words(argv, "image conversion (images.convert_on: slurm)", "program", "hpcjobs.images")],
    )


def _conversion_job(cache: ImageCache, res: Resolved, site: SiteConfig, submitter: PlanSubmitter) -> str:
    pending = _pending_job(cache, res, submitter)
    if pending is not None:
        log.info("image.convert_job", ref=res.ref.canonical, digest=res.key, job_id=pending, reused=True)
        return pending
    cache.store.ensure()
    logs = str(cache.store.layer.root / "logs")
    plan = conversion_plan(
        res, cache.opts, partition=site.images.build_partition, time_min=site.images.build_time_min, log_dir=logs
    )
    job_id = submitter.submit_plan(plan, cwd=logs)
    _record_pending(cache, res, job_id)
    log.info(
        "image.convert_job",
        ref=res.ref.canonical,
        digest=res.key,
        job_id=job_id,
        reused=False,
        partition=site.images.build_partition,
    )
    return job_id


def _pending_path(cache: ImageCache, res: Resolved) -> str:
    return str(cache.store.layer.root / "leases" / f"{res.file_key}.{os.getuid()}.convert-job")


def _record_pending(cache: ImageCache, res: Resolved, job_id: str) -> None:
    path = _pending_path(cache, res)
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    with contextlib.suppress(OSError, ImageError):
        cache.store.ensure()
        with open(tmp, "w") as f:
            json.dump({"job_id": job_id, "submitted": time.time(), "digest": res.key}, f)
        os.replace(tmp, path)


def _pending_job(cache: ImageCache, res: Resolved, submitter: PlanSubmitter) -> str | None:
    """The id of this user's queued or running conversion job for the digest, if any."""
    try:
        job_id = str((load_json(_pending_path(cache, res)) or {})["job_id"])
    except (KeyError, TypeError):
        return None
    try:
        return job_id if submitter.is_active(job_id) else None
    except Exception:  # any scheduler trouble: submit a fresh conversion job instead
        return None
