"""``hpcjobs images``: pull, list, inspect and gc the SIF image cache (see docs/images.md)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10G`` → bytes. Units K, M, G, T, P are powers of 1024 (``10GB`` and ``10GiB`` mean the same)."""
    m = _SIZE.match(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 500M, 10G, 1T)")
    power = " kmgtp".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024**power)


def human_size(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}P"


def _configure_logging(verbose: int) -> None:
    """Events go to stderr (never stdout, which carries paths and JSON); -v shows them."""
    from hpcjobs.log import configure_cli_logging

    if verbose or not logging.getLogger("hpcjobs").handlers:
        configure_cli_logging(verbose)


def _load_site(ctx: click.Context) -> SiteConfig | None:
    from hpcjobs.config.loader import ENV_VAR, SYSTEM_PATH, USER_PATH
    from hpcjobs.config.sources import load_site

    obj = ctx.find_root().obj
    path = obj.get("site_path") if isinstance(obj, dict) else None
    if path:
        return load_site(path)
    if os.environ.get(ENV_VAR) or os.path.isfile(os.path.expanduser(USER_PATH)) or os.path.isfile(SYSTEM_PATH):
        return load_site()
    return None  # no site config anywhere: the cache works with its defaults


def _cache_options(ctx: click.Context) -> dict[str, Any]:
    obj = ctx.find_object(dict) or {}
    return dict(obj.get("images_options", {}))


@contextmanager
def _spinner(enabled: bool) -> Iterator[Any]:
    """A rich spinner on stderr when it is a terminal; yields an event hook (or None)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.console import Console
    except ImportError:
        yield None
        return
    console = Console(stderr=True)
    with console.status("resolving image…") as status:
        started = time.monotonic()

        def hook(name: str, fields: Mapping[str, Any]) -> None:
            ref = fields.get("ref", "")
            text = {
                "resolve": f"resolving {ref}",
                "miss": f"not cached yet: {ref}",
                "wait": f"waiting: {fields.get('holder', 'another process')} is converting {ref}",
                "takeover": f"taking over a stale conversion of {ref} ({fields.get('reason', '')})",
                "convert": f"converting {ref} to SIF (started {time.strftime('%H:%M:%S')})",
                "publish": f"published in {time.monotonic() - started:.1f} s",
            }.get(name)
            if text:
                status.update(text)

        yield hook


@click.group("images", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log cache events (hit, miss, wait, convert, publish, gc) to stderr.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Writable cache (default: $HPCJOBS_IMAGE_CACHE, the site's images.cache_dir, ~/.cache/hpcjobs/images).",
)
@click.pass_context
def images(ctx: click.Context, verbose: int, cache_dir: str | None) -> None:
    """Convert images to SIF once per content digest; list, inspect and clean the cache."""
    _configure_logging(verbose)
    if ctx.obj is None:
        ctx.obj = {}
    if isinstance(ctx.obj, dict):
        ctx.obj["images_options"] = {"cache_dir": cache_dir} if cache_dir else {}


@images.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the cache entry as JSON instead of the path.")
@click.option(
    "--expect-digest",
    default=None,
    metavar="DIGEST",
    help="Fail unless REF resolves to this digest (used by conversion jobs).",
)
@click.option(
    "--shared/--private",
    "shared",
    default=None,
    help="Shared (group-readable) or per-user cache permissions (default: the site's images.shared).",
)
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Registry reachable over plain HTTP / unverified TLS (also $HPCJOBS_INSECURE_REGISTRIES).",
)
@click.option("--mksquashfs-args", default=None, help="Passed to apptainer build --mksquashfs-args.")
@click.option("--apptainer", "binary", default=None, help="Apptainer (or singularity) executable.")
@click.option("--wait-timeout", type=float, default=None, help="Give up waiting for another conversion (s).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Writable cache (as for images).")
@click.option(
    "--cache-owner",
    default=None,
    metavar="USER",
    help="Who must own a shared cache's directories (default: the site's images.cache_owner, else its owner).",
)
@click.option(
    "--verify",
    type=click.Choice(["publish", "always"]),
    default=None,
    help="always: check each hit's sha256 against its metadata record (default: the site's images.verify).",
)
@click.pass_context
def pull(
    ctx: click.Context,
    ref: str,
    as_json: bool,
    expect_digest: str | None,
    shared: bool | None,
    insecure: tuple[str, ...],
    mksquashfs_args: str | None,
    binary: str | None,
    wait_timeout: float | None,
    cache_dir: str | None,
    cache_owner: str | None,
    verify: str | None,
) -> None:
    """Convert REF to SIF if it is not cached yet; print the SIF path.

    REF: docker://REPO[:TAG|@sha256:…], oci:DIR[:TAG|@sha256:…], oci-archive:FILE, docker-archive:FILE,
    a .def file (built) or a .sif file (used in place).
    """
    from hpcjobs.images import open_cache

    site = _load_site(ctx)
    opts = _cache_options(ctx)
    if cache_dir:
        opts["cache_dir"] = cache_dir
    site_insecure = list(getattr(site.images, "insecure_registries", None) or []) if site is not None else []
    with _spinner(True) as hook:
        cache = open_cache(
            site,
            on_event=hook,
            shared=shared,
            mksquashfs_args=mksquashfs_args,
            binary=binary,
            wait_timeout_s=wait_timeout,
            cache_owner=cache_owner,
            verify_hits=None if verify is None else verify == "always",
            insecure_registries=(site_insecure + list(insecure)) if insecure else None,
            **opts,
        )
        entry = cache.pull(ref, expect_digest=expect_digest)
    if as_json:
        click.echo(json.dumps(entry.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(entry.path)


@images.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON: one object per entry.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List cached images (site layers first, then the writable cache)."""
    from hpcjobs.images import open_cache

    entries = open_cache(_load_site(ctx), **_cache_options(ctx)).list_entries()
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2, sort_keys=True))
        return
    if not entries:
        click.echo("no cached images")
        return
    click.echo(f"{'DIGEST':<19}  {'SIZE':>7}  {'LAST USED':<16}  {'LAYER':<5}  REFS")
    for e in entries:
        click.echo(
            f"{(e.digest or '')[:19]:<19}  {human_size(e.size):>7}  {_when(e.last_used):<16}  "
            f"{e.layer:<5}  {', '.join(_one_line(r) for r in e.refs) or '-'}"
        )


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n")


@images.command("inspect")
@click.argument("ref")
@click.option("--no-labels", is_flag=True, help="Do not read the SIF's labels.")
@click.pass_context
def inspect_cmd(ctx: click.Context, ref: str, no_labels: bool) -> None:
    """Show what REF resolves to (digest, manifest), whether it is cached, and its labels (JSON)."""
    from hpcjobs.images import open_cache

    cache = open_cache(_load_site(ctx), **_cache_options(ctx))
    info = cache.inspect(ref, labels=not no_labels)
    click.echo(json.dumps(info, indent=2, sort_keys=True, default=str))


@images.command("gc")
@click.option("--max-size", default=None, metavar="SIZE", help="Shrink the cache to SIZE (e.g. 10G), LRU first.")
@click.option("--older-than", type=float, default=None, metavar="DAYS", help="Remove entries unused for DAYS.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def gc_cmd(ctx: click.Context, max_size: str | None, older_than: float | None, dry_run: bool, as_json: bool) -> None:
    """Remove least-recently-used images; never one in use, leased by a queued job, or being converted."""
    from hpcjobs.images import open_cache

    if max_size is None and older_than is None:
        raise click.UsageError("give --max-size SIZE and/or --older-than DAYS")
    limit = parse_size(max_size) if max_size is not None else None
    report = open_cache(_load_site(ctx), **_cache_options(ctx)).gc(
        max_size_bytes=limit, older_than_days=older_than, dry_run=dry_run
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return
    verb = "would remove" if dry_run else "removed"
    for e in report.removed:
        click.echo(f"{verb} {e.digest}  {human_size(e.size)}  {', '.join(_one_line(r) for r in e.refs)}")
    for e, reason in report.kept:
        click.echo(f"kept {e.digest}  ({reason})")
    click.echo(
        f"{verb} {len(report.removed)} image(s), {human_size(report.freed_bytes)}; cache "
        f"{human_size(report.total_bytes_before)} → {human_size(report.total_bytes_after)}"
    )


@images.command("check")
@click.option(
    "--shared/--private",
    "shared",
    default=None,
    help="Check the cache as shared or per-user (default: the site's images.shared).",
)
@click.option("--cache-owner", default=None, metavar="USER", help="Designated owner (default: images.cache_owner).")
@click.option("--verify", is_flag=True, help="Also check every entry's sha256 against its metadata record.")
@click.option("--fix", is_flag=True, help="Fix what can safely be fixed (create, chown, chmod, remove bad entries).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def check_cmd(
    ctx: click.Context, shared: bool | None, cache_owner: str | None, verify: bool, fix: bool, as_json: bool
) -> None:
    """Check the cache's layout, owners and modes (the writable cache and the site caches): print
    each problem with the command that fixes it. Exit 1 when something is (still) wrong.

    Set up a shared cache as root with: install -d -o root -g GROUP -m 3770 DIR, then
    hpcjobs images --cache-dir DIR check --shared --fix.
    """
    from hpcjobs.images import open_cache
    from hpcjobs.images.check import check_cache

    cache = open_cache(
        _load_site(ctx),
        shared=shared,
        cache_owner=cache_owner,
        verify_hits=True if verify else None,
        **_cache_options(ctx),
    )
    findings = check_cache(cache.store, fix=fix)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"path": f.problem.path, "problem": f.problem.what, "fix": f.problem.fix, "fixed": f.fixed}
                    for f in findings
                ],
                indent=2,
            )
        )
    else:
        for f in findings:
            click.echo(_one_line(f.line()))
        left = sum(1 for f in findings if not f.fixed)
        kind = "shared" if cache.store.shared else "private"
        click.echo(
            f"{cache.store.layer.root} ({kind}): "
            + ("all good" if not findings else f"{len(findings) - left} fixed, {left} left")
        )
    if any(not f.fixed for f in findings):
        ctx.exit(1)
