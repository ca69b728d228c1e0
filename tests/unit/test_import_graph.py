"""The package's import graph has no cycles and keeps its layers (tests/importgraph.py)."""

from __future__ import annotations

from pathlib import Path

from tests import importgraph


def test_no_import_cycles_and_layers_hold() -> None:
    g = importgraph.graph()
    assert "hpcjobs.plugin_api" in g and "hpcjobs.images.jobs" in g  # the walk saw the package
    assert importgraph.cycles(g) == []
    assert importgraph.violations(g) == []


def test_plugin_api_imports_only_the_leaves() -> None:
    g = importgraph.graph()
    leaves = {"hpcjobs.errors", "hpcjobs.models", "hpcjobs.defaults"}
    # its rarely used classes live in plugin_api_parts (created on first use), which is held to the same
    assert set(g["hpcjobs.plugin_api"]) <= leaves | {"hpcjobs.plugin_api_parts"}
    assert set(g["hpcjobs.plugin_api_parts"]) <= leaves


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "hpcjobs"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_lazy_and_type_only_cycles_and_layer_breaks(tmp_path: Path) -> None:
    # the shape the issue found: config.loader -> plugins -> resolve -> config.site -> resolve
    root = _package(tmp_path, {
        "__init__.py": "",
        "config/__init__.py": "from hpcjobs.config.loader import load\n",
        "config/loader.py": "def load():\n    from hpcjobs.plugins import x\n",
        "config/site.py": "def f():\n    from hpcjobs.resolve import managed\n",
        "plugins.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hpcjobs.resolve import R\n",
        "resolve.py": "from hpcjobs.config.loader import d\nfrom hpcjobs.config.site import S\n",
        "images/__init__.py": "",
        "images/jobs.py": "def g():\n    from hpcjobs.render import sh_join\n    from hpcjobs import schedulers\n",
        "render.py": "", "schedulers/__init__.py": "",
        "leaf.py": "from . import render\n",
    })  # fmt: skip
    g = importgraph.graph(root)
    assert importgraph.cycles(g) == [
        ["hpcjobs.config.loader", "hpcjobs.config.site", "hpcjobs.plugins", "hpcjobs.resolve"]
    ]
    assert g["hpcjobs.leaf"] == {"hpcjobs.render": 1}  # relative imports resolve
    found = importgraph.violations(g)
    assert [v.split(":")[0] for v in found] == [
        "hpcjobs.images.jobs (line 2) imports hpcjobs.render",
        "hpcjobs.images.jobs (line 3) imports hpcjobs.schedulers",
    ]
