"""The CLI skips pydantic's plugin lookup only when no pydantic plugin is installed (hpcjobs.pydantic_plugins).

Checked by what is imported and which validator pydantic builds, never by timing: a warm ``render``
imports no ``importlib.metadata``; a real pydantic plugin entry point is still honoured; every guard
(another pydantic, a loader already imported, the cache off, an entry point in the group) falls back
to pydantic's own lookup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pydantic.plugin
import pytest

from hpcjobs import plugin_index, pydantic_plugins
from hpcjobs.pydantic_plugins import LOADER

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
from hpcjobs.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
loader = sys.modules.get("pydantic.plugin._loader")
print(json.dumps([sorted(sys.modules), type(loader).__name__]))
"""

PLUGIN = '''
import os

class Recorder:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        with open(os.environ["HPCJOBS_TEST_PYDANTIC_LOG"], "a") as fh:
            fh.write(schema_type_path.name + "\\n")
        return None, None, None

plugin = Recorder()
'''


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    child = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    child.pop("HPCJOBS_NO_SITE_CACHE", None)
    child.pop("PYDANTIC_DISABLE_PLUGINS", None)
    return child


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    job = tmp_path / "job.yaml"
    job.write_text("image: /i/x.sif\ncommand: [x]\n")
    site = tmp_path / "site.yaml"
    site.write_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    return job, site


def render(env: dict[str, str], job: Path, site: Path) -> tuple[str, set[str], str]:
    r = subprocess.run([sys.executable, "-c", PROBE, "render", "--site", str(site), str(job)],
                       capture_output=True, text=True, env=env, cwd=ROOT, check=True)  # fmt: skip
    modules, loader = json.loads(r.stdout.splitlines()[-1])
    return r.stdout, set(modules), loader


def test_a_warm_render_imports_no_importlib_metadata(env: dict[str, str], files: tuple[Path, Path]) -> None:
    job, site = files
    render(env, job, site)  # cold: the entry-point table is written
    out, modules, loader = render(env, job, site)
    assert "exec apptainer run" in out
    assert loader == "_NoPluginsLoader"
    assert "importlib.metadata" not in modules
    assert "pydantic.plugin._schema_validator" in modules  # validators were built, through the stand-in


def test_a_real_pydantic_plugin_entry_point_is_honoured(
    env: dict[str, str], files: tuple[Path, Path], tmp_path: Path
) -> None:
    dists = tmp_path / "dists"
    info = dists / "hpcjobs_test_pydantic_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hpcjobs-test-pydantic-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pydantic]\nrecorder = hpcjobs_test_pydantic_plugin:plugin\n")
    (dists / "hpcjobs_test_pydantic_plugin.py").write_text(PLUGIN)
    log = tmp_path / "validators.log"
    env = {**env, "PYTHONPATH": str(dists), "HPCJOBS_TEST_PYDANTIC_LOG": str(log)}
    job, site = files
    for _ in range(2):  # cold, then warm: the table says a pydantic plugin is installed
        log.unlink(missing_ok=True)
        out, _modules, loader = render(env, job, site)
        assert "exec apptainer run" in out
        assert loader == "module"
        assert "ContainerJob" in log.read_text().split()


@pytest.fixture
def no_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A process state as at the CLI's start: pydantic's loader not imported; restored afterwards."""
    saved_module = sys.modules.pop(LOADER, None)
    saved_attr = vars(pydantic.plugin).pop("_loader", None)
    monkeypatch.setattr(plugin_index, "table", lambda env=None: {"hpcjobs": [], "pydantic": []})
    try:
        yield {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    finally:
        places = ((sys.modules, LOADER, saved_module), (vars(pydantic.plugin), "_loader", saved_attr))
        for where, key, value in places:
            if value is None:
                where.pop(key, None)
            else:
                where[key] = value


def test_the_stand_in_answers_no_plugins_and_pydantic_validates_through_it(no_loader: dict[str, str]) -> None:
    assert pydantic_plugins.skip_lookup(no_loader)
    from pydantic.plugin._loader import get_plugins

    assert list(get_plugins()) == []
    assert type(sys.modules[LOADER]).__name__ == "_NoPluginsLoader"

    class Fresh(pydantic.BaseModel):
        a: int

    assert Fresh(a="3").a == 3  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Fresh(a="x")  # type: ignore[arg-type]
    # a name only the real loader defines comes from it
    assert sys.modules[LOADER].PYDANTIC_ENTRY_POINT_GROUP == "pydantic"
    from importlib.metadata import entry_points

    assert sys.modules[LOADER].entry_points is entry_points
    real = vars(sys.modules[LOADER])["_real"]
    assert sys.modules[LOADER].os is real.os and vars(sys.modules[LOADER])["_real"] is real  # run once


def test_an_installed_pydantic_plugin_keeps_pydantics_lookup(no_loader: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    row = plugin_index.EntryPointRow("recorder", "somewhere:plugin", "x", "1")
    monkeypatch.setattr(plugin_index, "table", lambda env=None: {"hpcjobs": [], "pydantic": [row]})
    assert not pydantic_plugins.skip_lookup(no_loader)
    assert LOADER not in sys.modules


def test_another_pydantic_major_keeps_pydantics_lookup(no_loader: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pydantic.version, "VERSION", "3.0.0")
    assert not pydantic_plugins.skip_lookup(no_loader)
    assert LOADER not in sys.modules


def test_a_loader_already_imported_is_left_alone(no_loader: dict[str, str]) -> None:
    import pydantic.plugin._loader as real

    assert not pydantic_plugins.skip_lookup(no_loader)
    assert sys.modules[LOADER] is real


def test_with_the_cache_off_pydantic_looks_up_itself(no_loader: dict[str, str]) -> None:
    assert not pydantic_plugins.skip_lookup({**no_loader, "HPCJOBS_NO_SITE_CACHE": "1"})
    assert LOADER not in sys.modules


def test_a_loader_not_where_pydantic_2_keeps_it_keeps_pydantics_lookup(no_loader: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert not pydantic_plugins.skip_lookup(no_loader)
    assert LOADER not in sys.modules
