"""Built-in defaults: what a job gets when neither the CLI, the job spec, the partition nor the site
defaults set a value. The one place they are written; ``resolve`` applies them and ``site show``
lists them. Keys are the site config's setting paths (``gpu.flag``) or job fields (``ntasks``)."""

from __future__ import annotations

from typing import Any

BUILTIN = "built-in default"
"""How ``render --explain`` and ``site show`` name a value that came from here."""

SETTINGS: dict[str, Any] = {
    "gpu.request": "gpus",
    "gpu.flag": "nv",
    "runtime.name": "apptainer",
    "runtime.cleanenv": False,
    "mpi.default": "none",
    "mpi.mpirun": "mpirun",
    "mpi.check": "refuse",
}
"""Site-config settings (``defaults:``/partition keys) and their built-in values."""

JOB_FIELDS: dict[str, Any] = {"nodes": 1, "ntasks": 1, "gpus": 0}
"""Job fields with a built-in value when nothing sets them."""

OUTPUT = "hpcjobs-%x-%j.out"
ARRAY_OUTPUT = "hpcjobs-%x-%A_%a.out"
"""The job's log file: Slurm filename patterns (per array task for arrays)."""
