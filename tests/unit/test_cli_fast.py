"""`import hpcjobs` and `hpcjobs --help` stay light: heavy or optional modules are imported lazily.

Checked by which modules get imported (a property that cannot flake), not by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["pydantic", "structlog", "pyslurm", "spython", "rich", "yaml", "hpcjobs.images", "pluggy"]


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_hpcjobs_is_light() -> None:
    mods = imported_after("import hpcjobs")
    assert not [m for m in HEAVY if m in mods]


def test_cli_help_is_light() -> None:
    code = (
        "import sys\nfrom hpcjobs.cli import main\nsys.argv=['hpcjobs','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    mods = imported_after(code)
    assert not [m for m in HEAVY if m in mods]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["render", "--help"], ["images", "--help"]])
def test_cli_entry_points_answer(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "hpcjobs", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout


def test_user_error_is_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "job.yaml").write_text("image: x.sif\n")
    r = subprocess.run(
        [sys.executable, "-m", "hpcjobs", "render", "--site", str(tmp_path / "nope.yaml"), "job.yaml"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hpcjobs: error: ") and "nope.yaml" in r.stderr
