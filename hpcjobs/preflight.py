"""Checks that need the submitting host's filesystem. Kept out of resolve() so that stays pure."""

from __future__ import annotations

import os
from collections.abc import Callable

from hpcjobs.errors import BindError
from hpcjobs.resolve import ResolvedJob


def check_bind_sources(job: ResolvedJob, exists: Callable[[str], bool] = os.path.exists) -> None:
    """Refuse a bind whose source is missing, except on paths the site says are node-local."""
    for b in job.binds:
        if b.src in job.unchecked_bind_sources:
            continue
        if not exists(b.src):
            raise BindError(f"bind source {b.src!r} does not exist (bind {b.spec()!r})")
