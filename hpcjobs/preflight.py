"""Checks that need the submitting host's filesystem. Kept out of resolve() so that stays pure."""

from __future__ import annotations

import os
from collections.abc import Callable

from hpcjobs.config.site import Policy
from hpcjobs.errors import BindError, PolicyViolation
from hpcjobs.resolve import CLI, JOB, ResolvedJob


def check_bind_sources(job: ResolvedJob, exists: Callable[[str], bool] = os.path.exists) -> None:
    """Refuse a bind whose source is missing, except on paths the site says are node-local."""
    for b in job.binds:
        if b.src in job.unchecked_bind_sources:
            continue
        if not exists(b.src):
            raise BindError(f"bind source {b.src!r} does not exist (bind {b.spec()!r})")


def check_bind_realpaths(
    job: ResolvedJob, policy: Policy, realpath: Callable[[str], str] = os.path.realpath
) -> None:
    """resolve() checks the job's bind sources as written; this sees through symlinks
    (``/tmp/k -> /etc/munge``). Binds from the site config itself are the admin's choice."""
    if not policy.deny_bind_sources:
        return
    for b in job.binds:
        if b.src in job.unchecked_bind_sources or job.provenance.get(f"bind:{b.dst}") not in (CLI, JOB):
            continue
        real = realpath(b.src)
        denied = policy.denied_bind_source(real)
        if denied is not None:
            raise PolicyViolation(
                f"bind source {b.src!r} leads to {real!r}, which site policy does not allow "
                f"(policy.deny_bind_sources: {denied})"
            )
