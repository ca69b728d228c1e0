"""``Sweep``: one handle for every point of a parameter study."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcjobs.errors import HpcjobsError, WaitTimeout
from hpcjobs.schedulers.states import JobState
from hpcjobs.sweep.record import ArrayEntry, SweepRecord, load_record
from hpcjobs.sweep.script import log_name

if TYPE_CHECKING:
    from hpcjobs.runner import Runner
    from hpcjobs.schedulers.base import JobStatus, Scheduler
    from hpcjobs.sweep.progress import Progress

FORGOTTEN = "no longer known to Slurm (past MinJobAge, and not seen ending by hpcjobs)"


@dataclass(frozen=True)
class PointStatus:
    """The latest attempt of one point."""

    point: int
    attempt: int
    job_id: str  # ARRAY_TASK
    state: JobState
    exit_code: int | None
    signal: int | None
    elapsed_s: int | None
    log: str  # the file the latest attempt writes (str: 10,000 Path objects per poll cost more than the poll)
    reason: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal or self.state is JobState.UNKNOWN

    def as_dict(self) -> dict[str, Any]:
        return {"point": self.point, "attempt": self.attempt, "job_id": self.job_id, "state": self.state.name,
                "exit_code": self.exit_code, "signal": self.signal, "elapsed_s": self.elapsed_s,
                "log": self.log, "reason": self.reason}  # fmt: skip


@dataclass(frozen=True)
class SweepStatus:
    sweep_id: str
    points: list[PointStatus]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.points:
            out[p.state.name] = out.get(p.state.name, 0) + 1
        return out

    @property
    def done(self) -> bool:
        return all(p.is_terminal for p in self.points)

    @property
    def ok(self) -> bool:
        return all(p.state.is_success for p in self.points)

    def failed(self) -> list[int]:
        return [p.point for p in self.points if p.is_terminal and not p.state.is_success]

    def table(self, points: Sequence[int] | None = None) -> str:
        """point → state, exit code, elapsed, log file; one row per point."""
        rows = self.points if points is None else [self.points[i] for i in points]
        out = [f"{'POINT':>6}  {'STATE':<13} {'EXIT':>4} {'ELAPSED':>8}  {'JOB':<14} LOG"]
        for p in rows:
            code = "" if p.exit_code is None else str(p.exit_code)
            if p.signal is not None:
                code = f"sig{p.signal}"
            out.append(f"{p.point:>6}  {p.state.name:<13} {code:>4} {_duration(p.elapsed_s):>8}  "
                       f"{p.job_id:<14} {p.log}")  # fmt: skip
        return "\n".join(out)

    def summary(self) -> str:
        from hpcjobs.sweep.progress import summary_line

        return f"sweep {self.sweep_id}: " + summary_line(self.counts, len(self.points))


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Sweep:
    """A submitted sweep: every point's state in one Slurm query per poll, ``wait``, ``cancel``,
    ``failed``, ``logs(point)``, ``retry()``. ``Sweep.load(ID)`` finds a sweep submitted earlier."""

    def __init__(self, record: SweepRecord, scheduler: Scheduler) -> None:
        self.record = record
        self.scheduler = scheduler

    @classmethod
    def load(cls, ref: str, *, scheduler: Scheduler | None = None, runner: Runner | None = None) -> Sweep:
        from hpcjobs.schedulers import get_scheduler

        return cls(load_record(ref), scheduler or get_scheduler(runner))

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def directory(self) -> Path:
        return self.record.directory

    @property
    def job_ids(self) -> list[str]:
        """The array job ids, in submission order (retries last)."""
        return [a.job_id for a in self.record.arrays]

    def __len__(self) -> int:
        return self.record.n_points

    def __repr__(self) -> str:
        return f"Sweep({self.id!r}, points={len(self)}, arrays={self.job_ids})"

    # ---------------------------------------------------------------------------------- where

    def _latest(self) -> list[tuple[ArrayEntry, int]]:
        """For each point: the array and task id of its latest attempt."""
        latest: list[tuple[ArrayEntry, int] | None] = [None] * self.record.n_points
        for entry in self.record.arrays:
            for task in range(entry.plan.count):
                latest[entry.plan.point_of(task)] = (entry, task)
        missing = [i for i, x in enumerate(latest) if x is None]
        if missing:
            raise HpcjobsError(f"sweep {self.id}: record has no array for point(s) {missing[:5]}")
        return [x for x in latest if x is not None]

    def log_path(self, point: int) -> Path:
        entry, _task = self._latest()[self._index(point)]
        return self.directory / "logs" / log_name(point, entry.attempt)

    def logs(self, point: int) -> str:
        """The output of the point's latest attempt (stdout and stderr, as a single job's log)."""
        path = self.log_path(point)
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise HpcjobsError(f"sweep {self.id} point {point}: {path} does not exist (yet)") from None

    def _index(self, point: int) -> int:
        if not 0 <= point < self.record.n_points:
            raise HpcjobsError(f"sweep {self.id} has points 0…{self.record.n_points - 1}, not {point}")
        return point

    # --------------------------------------------------------------------------------- status

    def status(self) -> SweepStatus:
        """Every point's latest attempt: one ``squeue`` for all arrays still running (plus one
        history query for arrays Slurm has forgotten). Ends seen are kept in the record."""
        self.record.refresh()  # a retry from another process adds arrays
        latest = self._latest()
        final = self.record.final
        open_arrays = sorted({e.job_id for i, (e, _t) in enumerate(latest)
                              if not _final_for(final.get(i), e.attempt)}, key=int)  # fmt: skip
        answer: Mapping[str, JobStatus] = self.scheduler.status(open_arrays) if open_arrays else {}
        out: list[PointStatus] = []
        changed = False
        logs = str(self.directory / "logs")
        for point, (entry, task) in enumerate(latest):
            task_id = f"{entry.job_id}_{task}"
            log = f"{logs}/{log_name(point, entry.attempt)}"
            kept = final.get(point)
            if _final_for(kept, entry.attempt):
                assert kept is not None
                _a, state, code, sig, elapsed = kept[:5]
                out.append(PointStatus(point, entry.attempt, task_id, JobState[state], code, sig, elapsed, log))
                continue
            st = answer.get(task_id)
            if st is None or not st.known:
                out.append(PointStatus(point, entry.attempt, task_id, JobState.UNKNOWN, None, None, None, log,
                                       FORGOTTEN))  # fmt: skip
                continue
            ps = PointStatus(point, entry.attempt, task_id, st.state, st.exit_code, st.signal, st.elapsed_s, log,
                             st.reason)  # fmt: skip
            out.append(ps)
            if st.state.is_terminal:
                final[point] = [entry.attempt, st.state.name, st.exit_code, st.signal, st.elapsed_s]
                changed = True
        if changed:
            try:
                self.record.update()
            except OSError:
                pass  # someone else's sweep, read-only: the answer is still right
        return SweepStatus(self.id, out)

    def failed(self) -> list[int]:
        """Points whose latest attempt ended without success."""
        return self.status().failed()

    def wait(
        self,
        *,
        poll_s: float = 5.0,
        timeout_s: float | None = None,
        progress: Progress | bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> SweepStatus:
        """Poll until every point has ended. ``progress``: a callable(counts, total); True or None:
        a rich bar when stderr is a terminal and rich is installed, else plain lines (None: only
        in a terminal); False: nothing."""
        from hpcjobs.sweep import progress as prog

        if poll_s <= 0:
            raise HpcjobsError(f"poll_s must be positive, got {poll_s}")
        if callable(progress):
            return self._wait(progress, poll_s, timeout_s, sleep, clock)
        if progress is False or (progress is None and not prog.use_rich()):
            return self._wait(None, poll_s, timeout_s, sleep, clock)
        if prog.use_rich():
            with prog.RichBar(len(self), f"sweep {self.id}") as bar:
                return self._wait(bar, poll_s, timeout_s, sleep, clock)
        return self._wait(prog.plain(), poll_s, timeout_s, sleep, clock)

    def _wait(
        self,
        show: Progress | None,
        poll_s: float,
        timeout_s: float | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> SweepStatus:
        deadline = None if timeout_s is None else clock() + timeout_s
        while True:
            st = self.status()
            if show is not None:
                show(st.counts, len(st.points))
            if st.done:
                return st
            if deadline is not None and clock() >= deadline:
                raise WaitTimeout(f"sweep {self.id} not finished after {timeout_s:g} s: {st.summary()}")
            sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - clock())))

    # -------------------------------------------------------------------------------- actions

    def cancel(self) -> None:
        """Cancel every array of the sweep (retries included)."""
        self.scheduler.cancel(self.job_ids)

    def retry(self, points: Sequence[int] | None = None) -> list[str]:
        """Submit the failed points (or ``points``) again as new array(s); each task keeps its
        point's original index (its record, its log ``point-N.retryK.out``). Returns the new
        array job ids. The image is the sweep's: the same digest-pinned SIF, not converted again."""
        from dataclasses import replace

        from hpcjobs.config.site import SiteConfig
        from hpcjobs.images.refs import parse_ref, stat_sif
        from hpcjobs.resolve import resolve
        from hpcjobs.spec import JobSpec
        from hpcjobs.sweep.arrays import cluster_limits, submit_arrays
        from hpcjobs.sweep.plan import plan_arrays

        st = self.status()
        chosen = sorted(set(st.failed() if points is None else [self._index(p) for p in points]))
        if not chosen:
            return []
        running = [p for p in chosen if not st.points[p].is_terminal]
        if running:
            raise HpcjobsError(f"sweep {self.id}: point(s) {running[:10]} have not ended; retry only ended points")
        spec = JobSpec.model_validate(self.record.job)
        site = SiteConfig.model_validate(self.record.site)
        job = resolve(spec, site)
        image = self.record.image
        if image.get("path"):
            stat_sif(parse_ref(str(image["path"])))  # still there (a gc could have removed it)
            job = replace(job, image=str(image["path"]), image_ref=image.get("ref"), image_digest=image.get("digest"))
        # the conversion (or the user's dependency) was met before the first attempt ran
        job = replace(job, dependency=None)
        plans = plan_arrays(chosen, cluster_limits(self.scheduler, None, job.qos), contiguous=False)
        attempt = 1 + max(self._latest()[p][0].attempt for p in chosen)
        entries = submit_arrays(self.record, job, plans, attempt=attempt, scheduler=self.scheduler)
        self.record.arrays += entries
        self.record.update()
        return [e.job_id for e in entries]


def _final_for(kept: list[Any] | None, attempt: int) -> bool:
    return kept is not None and kept[0] == attempt
