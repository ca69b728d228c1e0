"""Read a job spec from YAML; errors name the file and the key path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpcjobs.config.loader import load_yaml_mapping, read_text, validate_model
from hpcjobs.errors import ConfigError

if TYPE_CHECKING:
    from hpcjobs.api import ContainerJob
    from hpcjobs.sweep.spec import SweepSpec


def load_job_file(path: str | Path) -> ContainerJob:
    job, sweep = load_job_document(path)
    if sweep is not None:
        raise ConfigError(f"{path}: this job file has a sweep: section; submit it with hpcjobs submit")
    return job


def load_job_document(path: str | Path) -> tuple[ContainerJob, SweepSpec | None]:
    """The job and, when the file has one, its ``sweep:`` section."""
    p = Path(path)
    # missing, unreadable, a directory, not UTF-8: one line naming the file (like a site config)
    return load_job_text_document(read_text(p, "job file"), str(p))


def load_job_text(text: str, source: str = "<job>") -> ContainerJob:
    job, sweep = load_job_text_document(text, source)
    if sweep is not None:
        raise ConfigError(f"{source}: this job has a sweep: section; submit it with hpcjobs submit")
    return job


def load_job_text_document(text: str, source: str = "<job>") -> tuple[ContainerJob, SweepSpec | None]:
    from hpcjobs.api import ContainerJob

    data = load_yaml_mapping(text, source)
    raw_sweep = data.pop("sweep", None)
    sweep = None
    if raw_sweep is not None:
        from hpcjobs.sweep.spec import SweepSpec

        sweep = validate_model(SweepSpec, raw_sweep, f"{source}: sweep")
    return validate_model(ContainerJob, data, source), sweep
