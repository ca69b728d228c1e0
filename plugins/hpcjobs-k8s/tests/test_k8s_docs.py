"""The mapping table is written twice (the plugin's README, the docs page): they must not drift."""

from __future__ import annotations

from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1]


def _table(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    start = lines.index("| job field (after `resolve`) | Kubernetes Job | notes |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_readme_and_docs_page_have_the_same_mapping_table() -> None:
    readme = _table(PLUGIN / "README.md")
    assert len(readme) > 20
    assert readme == _table(PLUGIN.parents[1] / "docs" / "kubernetes.md")
