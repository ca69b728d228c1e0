"""The ``hpcjobs`` command line. HpcjobsError → one line on stderr, exit 2; anything else keeps its traceback.

Sub-command modules are imported only when used, so ``hpcjobs --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click

from hpcjobs._version import __version__

F = TypeVar("F", bound=Callable[..., Any])

# name → (module, attribute, short help); loaded on first use
_LAZY_GROUPS = {
    "images": ("hpcjobs.cli_images", "images", "Convert, list, inspect and clean cached SIF images."),
    "site": ("hpcjobs.cli_site", "site", "Validate, publish, discover and explain site configs."),
    "sweep": ("hpcjobs.cli_sweep", "sweep", "Status, retry, logs and cancel of sweeps (many points, one submit)."),
    "warm": ("hpcjobs.cli_warm", "warm", "Status and stop of the warm server that starts render and submit fast."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_GROUPS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY_GROUPS:
            module, attr, _ = _LAZY_GROUPS[cmd_name]
            cmd: click.Command = getattr(importlib.import_module(module), attr)
            return cmd
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, c.get_short_help_str(60)) for n, c in self.commands.items()]
        rows += [(n, h) for n, (_, _, h) in _LAZY_GROUPS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


def _site_option(f: F) -> F:
    return click.option(
        "--site",
        "site_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Site config (default: $HPCJOBS_SITE, ~/.config/hpcjobs/site.yaml, /etc/hpcjobs/site.yaml; "
        "with none published, one discovered from the cluster and cached in ~/.cache/hpcjobs).",
    )(f)


def _set_option(f: F) -> F:
    return click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a job field (highest precedence); VALUE is read as YAML, e.g. gpus=1, command='[a, b]'.",
    )(f)


def _target_option(f: F) -> F:
    return click.option(
        "--target",
        default="slurm",
        show_default=True,
        metavar="NAME",
        help="Where the job runs: slurm (sbatch) or a target plugin, e.g. k8s (see `hpcjobs plugins`).",
    )(f)


def _target_runner() -> Any:
    from hpcjobs.runner import default_runner

    return default_runner()


def parse_sets(sets: Sequence[str]) -> dict[str, Any]:
    import yaml

    from hpcjobs.errors import ConfigError

    out: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        if key in ("name", "account", "qos", "partition", "image", "workdir", "array", "output") and value is not None:
            value = raw  # text fields stay text ("007" is not 7)
        out[key.strip()] = value
    return out


def _short_call(ctx: click.Context) -> None:
    """Start-up of ``render`` and ``submit``: the entry-point table is read once for the call, and
    pydantic's own plugin lookup is skipped when that table says none is installed
    (:mod:`hpcjobs.pydantic_plugins`; docs/benchmarks.md)."""
    from hpcjobs import plugin_index
    from hpcjobs.pydantic_plugins import skip_lookup

    plugin_index.hold()
    ctx.call_on_close(plugin_index.release)
    skip_lookup()


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """hpcjobs' own warnings (:class:`~hpcjobs.errors.HpcjobsWarning`) as ``hpcjobs: warning: …`` lines."""
    import warnings

    from hpcjobs.errors import HpcjobsWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HpcjobsWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, HpcjobsWarning):
                    click.echo(f"hpcjobs: warning: {w.message}", err=True)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _site_path(ctx: click.Context, site_path: str | None) -> str | None:
    if site_path:
        return site_path
    obj = ctx.find_root().obj
    return obj.get("site_path") if isinstance(obj, dict) else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpcjobs")
@_site_option
@click.option("-v", "--verbose", count=True, help="Show structured events (-v) and debug output (-vv) on stderr.")
@click.pass_context
def main_group(ctx: click.Context, site_path: str | None, verbose: int) -> None:
    """Turn a container workload into a correct Slurm batch job running in Apptainer."""
    from hpcjobs.log import configure_cli_logging

    if ctx.invoked_subcommand not in _GC_PAUSED_COMMANDS:
        _resume_gc()
    configure_cli_logging(verbose)
    ctx.ensure_object(dict)
    ctx.obj["site_path"] = site_path


def _target_text(tgt: Any, job: Any, job_file: str, sweep_spec: Any) -> str:
    """What target ``tgt`` submits for the job file: its render, or its sweep render for a ``sweep:``."""
    if sweep_spec is None:
        return str(tgt.render(job))
    from pathlib import Path

    from hpcjobs.errors import ConfigError
    from hpcjobs.plugin_api import supports_sweeps

    if not supports_sweeps(tgt):
        raise ConfigError(f"a sweep: section needs a target that runs sweeps; target {tgt.name!r} has none")
    if sweep_spec.dir is not None:
        raise ConfigError(f"sweep.dir is where the Slurm path keeps points and logs; target {tgt.name!r} keeps "
                          "them itself: remove sweep.dir to run the sweep there")  # fmt: skip
    return str(tgt.render_sweep(job, sweep_spec.load(Path(job_file).parent)))


@main_group.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@_site_option
@_set_option
@click.option("--explain", is_flag=True, help="Annotate every directive and flag with where it came from.")
@click.option(
    "--image-as-written",
    is_flag=True,
    help="Keep an OCI image reference as written instead of naming its digest-pinned SIF.",
)
@_target_option
@click.pass_context
def render(
    ctx: click.Context, job_file: str, site_path: str | None, sets: tuple[str, ...], explain: bool,
    image_as_written: bool, target: str,
) -> None:
    """Print the sbatch script for JOB_FILE. Nothing is converted or submitted: an OCI image's digest
    is looked up, and the script names the SIF that submit would use. With --target, print what
    that target would submit instead (a Kubernetes manifest …)."""
    _short_call(ctx)
    from hpcjobs.api import load_site_arg
    from hpcjobs.errors import ImageError
    from hpcjobs.jobfile import load_job_document
    from hpcjobs.render import render as render_script
    from hpcjobs.resolve import resolve

    site = load_site_arg(_site_path(ctx, site_path))
    spec, sweep_spec = load_job_document(job_file)
    overrides = parse_sets(sets)
    job = resolve(spec, site, overrides)
    if target != "slurm":
        from hpcjobs.errors import ConfigError
        from hpcjobs.plugins import get_target

        if explain:
            raise ConfigError(f"--explain annotates sbatch scripts; target {target!r} has no such view")
        click.echo(_target_text(get_target(target), job, job_file, sweep_spec), nl=False)
        return
    if not image_as_written:
        from hpcjobs.api import prepare_image

        try:
            job = prepare_image(job, site, pin=True)
        except ImageError as exc:  # e.g. a registry out of reach from here: still show the script
            click.echo(f"hpcjobs: warning: image not pinned ({exc}); showing the reference as written", err=True)
    if explain or job.multi_task:
        from hpcjobs.mpi.check import preflight

        job = preflight(job, site, refuse=False)  # the verdict submit would reach, as a header line
        if not explain:
            # the script shows it as a comment; say it where a preview's reader looks too
            for verdict in job.preflight:
                if verdict.startswith(("MPI check: refuse", "MPI check: warn")):
                    click.echo(f"hpcjobs: warning: {verdict}", err=True)
    import os

    if sweep_spec is not None:
        from pathlib import Path

        from hpcjobs.cli_sweep import render_first_array
        from hpcjobs.resolve import apply_overrides

        points = sweep_spec.load(Path(job_file).parent)
        merged, _ = apply_overrides(spec, overrides)
        click.echo(render_first_array(merged, job, points, sweep_spec.dir, explain=explain, environ=os.environ),
                   nl=False)  # fmt: skip
        return
    click.echo(render_script(job, explain=explain, environ=os.environ, job_dir=os.getcwd()), nl=False)
    if explain:
        from hpcjobs.launchers.binding import check_binding

        note = check_binding(job)  # TaskPlugin, kept per slurm.conf: no Slurm call while it is unchanged
        if note is not None:
            click.echo(f"hpcjobs: warning: {note}", err=True)


@main_group.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@_site_option
@_set_option
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job to end; exit with its exit code.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of the job id.")
@click.option("--poll-s", type=float, default=1.0, show_default=True, help="Seconds between polls with --wait.")
@_target_option
@click.pass_context
def submit(
    ctx: click.Context,
    job_file: str,
    site_path: str | None,
    sets: tuple[str, ...],
    wait_: bool,
    as_json: bool,
    poll_s: float,
    target: str,
) -> None:
    """Submit JOB_FILE; print the job id (a sweep: its id, then its array job ids on stderr)."""
    _short_call(ctx)
    import json
    from pathlib import Path

    from hpcjobs.jobfile import load_job_document

    spec, sweep_spec = load_job_document(job_file)
    if target != "slurm":
        from hpcjobs.api import load_site_arg
        from hpcjobs.errors import ConfigError
        from hpcjobs.plugins import get_target
        from hpcjobs.resolve import resolve

        if wait_:
            raise ConfigError(f"--wait works with target slurm only; poll target {target!r} with hpcjobs status")
        tgt = get_target(target)
        resolved = resolve(spec, load_site_arg(_site_path(ctx, site_path)), parse_sets(sets))
        job_id = tgt.submit(resolved, _target_text(tgt, resolved, job_file, sweep_spec), _target_runner())
        click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)
        return
    if sweep_spec is not None:
        _resume_gc()  # a sweep's many points (and --wait) are not the short call the pause is for
        from hpcjobs.cli_sweep import submit_sweep_file

        points = sweep_spec.load(Path(job_file).parent)
        with _warnings_to_stderr():
            submit_sweep_file(ctx, spec, points, sweep_spec.dir, _site_path(ctx, site_path), parse_sets(sets),
                              wait_=wait_, as_json=as_json, poll_s=poll_s)  # fmt: skip
        return
    with _warnings_to_stderr():
        job = spec.submit(_site_path(ctx, site_path), parse_sets(sets))
    if not wait_:
        click.echo(json.dumps({"job_id": job.job_id}) if as_json else job.job_id)
        return
    if not as_json:
        click.echo(job.job_id)
    _resume_gc()
    st = job.wait(poll_s=poll_s)
    if as_json:
        click.echo(json.dumps(_status_dict(st)))
    else:
        click.echo(f"{st.job_id} {st.state.name} exit={st.exit_code}", err=True)
    ctx.exit(_exit_code_of(st))


@main_group.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@_site_option
@_set_option
@click.option("--local", "local", is_flag=True, help="Run here, without Slurm (required: the only mode of run).")
@click.option("--runtime", default=None, help="Another runtime plugin than the site's, e.g. docker on a workstation.")
@click.option("--ntasks", type=int, default=None, help="Tasks to start here (default: the job's ntasks).")
@click.pass_context
def run(
    ctx: click.Context, job_file: str, site_path: str | None, sets: tuple[str, ...], local: bool,
    runtime: str | None, ntasks: int | None,
) -> None:
    """Run JOB_FILE on this machine through the same runtime plugin (--local): the same binds, env,
    entrypoint semantics and exit code as the batch job. Directives are not applied; the tasks are
    local processes instead of srun's."""
    from hpcjobs.api import load_site_arg
    from hpcjobs.errors import ConfigError
    from hpcjobs.jobfile import load_job_file
    from hpcjobs.local import describe_differences, local_job, run_local
    from hpcjobs.plugin_api import ImageContext
    from hpcjobs.plugins import get_runtime
    from hpcjobs.preflight import check_bind_realpaths, check_bind_sources
    from hpcjobs.resolve import resolve

    if not local:
        raise ConfigError("hpcjobs run needs --local (to run under Slurm, use hpcjobs submit)")
    site = load_site_arg(_site_path(ctx, site_path))
    resolved = resolve(load_job_file(job_file), site, parse_sets(sets))
    count = resolved.ntasks if ntasks is None else ntasks
    if count < 1:
        raise ConfigError(f"--ntasks {count}: at least one task")
    job = local_job(resolved, runtime)
    check_bind_sources(job)
    check_bind_realpaths(job, site.policy)
    # no scheduler here: image preparation may not submit a conversion job
    job = get_runtime(job.runtime).prepare_image(job, ImageContext(site=site, submitter=None))
    if ctx.find_root().params.get("verbose"):
        for note in describe_differences(resolved, count):
            click.echo(f"hpcjobs: local run: {note}", err=True)
    ctx.exit(run_local(job, ntasks=count).exit_code)


@main_group.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@_site_option
@_target_option
@click.pass_context
def status(ctx: click.Context, job_ids: tuple[str, ...], as_json: bool, site_path: str | None, target: str) -> None:
    """Show the state of jobs (one Slurm query for all of them)."""
    import json

    result: Any
    if target != "slurm":
        from hpcjobs.api import load_site_arg
        from hpcjobs.plugins import get_target

        settings = load_site_arg(_site_path(ctx, site_path)).plugins
        result = get_target(target).status(list(job_ids), settings, _target_runner())
    else:
        from hpcjobs.schedulers import get_scheduler

        result = get_scheduler().status(list(job_ids))
    if as_json:
        click.echo(json.dumps([_status_dict(result[j]) for j in job_ids], indent=2))
        return
    for j in job_ids:
        st = result[j]
        code = "" if st.exit_code is None else str(st.exit_code)
        state = st.state if isinstance(st.state, str) else st.state.name
        click.echo(f"{j}\t{state}\t{code}\t{st.reason or ''}".rstrip())


@main_group.command()
@click.argument("job_id")
@click.option("--poll-s", type=float, default=1.0, show_default=True)
@click.option("--timeout-s", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wait(ctx: click.Context, job_id: str, poll_s: float, timeout_s: float | None, as_json: bool) -> None:
    """Wait for a job to end; exit with its exit code."""
    import json

    from hpcjobs.schedulers import get_scheduler

    st = get_scheduler().wait([job_id], poll_s=poll_s, timeout_s=timeout_s)[job_id]
    click.echo(json.dumps(_status_dict(st)) if as_json else f"{job_id} {st.state.name} exit={st.exit_code}")
    ctx.exit(_exit_code_of(st))


@main_group.command()
@click.argument("job_ids", nargs=-1, required=True)
def cancel(job_ids: tuple[str, ...]) -> None:
    """Cancel jobs."""
    from hpcjobs.schedulers import get_scheduler

    get_scheduler().cancel(list(job_ids))


@main_group.command()
@click.argument("job_id")
@_site_option
@_target_option
@click.pass_context
def logs(ctx: click.Context, job_id: str, site_path: str | None, target: str) -> None:
    """Print a job's output file."""
    if target != "slurm":
        from hpcjobs.api import load_site_arg
        from hpcjobs.plugins import get_target

        settings = load_site_arg(_site_path(ctx, site_path)).plugins
        click.echo(get_target(target).logs(job_id, settings, _target_runner()), nl=False)
        return
    from hpcjobs.api import Job
    from hpcjobs.schedulers import get_scheduler

    click.echo(Job(job_id, get_scheduler()).logs(), nl=False)


@main_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins: version, plugin API, what each provides, and load failures."""
    import json

    from hpcjobs.plugin_api import HPCJOBS_PLUGIN_API
    from hpcjobs.plugins import plugin_infos

    infos = plugin_infos()
    if as_json:
        click.echo(json.dumps({"api": HPCJOBS_PLUGIN_API, "plugins": [p.as_dict() for p in infos]}, indent=2))
        return
    click.echo(f"plugin API {HPCJOBS_PLUGIN_API}")
    for p in infos:
        dist = f"{p.dist or '?'} {p.version or ''}".rstrip()
        if p.error is not None:
            click.echo(f"{p.name}  ({dist})  FAILED: {p.error}")
            continue
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p.provides.items()) or "nothing"
        click.echo(f"{p.name}  ({dist}, API {p.api or '?'})  {provides}")


def _status_dict(st: Any) -> dict[str, Any]:
    return {
        "job_id": st.job_id,
        "state": st.state if isinstance(st.state, str) else st.state.name,
        "exit_code": st.exit_code,
        "reason": st.reason,
        "raw_state": getattr(st, "raw_state", None),
    }


def _exit_code_of(st: Any) -> int:
    if st.state.name == "COMPLETED":
        return 0
    return st.exit_code if st.exit_code else 1


def run_click(command: click.Command, argv: Sequence[str] | None, prog_name: str) -> None:
    """Run a click command as every hpcjobs entry point does (``argv`` None: ``sys.argv[1:]``).

    HpcjobsError → ``hpcjobs: error: …`` on one line on stderr, exit 2; a usage error as click
    shows it, exit 2; Ctrl-C → ``Aborted!``, exit 1; a non-zero exit status is passed on. Anything
    else keeps its traceback.
    """
    from hpcjobs.errors import HpcjobsError

    try:
        rc = command.main(args=list(argv) if argv is not None else None, prog_name=prog_name, standalone_mode=False)
    except HpcjobsError as exc:
        message = " ".join(str(exc).split("\n"))
        click.echo(f"hpcjobs: error: {message}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)


# Commands that end in bounded time: the cyclic garbage collector stays paused for them (see main).
_GC_PAUSED_COMMANDS = ("render", "submit")
_gc_paused = False


def main(argv: Sequence[str] | None = None) -> None:
    """The ``hpcjobs`` entry point. The cyclic garbage collector is paused while ``render`` and
    ``submit`` run: start-up (imports, pydantic classes and validators) allocates many objects that
    all stay alive, so the collections they trigger free nothing and cost a few per cent of the
    CPU of such a call (docs/benchmarks.md). Every other command, and ``submit --wait`` before it waits,
    resumes collection."""
    import gc

    global _gc_paused
    _gc_paused = gc.isenabled()
    gc.disable()
    try:
        run_click(main_group, argv, "hpcjobs")
    finally:
        _resume_gc()


def _resume_gc() -> None:
    """Resume collection before open-ended work, where :func:`main` paused it."""
    global _gc_paused
    if _gc_paused:
        import gc

        gc.enable()
        _gc_paused = False


if __name__ == "__main__":
    main()
