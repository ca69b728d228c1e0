"""docs/site-config-reference.md is generated from the models; the committed file must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hpcjobs.config.site import Limits, Policy, SiteConfig
from hpcjobs.site.reference import reference_markdown

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "site-config-reference.md"


def test_committed_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        f"{DOC.relative_to(REPO)} is out of date with the models in hpcjobs/config/site.py.\n"
        "Regenerate it with: python scripts/gen-site-reference.py"
    )


def test_reference_names_every_field() -> None:
    text = reference_markdown()
    for model in (SiteConfig, Limits, Policy):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, name


def test_generator_script_check_mode() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-site-reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
