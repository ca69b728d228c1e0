"""Sweep points: what one task of a sweep adds to the job (arguments after the job's command,
environment on top of the job's). From Python lists/dicts, a grid, or a CSV/JSONL file."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcjobs.errors import ConfigError
from hpcjobs.models import ENV_NAME


@dataclass(frozen=True)
class Point:
    """One task of a sweep: ``args`` are appended to the job's command; ``env`` is laid over the job's."""

    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"args": list(self.args), "env": dict(self.env)}


def _texts(values: Iterable[Any], where: str) -> tuple[str, ...]:
    out = tuple(values)
    for v in out:
        if type(v) is not str or "\x00" in v:  # the common case stays cheap: 10,000 points of several args
            return tuple(_text(a, f"{where}[{i}]") for i, a in enumerate(out))
    return out


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string or number, got {type(value).__name__}")
    if "\x00" in value:
        raise ConfigError(f"{where}: a NUL character can never reach a program (argv and environment end at it)")
    return value


def to_point(raw: Any, where: str = "point") -> Point:
    """A point from ``{"args": [...], "env": {...}}``, a list of arguments, or a Point."""
    if isinstance(raw, Point):
        raw = raw.as_dict()
    if type(raw) is list:
        return Point(_texts(raw, f"{where}.args"), {})
    if isinstance(raw, str | bytes) or not isinstance(raw, Mapping | Sequence):
        raise ConfigError(f"{where}: expected a list of arguments or a mapping with args/env, got {raw!r}")
    if not isinstance(raw, Mapping):
        return Point(_texts(raw, f"{where}.args"), {})
    unknown = sorted(set(raw) - {"args", "env"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (valid: args, env)")
    args = raw.get("args") or []
    env = raw.get("env") or {}
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ConfigError(f"{where}.args: expected a list of arguments, got {args!r}")
    if not isinstance(env, Mapping):
        raise ConfigError(f"{where}.env: expected a mapping of names to values, got {env!r}")
    for name in env:
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ConfigError(f"{where}.env: {name!r} is not an environment variable name")
    return Point(
        _texts(args, f"{where}.args"),
        {k: v if type(v) is str and "\x00" not in v else _text(v, f"{where}.env.{k}") for k, v in env.items()},
    )


_PLAIN_KEYS = frozenset(("args", "env"))  # a constant: ``keys() <= {...}`` would build a set a point


def _plain(raw: Any) -> Point | None:
    """The common point (a list of strings, or a dict of exactly that), checked cheaply; None: ask
    :func:`to_point`, which checks everything and names what is wrong."""
    if type(raw) is list:
        args, env = raw, None
    elif type(raw) is dict and raw.keys() <= _PLAIN_KEYS:
        args, env = raw.get("args") or [], raw.get("env") or {}
        if type(args) is not list or type(env) is not dict:
            return None
    else:
        return None
    for a in args:
        if type(a) is not str or "\x00" in a:
            return None
    if env:
        for k, v in env.items():
            if type(k) is not str or type(v) is not str or "\x00" in v or not ENV_NAME.match(k):
                return None
        return Point(tuple(args), dict(env))
    return Point(tuple(args), {})


def to_points(raw: Iterable[Any], where: str = "points") -> list[Point]:
    points = [_plain(p) or to_point(p, f"{where}[{i}]") for i, p in enumerate(raw)]
    if not points:
        raise ConfigError(f"{where}: a sweep needs at least one point")
    return points


def grid(
    args: Mapping[str, Sequence[Any]] | None = None, env: Mapping[str, Sequence[Any]] | None = None
) -> list[Point]:
    """Every combination of the value lists (the last name varies fastest).

    ``args={"--lr": [0.1, 0.01], "--depth": [2, 4]}`` gives the arguments ``--lr 0.1 --depth 2``, …;
    a name ending in ``=`` glues its value on (``"--lr=": [...]`` → ``--lr=0.1``); a name that is
    empty gives the bare value. ``env={"SEED": [1, 2]}`` sets variables.
    """
    axes: list[tuple[str, str, list[str]]] = []
    for kind, table in (("args", args or {}), ("env", env or {})):
        for name, values in table.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence):
                raise ConfigError(f"grid {kind}.{name}: expected a list of values, got {values!r}")
            if not values:
                raise ConfigError(f"grid {kind}.{name}: an empty list of values gives no points")
            axes.append((kind, name, [_text(v, f"grid {kind}.{name}") for v in values]))
    if not axes:
        raise ConfigError("grid: give at least one list of values (args or env)")
    out: list[Point] = []
    for combo in itertools.product(*(vals for _, _, vals in axes)):
        argv: list[str] = []
        envs: dict[str, str] = {}
        for (kind, name, _), value in zip(axes, combo, strict=True):
            if kind == "env":
                envs[name] = value
            elif name == "":
                argv.append(value)
            elif name.endswith("="):
                argv.append(name + value)
            else:
                argv += [name, value]
        out.append(to_point({"args": argv, "env": envs}, "grid"))
    return out


def load_points_file(path: str | Path, base: Path | None = None) -> list[Point]:
    """Points from a ``.jsonl`` file (one point per line, as in ``points:``) or a ``.csv`` file (a
    header row; a column ``args`` holds one argument, columns ``args.N`` order several, any other
    column is an environment variable)."""
    p = Path(path)
    if base is not None and not p.is_absolute():
        p = base / p
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read points file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: points file is not UTF-8: {exc.reason}") from None
    if p.suffix == ".jsonl":
        return to_points(_jsonl_rows(text, p), str(p))
    if p.suffix == ".csv":
        return _csv_points(text, p)
    raise ConfigError(f"{p}: points file must end in .jsonl or .csv")


def _jsonl_rows(text: str, p: Path) -> list[Any]:
    """One JSON value per non-blank line. ``raw_decode`` of the line stripped of JSON's own
    whitespace, the value ending at its end, is what ``json.loads`` accepts, in half the time (two
    Python frames fewer a line: 15-30 ms at 10,000 points); anything else is parsed again by
    ``json.loads``, whose message names the problem (a property test compares the two)."""
    decode = json.JSONDecoder().raw_decode
    rows: list[Any] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        body = line.strip(" \t\n\r")
        try:
            value, end = decode(body)
            if end != len(body):
                raise ValueError(body)
        except ValueError:
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{p}:{n}: not JSON: {exc}") from None
        rows.append(value)
    return rows


def _csv_points(text: str, p: Path) -> list[Point]:
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None)
    if not header:
        raise ConfigError(f"{p}: the CSV file has no header row")
    arg_cols: list[tuple[int, int]] = []
    env_cols: list[tuple[int, str]] = []
    for i, name in enumerate(header):
        if name == "args":
            arg_cols.append((0, i))
        elif name.startswith("args.") and name[5:].isdigit():
            arg_cols.append((int(name[5:]), i))
        elif ENV_NAME.match(name):
            env_cols.append((i, name))
        else:
            raise ConfigError(f"{p}: column {name!r} is neither args, args.N nor an environment variable name")
    arg_cols.sort()
    rows: list[Any] = []
    for n, row in enumerate(reader, 2):
        if not row:
            continue
        if len(row) != len(header):
            raise ConfigError(f"{p}:{n}: {len(row)} fields, the header has {len(header)}")
        rows.append({"args": [row[i] for _, i in arg_cols], "env": {k: row[i] for i, k in env_cols}})
    return to_points(rows, str(p))
