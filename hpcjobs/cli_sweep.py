"""``hpcjobs sweep``: status, retry, logs, wait, cancel of a sweep named by its id (or directory)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from hpcjobs.plugin_api import ResolvedJob
    from hpcjobs.spec import JobSpec
    from hpcjobs.sweep.handle import Sweep, SweepStatus
    from hpcjobs.sweep.points import Point


def _load(sweep_id: str) -> Sweep:
    from hpcjobs.sweep.handle import Sweep

    return Sweep.load(sweep_id)


def _status_json(st: SweepStatus, sweep: Sweep, points: Sequence[int] | None = None) -> str:
    rows = st.points if points is None else [st.points[i] for i in points]
    return json.dumps({"sweep_id": st.sweep_id, "directory": str(sweep.directory), "job_ids": sweep.job_ids,
                       "counts": st.counts, "done": st.done, "ok": st.ok,
                       "points": [p.as_dict() for p in rows]}, indent=1)  # fmt: skip


def submit_sweep_file(
    ctx: click.Context, spec: JobSpec, points: list[Point], directory: str | None, site_path: str | None,
    sets: Mapping[str, Any], *, wait_: bool, as_json: bool, poll_s: float,
) -> None:  # fmt: skip
    from hpcjobs.api import load_site_arg, prepare
    from hpcjobs.sweep.submit import submit_sweep

    sweep = submit_sweep(spec, points, load_site_arg(site_path), sets, directory=directory, prepare=prepare)
    if not as_json:
        click.echo(sweep.id)
        click.echo(f"{len(sweep)} points in {len(sweep.job_ids)} array(s): {' '.join(sweep.job_ids)}; "
                   f"directory {sweep.directory}", err=True)  # fmt: skip
    if not wait_:
        if as_json:
            click.echo(json.dumps({"sweep_id": sweep.id, "job_ids": sweep.job_ids, "directory": str(sweep.directory),
                                   "points": len(sweep)}))  # fmt: skip
        return
    st = sweep.wait(poll_s=poll_s, progress=None if as_json else True)
    click.echo(_status_json(st, sweep) if as_json else st.summary(), err=not as_json)
    ctx.exit(0 if st.ok else 1)


def render_first_array(
    spec: JobSpec, job: ResolvedJob, points: list[Point], directory: str | None, *, explain: bool,
    environ: Iterable[str] = (),
) -> str:  # fmt: skip
    """The script of a sweep's first array, as submit would write it (the sweep id is not known yet:
    ``ID`` stands for it). Chunked with the cluster's limits when Slurm answers."""
    import os
    from pathlib import Path

    from hpcjobs.errors import HpcjobsError
    from hpcjobs.schedulers import SlurmCli
    from hpcjobs.schedulers.base import ArrayLimits
    from hpcjobs.sweep.arrays import array_script
    from hpcjobs.sweep.envcarry import env_carrier
    from hpcjobs.sweep.plan import plan_arrays
    from hpcjobs.sweep.pointfile import encode_points
    from hpcjobs.sweep.submit import SWEEP_DIRS, refuse_own_fields

    refuse_own_fields(spec)
    encode_points(points, env_carrier(job))  # refuses what submit would refuse
    try:
        limits = SlurmCli(retries=0).array_limits(job.qos)
    except HpcjobsError as exc:
        click.echo(f"hpcjobs: warning: cluster limits not read ({exc}); showing all points as one array", err=True)
        limits = ArrayLimits(len(points) + 1, len(points))
    plans = plan_arrays(range(len(points)), limits, contiguous=True)
    name = f"{job.name}-ID"
    base = Path(os.path.abspath(directory)) if directory else Path(os.getcwd()) / SWEEP_DIRS / name
    click.echo(f"hpcjobs: sweep of {len(points)} points in {len(plans)} array(s); the first one follows "
               "(the others differ only in --array and their first point)", err=True)  # fmt: skip
    return array_script(job, base, name, plans[0], attempt=0, throttle=job.array_throttle, explain=explain,
                        environ=environ, job_dir=os.getcwd())  # fmt: skip


@click.group()
def sweep() -> None:
    """Sweeps: many points of one job, submitted as job arrays (see `sweep:` in a job file)."""


@sweep.command()
@click.argument("sweep_id")
@click.option("--json", "as_json", is_flag=True, help="Every point as JSON.")
@click.option("--failed", "only_failed", is_flag=True, help="Only points that ended without success.")
def status(sweep_id: str, as_json: bool, only_failed: bool) -> None:
    """Summary and a table: point → state, exit code, elapsed, log file (one Slurm query)."""
    sw = _load(sweep_id)
    st = sw.status()
    points = st.failed() if only_failed else None
    if as_json:
        click.echo(_status_json(st, sw, points))
        return
    click.echo(st.summary())
    click.echo(st.table(points))


@sweep.command()
@click.argument("sweep_id")
@click.option("--point", "points", type=int, multiple=True, help="Retry these points (default: the failed ones).")
@click.option("--json", "as_json", is_flag=True)
def retry(sweep_id: str, points: tuple[int, ...], as_json: bool) -> None:
    """Submit the failed points again as new array(s); points keep their original indices."""
    sw = _load(sweep_id)
    chosen = list(points) or None
    new = sw.retry(chosen)
    if as_json:
        click.echo(json.dumps({"sweep_id": sw.id, "job_ids": new}))
    elif not new:
        click.echo(f"sweep {sw.id}: no failed points to retry", err=True)
    else:
        click.echo(" ".join(new))


@sweep.command()
@click.argument("sweep_id")
@click.argument("point", type=int)
def logs(sweep_id: str, point: int) -> None:
    """Print the log of a point's latest attempt."""
    click.echo(_load(sweep_id).logs(point), nl=False)


@sweep.command()
@click.argument("sweep_id")
@click.option("--poll-s", type=float, default=5.0, show_default=True)
@click.option("--timeout-s", type=float, default=None)
@click.pass_context
def wait(ctx: click.Context, sweep_id: str, poll_s: float, timeout_s: float | None) -> None:
    """Wait until every point has ended (a progress bar in a terminal); exit 1 if any failed."""
    sw = _load(sweep_id)
    st = sw.wait(poll_s=poll_s, timeout_s=timeout_s, progress=True)
    click.echo(st.summary())
    ctx.exit(0 if st.ok else 1)


@sweep.command()
@click.argument("sweep_id")
def cancel(sweep_id: str) -> None:
    """Cancel every array of the sweep."""
    _load(sweep_id).cancel()


@sweep.command(name="list")
def list_() -> None:
    """Sweeps recorded for this user (~/.cache/hpcjobs/sweeps)."""
    from hpcjobs.sweep.record import list_ids

    for sid in list_ids():
        click.echo(sid)
