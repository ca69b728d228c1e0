"""One shellcheck run for the tests that check generated scripts.

Without shellcheck the check is skipped on a developer's machine and fails where the dev cluster
is required (CI: ``scripts/dev-cluster up`` installs it), so it can never silently not run there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest


def assert_shellcheck_clean(scripts: Sequence[Path]) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("HPCJOBS_REQUIRE_CLUSTER") == "1":
            pytest.fail("shellcheck is not installed (scripts/dev-cluster up installs it)")
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run([shellcheck, "-s", "bash", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
