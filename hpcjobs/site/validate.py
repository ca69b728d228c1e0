"""``hpcjobs site validate``: every problem in a site config, one line each, naming file and key path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hpcjobs.errors import ConfigError, HpcjobsError


@dataclass(frozen=True)
class Report:
    """The outcome for one file: ``problems`` are full lines (``FILE: key.path: what was expected``)."""

    path: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return self.problems or [f"{self.path}: ok"]


def validate_files(paths: Iterable[str]) -> list[Report]:
    return [validate_file(p) for p in paths]


def validate_file(path: str) -> Report:
    """Load ``path`` as a site config and check it as deeply as the installed plugins allow."""
    from hpcjobs.config.loader import read_text

    try:
        text = read_text(Path(path), "site config")
    except ConfigError as exc:
        return Report(path, [str(exc)])
    return validate_text(text, path)


def validate_text(text: str, source: str) -> Report:
    from hpcjobs.config.loader import load_site_text

    try:
        site = load_site_text(text, source)
    except ConfigError as exc:
        if exc.source == source and exc.problems:
            return Report(source, [f"{source}: {p}" for p in exc.problems])
        return Report(source, [str(exc)])  # YAML syntax, top level not a mapping: already names the file
    except HpcjobsError as exc:  # a broken plugin, while validating plugins.<section>
        return Report(source, [f"{source}: {exc}"])
    return Report(source, [f"{source}: {p}" for p in plugin_checks(site)])


def plugin_checks(site: object) -> list[str]:
    """Checks that need the installed plugins: the runtime each layer names must exist."""
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.plugins import runtimes

    assert isinstance(site, SiteConfig)
    named = [("defaults", site.defaults.runtime.name)]
    named += [(f"partitions.{n}", p.runtime.name) for n, p in site.partitions.items()]
    if all(name is None for _, name in named):
        return []
    try:
        have = sorted(runtimes())
    except HpcjobsError as exc:
        return [str(exc)]
    return [
        f"{where}.runtime.name: {name!r} is not a container runtime plugin (have: {', '.join(have)})"
        for where, name in named
        if name is not None and name not in have
    ]
