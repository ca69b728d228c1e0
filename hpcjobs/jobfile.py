"""Read a job spec from YAML; errors name the file and the key path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpcjobs.config.loader import load_yaml_mapping, validate_model
from hpcjobs.errors import ConfigError

if TYPE_CHECKING:
    from hpcjobs.api import ContainerJob


def load_job_file(path: str | Path) -> ContainerJob:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read job file: {exc.strerror}") from exc
    return load_job_text(text, str(p))


def load_job_text(text: str, source: str = "<job>") -> ContainerJob:
    from hpcjobs.api import ContainerJob

    return validate_model(ContainerJob, load_yaml_mapping(text, source), source)
