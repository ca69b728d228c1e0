"""Rendered scripts against golden files; shellcheck-clean.

Regenerate after an intended change with:  HPCJOBS_REGEN_GOLDEN=1 pytest tests/unit/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hpcjobs.config import load_site
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec
from tests.shellcheck import assert_shellcheck_clean

GOLDEN = Path(__file__).parent.parent / "golden"
SITE = load_site(GOLDEN / "site.yaml")

CASES: dict[str, dict[str, Any]] = {
    "cpu": {"image": "/images/tool.sif", "command": ["python3", "-c", "print('hi')"], "mem_gb": 2},
    "gpu": {"image": "/images/cuda.sif", "gpus": 1, "command": ["nvidia-smi"], "cpus_per_task": 4},
    "mpi": {"image": "/images/mpi.sif", "ntasks": 4, "nodes": 2, "entrypoint": ["/usr/local/bin/mpi_hello"]},
    "mpirun": {"image": "/images/mpi.sif", "ntasks": 2, "mpi": "mpirun", "entrypoint": ["mpi_hello"]},
    "array": {"image": "/images/tool.sif", "array": "0-9%2", "command": ["process", "--index", "$SLURM_ARRAY_TASK_ID"]},
    "binds": {
        "image": "docker://registry.example.org/lab/tool:1.2",
        "binds": ["/data:/data:ro", {"src": "/scratch/my run", "dst": "/work"}, "/opt/ref:/ref:ro"],
        "workdir": "/work",
        "env": {"GREETING": "it's a \"test\"; echo $HOME `id`", "EMPTY": ""},
        "command": ["sh", "-c", "echo $GREETING > out; ls /data"],
    },
    "launcher_options": {
        "image": "/images/mpi.sif", "partition": "bound", "ntasks": 2, "entrypoint": ["mpi_hello"],
        "launcher_options": {"srun": ["--cpu-bind=map_cpu:1,0", "--comment=it's; echo $HOME", "-l"]},
    },
    "a100_cleanenv": {
        "image": "/images/train.sif",
        "partition": "a100",
        "gpus": 4,
        "ntasks": 4,
        "account": "proj-42",
        "qos": "high",
        "extra_sbatch": ["--constraint=nvlink"],
        "command": ["python", "train.py", "--lr", "0.1"],
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_script(case: str) -> None:
    script = render(resolve(JobSpec.model_validate(CASES[case]), SITE))
    path = GOLDEN / "scripts" / f"{case}.sh"
    if os.environ.get("HPCJOBS_REGEN_GOLDEN") == "1":
        path.write_text(script)
    assert path.exists(), f"missing {path}; create it with: HPCJOBS_REGEN_GOLDEN=1 pytest {__file__}"
    expected = path.read_text()
    assert script == expected, (
        f"rendered script for {case!r} differs from {path}.\n"
        f"If the change is intended, regenerate with: HPCJOBS_REGEN_GOLDEN=1 pytest tests/unit/test_golden.py"
    )


def test_goldens_are_shellcheck_clean() -> None:
    scripts = sorted((GOLDEN / "scripts").glob("*.sh"))
    assert len(scripts) == len(CASES)
    assert_shellcheck_clean(scripts)
