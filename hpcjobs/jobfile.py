"""Read a job spec from YAML; errors name the file and the key path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpcjobs.config.loader import load_yaml_mapping, read_text, validate_model

if TYPE_CHECKING:
    from hpcjobs.api import ContainerJob


def load_job_file(path: str | Path) -> ContainerJob:
    p = Path(path)
    # missing, unreadable, a directory, not UTF-8: one line naming the file (like a site config)
    return load_job_text(read_text(p, "job file"), str(p))


def load_job_text(text: str, source: str = "<job>") -> ContainerJob:
    from hpcjobs.api import ContainerJob

    return validate_model(ContainerJob, load_yaml_mapping(text, source), source)
