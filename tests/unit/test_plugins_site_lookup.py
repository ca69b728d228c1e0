"""Plugins (built-ins registered like third-party ones, failures named), runtimes, site lookup order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcjobs import plugins
from hpcjobs.config import find_site_file, load_site_text
from hpcjobs.errors import ConfigError
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

SITE = """
name: t
default_partition: cpu
partitions:
  cpu: {runtime: {name: singularity}}
  apt: {runtime: {name: apptainer, binary: /opt/apptainer/bin/apptainer, flags: [--writable-tmpfs]}}
  odd: {runtime: {name: charliecloud}}
"""


def test_builtins_are_registered_through_the_plugin_manager() -> None:
    assert {"apptainer", "singularity"} <= set(plugins.runtimes())
    assert {ln.name for ln in plugins.launchers()} >= {"srun", "mpirun"}


def test_singularity_runtime_uses_its_binary_and_env_prefix() -> None:
    site = load_site_text(SITE)
    script = render(resolve(JobSpec(image="/i/x.sif", env={"K": "v"}, command=["a"]), site))
    assert "export SINGULARITYENV_K=v" in script
    assert script.splitlines()[-1] == "exec singularity run --no-eval /i/x.sif a"


def test_runtime_binary_and_flags_from_partition() -> None:
    site = load_site_text(SITE)
    last = render(resolve(JobSpec(image="/i/x.sif", partition="apt"), site)).splitlines()[-1]
    assert last == "exec /opt/apptainer/bin/apptainer run --no-eval --writable-tmpfs /i/x.sif"


def test_unknown_runtime_lists_available() -> None:
    site = load_site_text(SITE)
    with pytest.raises(ConfigError, match=r"charliecloud.*apptainer, singularity"):
        render(resolve(JobSpec(image="/i/x.sif", partition="odd"), site))


def test_failing_plugin_is_named_only_when_asked_for() -> None:
    class Broken:
        @plugins.hookimpl
        def hpcjobs_runtimes(self) -> Any:
            raise RuntimeError("boom")

    pm = plugins.plugin_manager()
    pm.register(Broken(), name="broken-plugin")
    try:
        # the built-ins still answer: a broken plugin breaks nothing else
        assert {"apptainer", "singularity"} <= set(plugins.runtimes())
        site = load_site_text(SITE)
        assert render(resolve(JobSpec(image="/i/x.sif", partition="apt"), site)).startswith("#!/bin/bash")
        with pytest.raises(ConfigError, match=r"'broken-plugin'.* hpcjobs_runtimes raised RuntimeError: boom"):
            plugins.get_runtime("podman")
        assert [f.name for f in plugins.failures()] == ["broken-plugin"]
    finally:
        pm.unregister(name="broken-plugin")
        plugins._reset()


def test_site_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, from_env = tmp_path / "explicit.yaml", tmp_path / "env.yaml"
    explicit.write_text("x")
    from_env.write_text("x")
    home = tmp_path / "home"
    user = home / ".config" / "hpcjobs" / "site.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("x")
    monkeypatch.setenv("HOME", str(home))
    env = {"HPCJOBS_SITE": str(from_env)}
    assert find_site_file(explicit, env) == explicit
    assert find_site_file(None, env) == from_env
    assert find_site_file(None, {}) == user
    with pytest.raises(ConfigError, match="from \\$HPCJOBS_SITE"):
        find_site_file(None, {"HPCJOBS_SITE": str(tmp_path / "missing.yaml")})
    with pytest.raises(ConfigError, match="from --site"):
        find_site_file(tmp_path / "missing.yaml", env)
