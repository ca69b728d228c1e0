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

import os
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
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


def plain_ok(raw: Sequence[Any], prefix: str | None) -> bool:
    """Whether :func:`encode_plain_group` may encode ``raw`` unchecked: every point common (a list
    of strings, a dict of ``args``: list of strings and ``env``: dict of strings, or a
    :class:`Point`), every value free of NUL, every environment name valid and value free of
    :data:`~hpcjobs.sweep.envcarry.PLAIN_UNSAFE` (what the runtime, under ``prefix``, would escape
    or refuse). Checked per group, not per value: a NUL shows as one field too many in the joined
    group, a non-string as ``join``'s TypeError. False (any point not plain, any doubt, or no
    ``prefix``): use :func:`~hpcjobs.sweep.points.to_points` and :func:`encode_points`, which check
    each value and say what is wrong. One pass without encoding: cheap enough to finish before
    the first ``sbatch``, leaving the encoding to run beside the ``sbatch`` calls."""
    from hpcjobs.models import ENV_NAME
    from hpcjobs.sweep.envcarry import PLAIN_UNSAFE

    if prefix is None or not raw:
        return False
    names: set[str] = set()  # environment names already checked
    for first in range(0, len(raw), GROUP):
        chunk = raw[first : first + GROUP]
        got = _uniform_values(chunk) or _values(chunk)
        if got is None:
            return False
        values, env_names, env_values = got
        for name in env_names:
            if name not in names:
                if type(name) is not str or not ENV_NAME.match(name):
                    return False
                names.add(name)
        try:
            text = "\0".join(values)
            env_text = "\0".join(env_values)
        except TypeError:  # an argument that is not a string (a number: the careful path writes it)
            return False
        if text.count("\0") != max(len(values) - 1, 0) or env_text.count("\0") != max(len(env_values) - 1, 0):
            return False  # a NUL inside a value
        if any(c in env_text for c in PLAIN_UNSAFE):
            return False
    return True


_Values = tuple[list[Any], "Iterable[Any]", list[Any]]  # arguments, environment names, environment values


def _values(chunk: Sequence[Any]) -> _Values | None:
    """The arguments, environment names and values of a group of points, point by point; None
    where a point is not plain."""
    values: list[Any] = []
    env_names: list[Any] = []
    env_values: list[Any] = []
    for point in chunk:
        kind = type(point)
        if kind is list:
            values += point
            continue
        if kind is dict and point.keys() <= _PLAIN_KEYS:
            args, env = point.get("args") or [], point.get("env") or None
            if type(args) is not list or (env is not None and type(env) is not dict):
                return None
        elif kind is Point:  # from a job file's sweep: section (checked there; checked here again)
            args, env = point.args, point.env or None
            if type(args) is not tuple or (env is not None and type(env) is not dict):
                return None
        else:
            return None
        values += args
        if env:
            env_names += env
            env_values += env.values()
    return values, env_names, env_values


def _uniform_values(chunk: Sequence[Any]) -> _Values | None:
    """:func:`_values` of a group whose points are all lists, or all dicts of a list (or None)
    and a dict (or None), with the loops in C (a third of the time at 10,000 points); None for
    any other group, which :func:`_values` then reads point by point (with the same answer)."""
    kinds = set(map(type, chunk))
    if kinds == {list}:
        return list(chain.from_iterable(chunk)), (), []
    if kinds != {dict} or not all(map(_PLAIN_KEYS.issuperset, chunk)):
        return None
    args = list(map(dict.get, chunk, repeat("args")))
    envs = list(map(dict.get, chunk, repeat("env")))
    if not set(map(type, args)) <= _ARGS_TYPES or not set(map(type, envs)) <= _ENV_TYPES:
        return None  # e.g. "args": "" (read as no arguments, point by point)
    given = list(filter(None, envs))
    return (list(chain.from_iterable(filter(None, args))), set(chain.from_iterable(given)),
            list(chain.from_iterable(map(dict.values, given))))  # fmt: skip


_ARGS_TYPES = frozenset((list, type(None)))
_ENV_TYPES = frozenset((dict, type(None)))


def encode_plain_group(raw: Sequence[Any], k: int, prefix: str) -> bytes:
    """Group file ``k``'s bytes for points :func:`plain_ok` accepted (unchecked here): exactly
    :func:`encode_points`' bytes for them (a property test)."""
    fields: list[str] = []
    starts: list[int] = []
    add, start = fields.append, starts.append
    first = k * GROUP
    for i, point in enumerate(raw[first : first + GROUP], first):
        kind = type(point)
        if kind is list:
            args, env = point, None
        elif kind is dict:
            args, env = point.get("args") or [], point.get("env")
        else:
            args, env = point.args, point.env
        start(len(fields))
        add(str(i))
        add(str(len(args)))
        fields += args
        if env:
            add(str(len(env)))
            for name, value in env.items():
                add(f"{prefix}{name}={value}")
        else:
            add("0")
    count = len(starts)
    header = [str(count)] + [str(s + 1 + count) for s in starts]
    return ("\0".join(header + fields) + "\0").encode("utf-8", "surrogateescape")


def encode_plain(raw: Sequence[Any], prefix: str | None) -> list[bytes] | None:
    """Every group of :func:`encode_points` for the common points, or None where :func:`plain_ok`
    says no."""
    if prefix is None or not plain_ok(raw, prefix):
        return None
    return [encode_plain_group(raw, k, prefix) for k in range(groups_of(len(raw)))]


def groups_of(n_points: int) -> int:
    return (n_points + GROUP - 1) // GROUP


def group_of(point: int) -> int:
    """The group file holding ``point``."""
    return point // GROUP


class PointWriter:
    """Writes a new sweep's group files as its arrays need them, each whole before it is needed:
    :meth:`upto` before the ``sbatch`` of an array whose last point is ``last``. The bytes come
    from ``encode(k)`` (group ``k``, made then: the encoding runs beside the ``sbatch`` calls).
    Each file is written under a temporary name and renamed, so it is there whole or not at all."""

    def __init__(self, directory: Path, n_points: int, encode: Callable[[int], bytes]) -> None:
        self.target = directory / "points"
        self.target.mkdir(parents=True, exist_ok=True)
        self.n_groups = groups_of(n_points)
        self.written = 0  # groups 0 … written-1 are on disk
        self._encode = encode

    def upto(self, last: int) -> None:
        """Every group file up to the one holding point ``last``."""
        for k in range(self.written, min(group_of(last) + 1, self.n_groups)):
            tmp = self.target / f".{k}.rec.tmp"
            tmp.write_bytes(self._encode(k))
            os.replace(tmp, self.target / f"{k}.rec")
            self.written = k + 1

    @classmethod
    def of(cls, directory: Path, groups: Sequence[bytes]) -> PointWriter:
        """A writer of groups already encoded (the careful path's)."""
        return cls(directory, len(groups) * GROUP, groups.__getitem__)


def write_points(directory: Path, groups: Sequence[bytes]) -> None:
    PointWriter.of(directory, groups).upto(len(groups) * GROUP - 1)


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
