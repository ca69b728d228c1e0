"""``hpcjobs site …``: tools for admins who write and publish site configs.

The ``site`` group is added to the main CLI lazily (see :mod:`hpcjobs.cli`); it also runs on its
own as ``python -m hpcjobs.cli_site``. Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_PROBLEMS = 2


def _one_line_errors(f: F) -> F:
    """HpcjobsError → ``hpcjobs: error: …`` on stderr, exit 2 (also under CliRunner and ``-m``)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hpcjobs.errors import HpcjobsError

        try:
            return f(*args, **kwargs)
        except HpcjobsError as exc:
            click.echo(f"hpcjobs: error: {' '.join(str(exc).split())}", err=True)
            raise click.exceptions.Exit(EXIT_PROBLEMS) from None

    return wrapper  # type: ignore[return-value]


def _site_path(ctx: click.Context, site_path: str | None) -> str | None:
    if site_path:
        return site_path
    obj = ctx.find_root().obj
    return obj.get("site_path") if isinstance(obj, dict) else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def site() -> None:
    """Validate, publish, discover and explain site configs."""


@site.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@_one_line_errors
def validate(files: tuple[str, ...]) -> None:
    """Check site config FILES: "FILE: ok", or one line per problem (file, key path, what was
    expected); exit status 2 when any file has a problem."""
    from hpcjobs.site.validate import validate_files

    reports = validate_files(files)
    for report in reports:
        for line in report.lines():
            click.echo(line)
    if not all(r.ok for r in reports):
        raise click.exceptions.Exit(EXIT_PROBLEMS)


@site.command()
@click.option("--indent", type=int, default=2, show_default=True, help="JSON indentation.")
@_one_line_errors
def schema(indent: int) -> None:
    """Print the JSON Schema of the site config (with the sections of installed plugins).

    \b
    Editor completion, e.g. with the YAML language server, as the first line of a site config:
      # yaml-language-server: $schema=/etc/hpcjobs/site.schema.json
    """
    from hpcjobs.site.schema import site_schema

    click.echo(json.dumps(site_schema(), indent=indent or None))


@site.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the draft to FILE (not stdout).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@_one_line_errors
def discover(output: str | None, force: bool) -> None:
    """Draft a site config from the live cluster (scontrol, srun): partitions, default partition,
    nodes, CPUs, memory, GPUs and time limits. Review it before publishing."""
    from pathlib import Path

    from hpcjobs.errors import ConfigError
    from hpcjobs.site.discover import discover as discover_site

    if output and Path(output).exists() and not force:
        raise ConfigError(f"{output}: exists; pass --force to overwrite it")
    text = discover_site()
    if not output:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write: {exc.strerror or exc}") from exc
    click.echo(f"wrote {output}; check it with: hpcjobs site validate {output}", err=True)


@site.command()
@click.option("-p", "--partition", "partitions", multiple=True, help="Only this partition (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--site",
    "site_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Site config (default: as for every command: hpcjobs --site, $HPCJOBS_SITE, ~/.config, /etc, discovered).",
)
@click.pass_context
@_one_line_errors
def show(ctx: click.Context, partitions: tuple[str, ...], as_json: bool, site_path: str | None) -> None:
    """The settings a job gets on each partition after layering, and where each comes from.

    The first line names the site config in effect: the published file, or, where none is
    published, the one discovered from the cluster and the file it is cached in."""
    from hpcjobs.config.loader import load_site_source
    from hpcjobs.config.sources import find_site
    from hpcjobs.errors import ConfigError
    from hpcjobs.site.show import show_data, show_text

    source = find_site(_site_path(ctx, site_path))
    cfg = load_site_source(source)
    for p in partitions:
        if p not in cfg.partitions:
            have = ", ".join(sorted(cfg.partitions))
            raise ConfigError(f"partition {p!r} is not defined by site {cfg.name!r} (have: {have})")
    names = list(partitions) or [
        cfg.default_partition,
        *sorted(set(cfg.partitions) - {cfg.default_partition}),
    ]
    if as_json:
        click.echo(json.dumps(show_data(cfg, str(source.path), names, origin=source.origin), indent=2))
    else:
        click.echo(show_text(cfg, source.describe(), names, discovered=source.discovered), nl=False)


@site.command(hidden=True)
@_one_line_errors
def reference() -> None:
    """Print the site config field reference (Markdown), as in docs/site-config-reference.md."""
    from hpcjobs.site.reference import reference_markdown

    click.echo(reference_markdown(), nl=False)


def main() -> None:
    from hpcjobs.cli import run_click

    run_click(site, None, "hpcjobs site")


if __name__ == "__main__":
    main()
