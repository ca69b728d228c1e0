"""How a job, partition or site gives ``mpirun`` an option (``launcher_options: {mpirun: [...]}``).

Open MPI's mpirun takes a value as the next word (``--bind-to core``); 4.x refuses ``--bind-to=core``
and abbreviations, 5.x accepts ``=``. An entry is one option with its value, ``--bind-to core`` or
``--bind-to=core`` (the value is the rest of the entry, spaces and all), written as separate words
(``--bind-to`` ``core``), which both read. The MCA options take a name and a value:
``--mca btl ^openib``. Option names are not checked against a table: the site's mpirun
(``mpi.mpirun``) may be any MPI's, and Open MPI 4 and 5 differ (mpirun itself refuses an unknown
option when the job starts). What hpcjobs sets itself (the task count, the hosts, the
environment) is refused in either dash spelling.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"(?P<dashes>--?)(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:(?P<sep>[=\s])(?P<value>.*))?\Z", re.DOTALL)

TWO_VALUES = frozenset({"mca", "gmca", "omca", "prtemca", "pmixmca"})
"""Options followed by a name and a value (``--mca NAME VALUE``)."""

NEEDS_VALUE = frozenset({"bind-to", "map-by", "rank-by", "prefix", "tune", "am", "launch-agent", "timeout"})
"""Common options that take a value: alone, mpirun would take the next word (the runtime) as it."""

MANAGED: dict[str, str] = {
    "np": "ntasks", "n": "ntasks", "c": "ntasks", "N": "ntasks (per node)", "npernode": "ntasks (per node)",
    "npersocket": "ntasks (per socket)", "H": "nodes (mpirun starts the ranks on the job's allocation)",
    "host": "nodes (mpirun starts the ranks on the job's allocation)",
    "hostfile": "nodes (mpirun starts the ranks on the job's allocation)",
    "machinefile": "nodes (mpirun starts the ranks on the job's allocation)",
    "default-hostfile": "nodes (mpirun starts the ranks on the job's allocation)",
    "x": "env (and the site's mpi.env: the launch environment)",
    "wdir": "workdir (the working directory)", "wd": "workdir (the working directory)",
    "output-filename": "output (the job's log)", "app": "the command (the container)",
    "help": "-", "h": "-", "version": "-", "V": "-",
}  # fmt: skip
"""Options mpirun would take for what a job field sets (by name, without dashes)."""
_GLUED = re.compile(r"(np|n|c|N|H|x)[0-9A-Z_/].*", re.DOTALL)  # -np4, -xFOO=1, -H/path


def parse(entry: str) -> tuple[str, tuple[str, ...]] | str:
    """(the option's name, its words) or why it is not one mpirun option."""
    m = _NAME.match(entry)
    if m is None:
        if not entry.startswith("-"):
            return f"{entry!r} is not an option (must start with '-')"
        return f"{entry!r} is not an option: write --name, --name VALUE or --name=VALUE"
    name, dashes, value = m.group("name"), m.group("dashes"), m.group("value")
    words: tuple[str, ...] = (dashes + name,)
    if value is None:
        if name in NEEDS_VALUE:
            return f"{entry!r}: {dashes}{name} needs a value in the same entry: {dashes}{name} VALUE"
        return name, words
    if name in TWO_VALUES:
        key, _, val = value.lstrip().partition(" ")
        if not key or not val:
            return f"{entry!r}: --{name} takes a name and a value: --{name} NAME VALUE"
        return name, (*words, key, val)
    return name, (*words, value)


def option_problem(entry: str) -> str | None:
    """Why ``entry`` may not be an mpirun launcher option, or None."""
    parsed = parse(entry)
    if isinstance(parsed, str):
        return parsed
    name = parsed[0]
    managed = name if name in MANAGED else None
    if managed is None and entry.startswith("-") and not entry.startswith("--") and _GLUED.fullmatch(name):
        managed = _GLUED.fullmatch(name).group(1)  # type: ignore[union-attr]
    if managed is not None:
        what = MANAGED[managed]
        why = ("changes what mpirun does, not how it starts the ranks" if what == "-" else
               f"hpcjobs sets itself: {what}" if what.startswith(("the ", "nodes (")) else
               f"hpcjobs sets itself: use the job's {what} instead")  # fmt: skip
        return f"{entry!r} sets -{managed}, which {why}"
    return None


def option_key(entry: str) -> str:
    """What ``entry`` sets: its name (``bind-to`` for ``-bind-to`` and ``--bind-to``), with the
    parameter for the MCA options (``mca:btl``)."""
    parsed = parse(entry)
    if isinstance(parsed, str):
        return entry
    name, words = parsed
    return f"{name}:{words[1]}" if name in TWO_VALUES and len(words) == 3 else name


def option_words(entry: str) -> tuple[str, ...]:
    """The words mpirun is given for an accepted entry."""
    parsed = parse(entry)
    if isinstance(parsed, str):
        raise ValueError(parsed)
    return parsed[1]
