"""Shared pydantic base and small value types used by the site config and the job spec."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hpcjobs.errors import BindError

MpiKind = Literal["pmix", "pmi2", "mpirun", "none"]
GpuFlag = Literal["nv", "nvccli", "rocm", "none"]
GpuRequest = Literal["gpus", "gres"]
BindMode = Literal["ro", "rw"]

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
PosFloat = Annotated[float, Field(gt=0)]


class StrictModel(BaseModel):
    """Every model forbids unknown keys; the error lists the valid ones (see config.errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


_BIND_RE = re.compile(r"^(?P<src>[^:]+)(?::(?P<dst>[^:]+))?(?::(?P<mode>ro|rw))?$")


class Bind(StrictModel):
    """A bind mount: host ``src`` at container ``dst``; ``mode`` ro or rw."""

    src: str = Field(min_length=1)
    dst: str = Field(min_length=1)
    mode: BindMode = "rw"

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return _split_bind(data)
        if isinstance(data, dict) and "dst" not in data and "src" in data:
            return {**data, "dst": data["src"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> Bind:
        if not self.dst.startswith("/"):
            raise ValueError(f"bind destination must be an absolute path, got {self.dst!r}")
        for part, value in (("source", self.src), ("destination", self.dst)):
            if "," in value:
                # apptainer splits --bind values on ','
                raise ValueError(f"bind {part} may not contain ',': {value!r}")
        return self

    def spec(self) -> str:
        """The value for ``apptainer --bind``."""
        return f"{self.src}:{self.dst}:{self.mode}"


def _split_bind(text: str) -> dict[str, str]:
    m = _BIND_RE.match(text)
    if not m:
        raise ValueError(f"bind {text!r} is not SRC[:DST][:ro|rw] (use the object form for paths with ':')")
    src = m.group("src")
    return {"src": src, "dst": m.group("dst") or src, "mode": m.group("mode") or "rw"}


def parse_bind(text: str) -> Bind:
    """Parse ``SRC[:DST][:ro|rw]``. A path containing ':' must use the object form."""
    from pydantic import ValidationError

    try:
        return Bind.model_validate(text)
    except ValidationError as exc:
        raise BindError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
