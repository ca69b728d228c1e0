"""Sweep array scripts against golden files; shellcheck-clean; every runtime plugin's env prefix.

Regenerate after an intended change with:  HPCJOBS_REGEN_GOLDEN=1 pytest tests/unit/test_sweep_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hpcjobs.config import load_site
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec
from hpcjobs.sweep.arrays import array_script
from hpcjobs.sweep.plan import ArrayPlan
from tests.shellcheck import assert_shellcheck_clean

GOLDEN = Path(__file__).parent.parent / "golden"
SITES = {"golden": load_site(GOLDEN / "site.yaml"), "explain": load_site(GOLDEN / "explain" / "site.yaml")}
DIRECTORY = Path("/home/u/run dir/hpcjobs-sweeps/tool-20260101-000000-abc123")

CASES: dict[str, tuple[str, dict[str, Any], ArrayPlan, int, int | None]] = {
    "range": ("golden", {"image": "/images/tool.sif", "command": ["python3", "fit.py"], "env": {"A": "$x"}},
              ArrayPlan(count=1001, start=1001), 0, None),
    "retry": ("golden", {"image": "/images/tool.sif", "command": ["python3", "fit.py"]},
              ArrayPlan(count=3, points=(4, 1500, 9999)), 2, 10),
    "singularity": ("explain", {"image": "/images/tool.sif", "partition": "legacy", "entrypoint": ["run"]},
                    ArrayPlan(count=5, start=0), 0, None),
    "mpi_cleanenv": ("golden", {"image": "/images/train.sif", "partition": "a100", "gpus": 4, "ntasks": 4,
                                "command": ["python", "train.py"]}, ArrayPlan(count=2, start=0), 0, 2),
}  # fmt: skip


def script(case: str) -> str:
    site, fields, plan, attempt, throttle = CASES[case]
    job = resolve(JobSpec.model_validate(fields), SITES[site])
    return array_script(job, DIRECTORY, DIRECTORY.name, plan, attempt=attempt, throttle=throttle)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sweep_golden_script(case: str) -> None:
    text = script(case)
    path = GOLDEN / "sweep" / f"{case}.sh"
    if os.environ.get("HPCJOBS_REGEN_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing {path}; create it with: HPCJOBS_REGEN_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(), (
        f"sweep script for {case!r} differs from {path}.\n"
        "If the change is intended, regenerate with: HPCJOBS_REGEN_GOLDEN=1 pytest tests/unit/test_sweep_golden.py"
    )


def test_each_runtime_gets_the_point_env_under_its_own_prefix() -> None:
    from hpcjobs.sweep.envcarry import env_carrier

    for case, prefix in (("singularity", "SINGULARITYENV_"), ("range", "APPTAINERENV_")):
        site, fields, *_ = CASES[case]
        job = resolve(JobSpec.model_validate(fields), SITES[site])
        assert env_carrier(job)("K", "$v") == f"{prefix}K=\\$v"


def test_sweep_goldens_are_shellcheck_clean() -> None:
    scripts = sorted((GOLDEN / "sweep").glob("*.sh"))
    assert len(scripts) == len(CASES)
    assert_shellcheck_clean(scripts)
