"""The recorded Slurm outputs (tests/fixtures/slurm-<version>/) still match the live Slurm.

Records everything again from the running cluster (``scripts/record-slurm-fixtures`` into a
temporary directory), runs the same parser checks as tests/unit/test_slurm_fixtures.py over the
fresh recording, and compares its shape with the committed one of the same Slurm version. On the
host this is Slurm 22.05; in ``scripts/slurm-matrix test`` it is 24.11.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clusterenv import Cluster
from tests.unit import test_slurm_fixtures as checks

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def exit_column(squeue_out: str) -> set[str]:
    """The form of squeue's exit_code column: {"EXIT:SIGNAL"} or {"wait status"}."""
    forms = set()
    for line in squeue_out.splitlines():
        value = line.split(checks.SEP)[4].strip()
        forms.add("EXIT:SIGNAL" if re.fullmatch(r"\d+:\d+", value) else "wait status")
    return forms


def test_live_recording_parses_like_the_committed_one(cluster: Cluster, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "record-slurm-fixtures"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False, cwd="/")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    version = ".".join(str(cluster.info["slurm_version"]).split(".")[:2])
    live = checks.Recording(version, tmp_path)
    for check in (checks.test_recorded_with_hpcjobs_commands, checks.test_squeue_exit_codes_and_signals,
                  checks.test_squeue_array_tasks, checks.test_squeue_stdout_path_is_what_scontrol_says,
                  checks.test_squeue_name_with_spaces_and_semicolon, checks.test_sacct_c_exit_codes,
                  checks.test_squeue_time_used, checks.test_array_limits_from_config,
                  checks.test_sbatch_parsable_and_comment_token,
                  checks.test_backend_status_from_squeue_then_history,
                  checks.test_invalid_job_and_cancel_messages, checks.test_discover_facts):  # fmt: skip
        check(live)
    committed = checks.FIXTURES / f"slurm-{version}"
    assert committed.is_dir(), f"no recorded outputs of Slurm {version}: run scripts/record-slurm-fixtures"
    names = {p.name for p in committed.iterdir() if p.suffix in (".out", ".err")}
    assert {p.name for p in tmp_path.iterdir() if p.suffix in (".out", ".err")} == names
    assert exit_column(live.out("squeue")) == exit_column((committed / "squeue.out").read_text())
