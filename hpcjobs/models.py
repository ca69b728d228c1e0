"""Shared pydantic base and small value types used by the site config and the job spec."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hpcjobs.errors import BindError

GpuRequest = Literal["gpus", "gres"]
BindMode = Literal["ro", "rw"]
MpiCheck = Literal["refuse", "warn", "off"]
"""What a failed MPI/PMIx pre-flight does (hpcjobs.mpi.check)."""

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
PosFloat = Annotated[float, Field(gt=0)]

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# names written into #SBATCH lines as they are (partition, account, QoS, GPU type)
SLURM_NAME = re.compile(r"[A-Za-z0-9_.+-]+\Z")
"""What an environment variable name may be (letters, digits and _, not first a digit)."""


def _env_strings(value: Any) -> Any:
    """Numbers and booleans in YAML become strings (``OMP_NUM_THREADS: 1``, ``true`` as "true")."""
    if isinstance(value, dict):
        return {k: _scalar_str(v) for k, v in value.items()}
    return value


def _scalar_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvMap = Annotated[dict[str, str], BeforeValidator(_env_strings)]
"""An environment: names to string values, YAML numbers and booleans taken as strings. The names
are checked against :data:`ENV_NAME` by the model that uses it, each with its own message."""


class StrictModel(BaseModel):
    """Every model forbids unknown keys; the error lists the valid ones (see config.errors).

    Validators are built on first use (``defer_build``), not at import: a CLI call that reads its
    site config from the validated cache never builds the site config's own validators.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, defer_build=True)


_BIND_RE = re.compile(r"(?P<src>[^:]+)(?::(?P<dst>[^:]+))?(?::(?P<mode>ro|rw))?\Z")


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
        """``SRC:DST:MODE``, as ``apptainer --bind`` takes it (and as messages show a bind)."""
        return f"{self.src}:{self.dst}:{self.mode}"

    def runtime_args(self) -> list[str]:
        """The runtime flag and value: ``--bind SRC:DST:MODE``, or for a path with ':' (which
        ``--bind`` would split) ``--mount type=bind,src=…,dst=…[,ro]``, whose fields apptainer
        reads as one CSV record (a field with '"' is quoted, with '"' doubled)."""
        if ":" not in self.src and ":" not in self.dst:
            return ["--bind", self.spec()]
        fields = ["type=bind", f"src={self.src}", f"dst={self.dst}"] + (["ro"] if self.mode == "ro" else [])
        return ["--mount", ",".join(_csv_field(f) for f in fields)]


def _csv_field(field: str) -> str:
    if any(c in field for c in ',"\r\n'):
        return '"' + field.replace('"', '""') + '"'
    return field


def _split_bind(text: str) -> dict[str, str]:
    m = _BIND_RE.fullmatch(text)
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
