"""``hpcjobs warm``: the user's warm servers for ``render`` and ``submit`` (:mod:`hpcjobs.warm`)."""

from __future__ import annotations

import json
import time

import click


@click.group()
def warm() -> None:
    """The warm start of render and submit: a per-user server (off with HPCJOBS_WARM=0)."""


@warm.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON list of the servers.")
def status_cmd(as_json: bool) -> None:
    """The servers that answer: process id, calls served, calls running, idle limit."""
    from hpcjobs.warm import control
    from hpcjobs.warm import key as warm_key

    rows = control.status()
    if as_json:
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    if not rows:
        state = "on" if warm_key.enabled() else "off (HPCJOBS_WARM=0)"
        click.echo(f"no warm server running (warm start {state}; the next render or submit starts one)")
        return
    for row in rows:
        age_s = time.time() - float(row.get("started", 0.0))  # type: ignore[arg-type]
        click.echo(f"pid {row['pid']}: served {row['served']}, running {row['running']}, up {age_s:.0f} s, "
                   f"ends after {float(row['idle_s']):.0f} s idle; {row['socket']}")  # type: ignore[arg-type]  # fmt: skip


@warm.command("stop")
def stop_cmd() -> None:
    """Stop every warm server of this user (each ends once its running calls have)."""
    from hpcjobs.warm import control

    click.echo(f"stopped {control.stop()} warm server(s)")
