"""The points on disk: NUL-delimited records the task reads with bash's ``mapfile -d ''``, so no
value is ever seen by a shell parser.

Points are grouped ``GROUP`` to a file (``points/<index // GROUP>.rec``): a task reads one file
of at most ``GROUP`` points, not all of them (measured in docs/benchmarks.md). A file holds, NUL-terminated::

    COUNT  START_0 … START_{COUNT-1}  record_0 record_1 …
    record = INDEX  NARGS ARG…  NENV EXPORTED_NAME=EXPORTED_VALUE…

``START_k`` is the field number where point ``k`` of the file begins. Environment variables are
stored as the job's runtime exports them (``APPTAINERENV_NAME``, its value escaped by
:func:`hpcjobs.runtimes.apptainer.container_env_value`), exactly as a single job's are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcjobs.sweep.envcarry import Carry
from hpcjobs.sweep.points import Point

# Points per file. Measured on the dev VM (docs/benchmarks.md): a task finds its record in a file of
# 100 points in 1.6 ms, of 1,000 in 4 ms, of 10,000 in 33 ms (bash mapfile), while creating a file
# costs the submitter ~0.35 ms: 1,000 keeps both small (10 files for 10,000 points).
GROUP = 1000
_PLAIN_KEYS = frozenset(("args", "env"))  # a constant: ``keys() <= {...}`` would build a set a point


def encode_group(first: int, points: Sequence[Point], carry: Carry) -> bytes:
    fields: list[str] = []
    starts: list[int] = []
    for k, point in enumerate(points):
        starts.append(len(fields))
        fields.append(str(first + k))
        fields.append(str(len(point.args)))
        fields += point.args
        fields.append(str(len(point.env)))
        fields += [carry(name, value) for name, value in point.env.items()]
    header = [str(len(points))] + [str(s + 1 + len(points)) for s in starts]
    return ("\0".join(header + fields) + "\0").encode("utf-8", "surrogateescape")


def encode_points(points: Sequence[Point], carry: Carry) -> list[bytes]:
    """Every group file's bytes. Raises ConfigError for a value that cannot travel unchanged, so
    call it before anything is written or submitted."""
    return [encode_group(first, points[first : first + GROUP], carry) for first in range(0, len(points), GROUP)]


def encode_plain(raw: Sequence[Any], prefix: str | None) -> list[bytes] | None:
    """The groups of :func:`encode_points` for the common points (a list of strings, a dict of
    ``args``: list of strings and ``env``: dict of strings, or a :class:`Point`), in one pass with the checks made per
    group instead of per value: a NUL inside a value shows as one field too many, a value the
    runtime would escape or refuse as one of :data:`~hpcjobs.sweep.envcarry.PLAIN_UNSAFE` in the
    group's environment values. ``prefix``: the runtime's, under which a value free of those
    travels unchanged. None (any point not plain, any doubt, or no ``prefix``): use
    :func:`~hpcjobs.sweep.points.to_points` and :func:`encode_points`, which check each value and
    say what is wrong. Gives exactly their bytes where it gives any (a property test)."""
    from hpcjobs.models import ENV_NAME
    from hpcjobs.sweep.envcarry import PLAIN_UNSAFE

    if prefix is None or not raw:
        return None
    names: set[str] = set()  # environment names already checked
    out: list[bytes] = []
    for first in range(0, len(raw), GROUP):
        fields: list[str] = []
        starts: list[int] = []
        values: list[str] = []
        for k, point in enumerate(raw[first : first + GROUP], first):
            kind = type(point)
            if kind is list:
                args, env = point, None
            elif kind is dict and point.keys() <= _PLAIN_KEYS:
                args, env = point.get("args") or [], point.get("env") or None
                if type(args) is not list or (env is not None and type(env) is not dict):
                    return None
            elif kind is Point:  # from a job file's sweep: section (checked there; checked here again)
                args, env = point.args, point.env or None
                if type(args) is not tuple or (env is not None and type(env) is not dict):
                    return None
            else:
                return None
            starts.append(len(fields))
            fields.append(str(k))
            fields.append(str(len(args)))
            fields += args
            if env:
                fields.append(str(len(env)))
                for name, value in env.items():
                    if name not in names:
                        if type(name) is not str or not ENV_NAME.match(name):
                            return None
                        names.add(name)
                    if type(value) is not str:
                        return None
                    values.append(value)
                    fields.append(f"{prefix}{name}={value}")
            else:
                fields.append("0")
        count = len(starts)
        header = [str(count)] + [str(s + 1 + count) for s in starts]
        try:
            text = "\0".join(header + fields) + "\0"
        except TypeError:  # an argument that is not a string (a number: the careful path writes it)
            return None
        if text.count("\0") != len(header) + len(fields):  # a NUL inside a value
            return None
        if values:
            env_text = "\0".join(values)
            if any(c in env_text for c in PLAIN_UNSAFE):
                return None
        out.append(text.encode("utf-8", "surrogateescape"))
    return out


def write_points(directory: Path, groups: Sequence[bytes]) -> None:
    target = directory / "points"
    target.mkdir(parents=True, exist_ok=True)
    for k, data in enumerate(groups):  # a fresh directory, read only after submission
        (target / f"{k}.rec").write_bytes(data)


def read_point(directory: Path, index: int) -> Point:
    """Decode one point back (environment as the task exports it: runtime names and escaping)."""
    data = (directory / "points" / f"{index // GROUP}.rec").read_bytes()
    f = [x.decode("utf-8", "surrogateescape") for x in data.split(b"\0")[:-1]]
    i = int(f[1 + index % GROUP])
    if int(f[i]) != index:
        raise ValueError(f"record {i} holds point {f[i]}, not {index}")
    n = int(f[i + 1])
    args = tuple(f[i + 2 : i + 2 + n])
    j = i + 2 + n
    m = int(f[j])
    env = dict(e.split("=", 1) for e in f[j + 1 : j + 1 + m])
    return Point(args, env)
