"""The per-user entry-point table (hpcjobs.plugin_index): importlib.metadata's answer, refreshed when
a distribution is installed, removed or its entry points change, and never trusted from a file
others could write. A warm CLI call reads no package metadata for hpcjobs' own plugins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpcjobs import plugin_index

DISTS = Path(__file__).resolve().parents[1] / "plugin_dists"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}


def cached_files(env: dict[str, str]) -> list[Path]:
    folder = Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "entry-points"
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_a_hit_answers_as_importlib_metadata_without_asking_it(env: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = plugin_index.entry_points("hpcjobs", env)
    assert first == plugin_index.scan("hpcjobs")
    assert {"apptainer", "singularity", "srun", "mpirun"} <= {r.name for r in first}
    assert len(cached_files(env)) == 1

    def no_scan(groups: object) -> dict[str, list[plugin_index.EntryPointRow]]:
        raise AssertionError("a warm table must not read package metadata")

    monkeypatch.setattr(plugin_index, "scan_groups", no_scan)
    assert plugin_index.entry_points("hpcjobs", env) == first


def test_installing_a_distribution_refreshes_the_table(env: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    before = {r.name for r in plugin_index.entry_points("hpcjobs", env)}
    monkeypatch.syspath_prepend(str(DISTS))
    after = plugin_index.entry_points("hpcjobs", env)
    assert {r.name for r in after} - before == {"broken", "future", "test-wrappers"}
    broken = next(r for r in after if r.name == "broken")
    assert (broken.dist, broken.version) == ("hpcjobs-test-broken", "0.1")
    assert len(cached_files(env)) == 2


def test_editing_entry_points_in_place_refreshes_the_table(env: dict[str, str], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    site = tmp_path / "site"
    shutil.copytree(DISTS, site)
    monkeypatch.syspath_prepend(str(site))
    eps = site / "hpcjobs_test_wrappers-1.3.dist-info" / "entry_points.txt"
    assert "test-wrappers" in {r.name for r in plugin_index.entry_points("hpcjobs", env)}
    eps.write_text(eps.read_text().replace("test-wrappers =", "renamed-wrappers ="))
    os.utime(eps, ns=(1, 1))  # even an mtime set back: the size changed
    names = {r.name for r in plugin_index.entry_points("hpcjobs", env)}
    assert "renamed-wrappers" in names and "test-wrappers" not in names


def test_a_cache_file_others_can_write_is_ignored(env: dict[str, str]) -> None:
    real = plugin_index.entry_points("hpcjobs", env)
    (path,) = cached_files(env)
    path.write_text(f"{plugin_index._FORMAT}\nhpcjobs\tapptainer\tos:system\tevil\t6.6.6\n")
    path.chmod(0o666)
    assert plugin_index.entry_points("hpcjobs", env) == real


def test_a_truncated_cache_file_is_a_miss(env: dict[str, str]) -> None:
    real = plugin_index.entry_points("hpcjobs", env)
    (path,) = cached_files(env)
    path.write_text(path.read_text()[:-5])
    assert plugin_index.entry_points("hpcjobs", env) == real


def test_load_follows_the_entry_point_syntax() -> None:
    assert plugin_index.EntryPointRow("x", "os.path", None, None).load() is os.path
    assert plugin_index.EntryPointRow("x", "os.path : join [extra]", None, None).load() is os.path.join


PROBE = r"""
import importlib.metadata as md, json, sys
asked = []
real = md.entry_points
def counting(**kw):
    asked.append(kw.get("group"))
    return real(**kw)
md.entry_points = counting
from hpcjobs.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps([asked, sorted(sys.modules)]))
"""


def test_a_warm_render_reads_no_package_metadata(env: dict[str, str], tmp_path: Path) -> None:
    """The site cache key and the plugin registry both take the table, and pydantic's own plugin
    lookup is skipped (no pydantic plugin installed; tests/unit/test_pydantic_plugins.py); a cold
    call reads the metadata once for both groups."""
    job = tmp_path / "job.yaml"
    job.write_text("image: /i/x.sif\ncommand: [x]\n")
    site = tmp_path / "site.yaml"
    site.write_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    child_env = {**os.environ, **env}
    child_env.pop("HPCJOBS_NO_SITE_CACHE", None)
    argv = [sys.executable, "-c", PROBE, "render", "--site", str(site), str(job)]
    cold = subprocess.run(argv, capture_output=True, text=True, env=child_env, cwd=ROOT, check=True)
    warm = subprocess.run(argv, capture_output=True, text=True, env=child_env, cwd=ROOT, check=True)
    assert "exec apptainer run" in warm.stdout
    assert json.loads(cold.stdout.splitlines()[-1])[0] == [None]  # every group in one pass
    asked, modules = json.loads(warm.stdout.splitlines()[-1])
    assert asked == []
    assert "hpcjobs.plugin_index" in modules


def test_folders_without_distributions_do_not_change_the_key(tmp_path: Path) -> None:
    """`python -m hpcjobs` puts the working directory on sys.path: each new one must not be a miss."""
    base = [p for p in sys.path if p]
    (tmp_path / "a").mkdir()
    assert plugin_index.metadata_key([str(tmp_path / "a"), *base]) == plugin_index.metadata_key(base)
    assert plugin_index.metadata_key([str(DISTS), *base]) != plugin_index.metadata_key(base)


def test_a_held_table_is_read_once_until_released(env: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A CLI call holds the table (one key computed, not three); released, an install is seen again."""
    plugin_index.entry_points("hpcjobs", env)  # warm
    keys: list[str] = []
    real_key = plugin_index.metadata_key
    monkeypatch.setattr(plugin_index, "metadata_key", lambda entries: keys.append("k") or real_key(entries))
    plugin_index.hold()
    try:
        before = {r.name for r in plugin_index.entry_points("hpcjobs", env)}
        assert plugin_index.entry_points("pydantic", env) == []
        assert {r.name for r in plugin_index.entry_points("hpcjobs", env)} == before
        assert keys == ["k"]
    finally:
        plugin_index.release()
    monkeypatch.syspath_prepend(str(DISTS))
    assert "broken" in {r.name for r in plugin_index.entry_points("hpcjobs", env)}
    assert keys == ["k", "k"]


def test_other_groups_are_asked_directly(env: dict[str, str]) -> None:
    assert plugin_index.entry_points("console_scripts", env) == plugin_index.scan("console_scripts")
    assert "hpcjobs" in {r.name for r in plugin_index.scan("console_scripts")}
