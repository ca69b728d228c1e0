"""The ``sweep:`` section of a job file: explicit points, a grid, or a file of points (one of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from hpcjobs.models import StrictModel
from hpcjobs.sweep.points import Point, grid, load_points_file, to_points


class GridSpec(StrictModel):
    """Lists of values; every combination is a point."""

    args: dict[str, list[Any]] = Field(
        default_factory=dict, description="Option → values (`--lr: [0.1, 0.01]`); a name ending in = glues."
    )
    env: dict[str, list[Any]] = Field(default_factory=dict, description="Variable → values.")


class SweepSpec(StrictModel):
    """``sweep:`` — one task per point. Give exactly one of points, grid, file."""

    points: list[Any] | None = Field(None, description="Points: lists of arguments or {args, env} mappings.")
    grid: GridSpec | None = Field(None, description="The product of value lists.")
    file: str | None = Field(None, description="A .jsonl or .csv file of points (relative to the job file).")
    dir: str | None = Field(None, description="Where points and logs go (default: ./hpcjobs-sweeps/ID).")

    @model_validator(mode="after")
    def _one_source(self) -> SweepSpec:
        given = [k for k in ("points", "grid", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of points, grid, file (got {', '.join(given) or 'none'})")
        return self

    def load(self, base: Path) -> list[Point]:
        if self.points is not None:
            return to_points(self.points, "sweep.points")
        if self.grid is not None:
            return grid(self.grid.args, self.grid.env)
        assert self.file is not None
        return load_points_file(self.file, base)
