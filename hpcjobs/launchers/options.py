"""Launcher options (``launcher_options: {srun: [...], mpirun: [...]}``): which launcher takes them,
whether each entry is one option it accepts, and how the layers combine.

Layers, lowest first: site defaults, partition, job spec, CLI (``--set``) — the order of
:mod:`hpcjobs.resolve`. An option replaces the lower layers' options that set the same thing (the
launcher's :meth:`option_key`: ``--cpu-bind=none`` from a job replaces a partition's
``--cpu-bind=cores``, ``-m block`` a site's ``--distribution=cyclic``); the others are kept, lowest
layer first. A launcher plugin takes options when it has ``option_problem`` (and optionally
``option_key``; API 1.2); options for one without it are refused, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpcjobs.plugin_api import Launcher

_CLI_SHOWN = "CLI override (--set)"
Layered = list[tuple[str, str]]
"""(option, where it came from), in the order the launcher is given them."""


def launcher_named(name: str) -> Launcher | None:
    from hpcjobs.plugins import launchers

    return next((ln for ln in launchers() if ln.name == name), None)


def launcher_names() -> list[str]:
    from hpcjobs.plugins import launchers

    return sorted({ln.name for ln in launchers()})


def launcher_for(mpi: str) -> str | None:
    """The name of the launcher that serves ``mpi`` (as :func:`hpcjobs.plugins.get_launcher` picks
    one for a multi-task job), or None."""
    from hpcjobs.plugins import launchers

    return next((ln.name for ln in launchers() if mpi in getattr(ln, "mpi_kinds", ())), None)


def entry_problem(launcher: str, entry: str) -> str | None:
    """Why ``entry`` may not be an option of launcher ``launcher``, or None."""
    if not isinstance(entry, str):
        return f"{entry!r} is not a string"
    if "\x00" in entry or any(0xD800 <= ord(c) <= 0xDFFF for c in entry):
        return f"{entry!r} contains a NUL or an unpaired surrogate, which no command line can carry"
    ln = launcher_named(launcher)
    if ln is None:
        return f"no launcher is named {launcher!r} (have: {', '.join(launcher_names())})"
    check = getattr(ln, "option_problem", None)
    if check is None:
        return f"launcher {launcher!r} takes no options (its plugin has no option_problem)"
    problem: str | None = check(entry)
    return problem


def problems(options: Mapping[str, Sequence[str]]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every refused entry of a ``launcher_options`` mapping, at its key path (``srun``, 0)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    for launcher, entries in options.items():
        if launcher_named(launcher) is None:
            out.append(((launcher,), f"no launcher is named {launcher!r} (have: {', '.join(launcher_names())})"))
            continue
        for i, entry in enumerate(entries):
            problem = entry_problem(launcher, entry)
            if problem is not None:
                out.append(((launcher, i), problem))
    return out


def option_key(launcher: str, entry: str) -> str:
    ln = launcher_named(launcher)
    key = getattr(ln, "option_key", None)
    if key is None:
        return entry.partition("=")[0]
    return str(key(entry))


def layered(launcher: str, layers: Sequence[tuple[str, Sequence[str]]], replaced: list[str] | None = None) -> Layered:
    """The options launcher ``launcher`` is given: each layer's replace the lower ones' with the
    same key (see the module docstring). ``replaced`` collects a line per replaced option."""
    out: Layered = []
    for source, entries in layers:
        new = {option_key(launcher, e): e for e in entries}
        kept: Layered = []
        for e, s in out:
            by = new.get(option_key(launcher, e))
            if by is None:
                kept.append((e, s))
            elif replaced is not None:
                replaced.append(f"launcher_options.{launcher} {e!r} ({s}) is replaced by {by!r} ({source})")
        out = kept + [(e, source) for e in entries]
    return out


def merge_site_layers(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, list[str]]:
    """A partition's ``launcher_options`` laid over the site's, per launcher (as :func:`layered`)."""
    out = {name: list(entries) for name, entries in base.items()}
    for name, entries in top.items():
        out[name] = [e for e, _ in layered(name, [("site", out.get(name, [])), ("partition", entries)])]
    return out


def for_job(
    site: Any, partition: str, mpi: str, multi_task: bool, job: Mapping[str, Sequence[str]],
    cli: Mapping[str, Sequence[str]], *, job_source: str, cli_source: str,
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """The options of the launcher that starts the job's tasks, the ``--explain`` notes for those that
    do not apply, and their provenance (``launcher_options[i]``). An option the job or the CLI gives
    that does not apply (a single task has no launcher; another launcher's) is refused."""
    from hpcjobs.errors import ConfigError

    launcher = launcher_for(mpi) if multi_task else None
    site_layer, part_layer = site.defaults.launcher_options, site.partitions[partition].launcher_options
    names = sorted({*site_layer, *part_layer, *job, *cli})
    chosen: Layered = []
    notes: list[str] = []
    for name in names:
        layers = [("site defaults", site_layer.get(name, [])), (f"partition {partition}", part_layer.get(name, [])),
                  (job_source, job.get(name, [])), (_CLI_SHOWN, cli.get(name, []))]  # fmt: skip
        replaced: list[str] = []
        merged = layered(name, layers, replaced)
        if name == launcher:
            chosen = merged
            notes += replaced
            continue
        why = ("this job runs a single task, with no launcher (ntasks=1, nodes=1)" if launcher is None else
               f"this job's tasks are started by {launcher} (mpi: {mpi})")  # fmt: skip
        for entry, source in merged:
            if source in (job_source, _CLI_SHOWN):
                fix = f"give it as launcher_options.{launcher}" if launcher else "ask for more tasks or remove it"
                where = "--set" if source == _CLI_SHOWN else "the job"
                raise ConfigError(f"launcher_options.{name} {entry!r} from {where} does not apply: {why}; {fix}")
            notes.append(f"launcher_options.{name} {entry!r} ({source}) does not apply: {why}")
    provenance = {f"launcher_options[{i}]": cli_source if source == _CLI_SHOWN else source
                  for i, (_, source) in enumerate(chosen)}
    return tuple(e for e, _ in chosen), tuple(notes), provenance
