"""Split a sweep's points into job arrays that fit the cluster's limits. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpcjobs.errors import LimitExceeded
from hpcjobs.schedulers.base import ArrayLimits


@dataclass(frozen=True)
class ArrayPlan:
    """One job array: task ``t`` runs point ``start + t`` (a range), or ``points[t]`` (a retry)."""

    count: int
    start: int | None = None
    points: tuple[int, ...] | None = None

    def point_of(self, task: int) -> int:
        if self.points is not None:
            return self.points[task]
        assert self.start is not None
        return self.start + task

    def array_spec(self, throttle: int | None) -> str:
        spec = "0" if self.count == 1 else f"0-{self.count - 1}"
        return f"{spec}%{throttle}" if throttle else spec


def plan_arrays(points: Sequence[int], limits: ArrayLimits, *, contiguous: bool) -> list[ArrayPlan]:
    """Arrays for ``points`` (sorted point indices). With ``contiguous`` (a fresh sweep, points
    0..n-1) each array covers a range; otherwise (a retry) each lists its points. Refuses, before
    anything is submitted, a sweep that could never be run under the limits."""
    n = len(points)
    if n == 0:
        raise LimitExceeded("a sweep needs at least one point")
    if limits.max_array_size < 2:
        raise LimitExceeded(f"this cluster does not allow job arrays (MaxArraySize = {limits.max_array_size})")
    if n > limits.max_job_count:
        raise LimitExceeded(
            f"{n} points are more than the cluster's MaxJobCount = {limits.max_job_count} (each running "
            f"task is a job in the controller): split the sweep into parts of at most {limits.max_job_count}"
        )
    if limits.max_submit_jobs is not None and n > limits.max_submit_jobs:
        raise LimitExceeded(
            f"{n} points are more than you may have submitted at once ({limits.submit_limit_source or 'limit'}"
            f" = {limits.max_submit_jobs}): split the sweep into parts of at most {limits.max_submit_jobs}"
        )
    check_room(n, limits)
    size = limits.max_array_size  # task ids 0 … MaxArraySize-1
    out: list[ArrayPlan] = []
    for first in range(0, n, size):
        chunk = points[first : first + size]
        if contiguous:
            out.append(ArrayPlan(count=len(chunk), start=chunk[0]))
        else:
            out.append(ArrayPlan(count=len(chunk), points=tuple(chunk)))
    return out


def check_room(n: int, limits: ArrayLimits) -> None:
    """Refuse ``n`` more tasks when the controller's job records (``limits.jobs_now``, when
    counted) would reach MaxJobCount: sbatch would retry for minutes and then fail part-way."""
    if limits.jobs_now is not None and limits.jobs_now + n >= limits.max_job_count:
        raise LimitExceeded(
            f"not now: the controller holds {limits.jobs_now} jobs (all users; ended ones until MinJobAge, "
            f"every array task counted) and {n} more would reach MaxJobCount = {limits.max_job_count}; sbatch "
            "would wait minutes and then fail. Submit fewer points, or later"
        )
