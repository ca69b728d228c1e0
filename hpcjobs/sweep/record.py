"""A sweep's record: what was submitted (arrays, points, the job) and the last known end of each
point. ``DIR/sweep.json`` holds it; ``~/.cache/hpcjobs/sweeps/ID.json`` points to DIR so that
``hpcjobs sweep status ID`` finds it from anywhere."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcjobs.errors import ConfigError
from hpcjobs.sweep.plan import ArrayPlan

RECORD = "sweep.json"
VERSION = 1


def index_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hpcjobs" / "sweeps"


def new_id(name: str) -> str:
    """``NAME-YYYYmmdd-HHMMSS-RANDOM``: a file name and a directory that needs no quoting anywhere."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "-", name[:40]).strip("-.") or "sweep"
    return f"{safe}-{stamp}-{secrets.token_hex(3)}"


@dataclass
class ArrayEntry:
    job_id: str
    attempt: int
    plan: ArrayPlan

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"job_id": self.job_id, "attempt": self.attempt, "count": self.plan.count}
        if self.plan.points is not None:
            d["points"] = list(self.plan.points)
        else:
            d["start"] = self.plan.start
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArrayEntry:
        pts = d.get("points")
        plan = ArrayPlan(int(d["count"]), d.get("start"), tuple(int(p) for p in pts) if pts is not None else None)
        return cls(str(d["job_id"]), int(d["attempt"]), plan)


@dataclass
class SweepRecord:
    id: str
    directory: Path
    n_points: int
    job: dict[str, Any]  # ContainerJob fields as set (plus overrides applied)
    site: dict[str, Any]  # the site config as it was (retries render with the same settings)
    image: dict[str, str | None]  # the prepared image: path, ref, digest (one conversion per sweep)
    cwd: str
    throttle: int | None = None
    arrays: list[ArrayEntry] = field(default_factory=list)
    # point → [attempt, state, exit code, signal, elapsed_s, task id]: the last known end
    final: dict[int, list[Any]] = field(default_factory=dict)
    created: str = ""
    _stamp: int | None = field(default=None, repr=False, compare=False)  # sweep.json's mtime when last read/written

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION, "id": self.id, "directory": str(self.directory), "points": self.n_points,
            "created": self.created, "cwd": self.cwd, "throttle": self.throttle, "job": self.job,
            "site": self.site, "image": self.image, "arrays": [a.as_dict() for a in self.arrays],
            "final": {str(k): v for k, v in self.final.items()},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepRecord:
        return cls(
            id=d["id"], directory=Path(d["directory"]), n_points=int(d["points"]), job=d["job"], site=d["site"],
            image=d["image"], cwd=d["cwd"], throttle=d.get("throttle"),
            arrays=[ArrayEntry.from_dict(a) for a in d["arrays"]],
            final={int(k): v for k, v in d.get("final", {}).items()}, created=d.get("created", ""),
        )  # fmt: skip

    def save(self) -> None:
        path = self.directory / RECORD
        tmp = path.with_name(f".{RECORD}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
        self._stamp = path.stat().st_mtime_ns

    def update(self) -> None:
        """Save, merged with what another process saved meanwhile (``sweep retry`` in another
        terminal adds arrays, a ``status`` there adds ends), under a lock on the sweep directory."""
        import fcntl

        with open(self.directory / ".sweep.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.refresh(force=True)
            self.save()

    def refresh(self, *, force: bool = False) -> None:
        """Take in what another process saved since this record was read or written (cheap when
        nothing changed: one stat)."""
        path = self.directory / RECORD
        try:
            stamp = path.stat().st_mtime_ns
            if stamp == self._stamp and not force:
                return
            disk = SweepRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError):
            return
        mine = {a.job_id for a in self.arrays}
        self.arrays += [a for a in disk.arrays if a.job_id not in mine]
        # later attempts last; within one, the order of the points (job ids may come back in any order)
        self.arrays.sort(key=lambda a: (a.attempt, a.plan.point_of(0)))
        for point, end in disk.final.items():
            if point not in self.final or end[0] > self.final[point][0]:
                self.final[point] = end
        self._stamp = stamp

    def register(self) -> None:
        """The per-user pointer, so the id alone finds the sweep. Best effort: a read-only home
        only means the sweep must be named by its directory."""
        try:
            d = index_dir()
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{self.id}.json").write_text(json.dumps({"id": self.id, "directory": str(self.directory)}))
        except OSError:
            pass


def load_record(ref: str | os.PathLike[str]) -> SweepRecord:
    """A sweep by id (``~/.cache/hpcjobs/sweeps/ID.json``), by its directory, or by its sweep.json."""
    text = os.fspath(ref)
    candidates = [Path(text) / RECORD, Path(text)] if os.sep in text or os.path.exists(text) else []
    pointer = index_dir() / f"{text}.json"
    if pointer.is_file():
        try:
            candidates.insert(0, Path(json.loads(pointer.read_text())["directory"]) / RECORD)
        except (OSError, ValueError, KeyError):
            pass
    for path in candidates:
        if path.is_file() and path.name == RECORD:
            try:
                record = SweepRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
                record._stamp = path.stat().st_mtime_ns
                return record
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigError(f"{path}: not a readable sweep record: {exc}") from None
    raise ConfigError(f"no sweep {text!r}: not an id in {index_dir()}, nor a sweep directory")


def list_ids() -> list[str]:
    """Ids in the per-user index whose sweep directory still holds its record."""
    d = index_dir()
    out = []
    for pointer in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            if (Path(json.loads(pointer.read_text())["directory"]) / RECORD).is_file():
                out.append(pointer.stem)
        except (OSError, ValueError, KeyError):
            continue
    return out
