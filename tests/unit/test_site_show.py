"""``hpcjobs site show``: the effective settings per partition after layering, with their sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcjobs.cli_site import site
from hpcjobs.config.loader import load_site_text
from hpcjobs.site.show import effective_settings

SITE_YAML = """\
name: layered
default_partition: cpu
gpu_partition: gpu
defaults:
  time_min: 30
  binds: ["/tmp", "/data:/data:ro"]
  env: {SITE_VAR: site, SHARED: from-site}
  sbatch: [--mail-type=FAIL]
  mpi: {default: pmix, env: {PMIX_MCA_gds: hash}}
  limits: {max_nodes: 4, max_time_min: 600}
partitions:
  cpu:
    limits: {max_gpus_per_node: 0}
  gpu:
    description: GPU nodes
    time_min: 60
    binds: ["/scratch/gpu:/data:rw"]
    env: {SHARED: from-partition}
    sbatch: [--exclusive]
    runtime: {flags: [--writable-tmpfs], cleanenv: true}
    gpu: {flag: nv, request: gres, type: a100}
    limits: {max_gpus_per_node: 4, max_nodes: 2}
"""


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML)
    return path


def settings(partition: str) -> dict[str, tuple[object, str]]:
    cfg = load_site_text(SITE_YAML, "site.yaml")
    out: dict[str, tuple[object, str]] = {}
    for s in effective_settings(cfg, partition):
        key = s.key if s.key not in ("binds", "sbatch", "runtime.flags") else f"{s.key}[{s.value}]"
        out[key] = (s.value, s.source)
    return out


def test_partition_over_site_with_sources() -> None:
    gpu = settings("gpu")
    assert gpu["time_min"] == (60, "partition gpu")
    assert gpu["limits.max_nodes"] == (2, "partition gpu")
    assert gpu["limits.max_time_min"] == (600, "site defaults")
    assert gpu["limits.max_gpus_per_node"] == (4, "partition gpu")
    assert gpu["gpu.request"] == ("gres", "partition gpu")
    assert gpu["gpu.type"] == ("a100", "partition gpu")
    assert gpu["runtime.name"] == ("apptainer", "built-in default")
    assert gpu["runtime.cleanenv"] == (True, "partition gpu")
    assert gpu["mpi.default"] == ("pmix", "site defaults")
    assert gpu["mpi.env.PMIX_MCA_gds"] == ("hash", "site defaults")
    assert gpu["env.SITE_VAR"] == ("site", "site defaults")
    assert gpu["env.SHARED"] == ("from-partition", "partition gpu")  # maps: the partition's value wins
    # lists add up; a partition bind to the same destination replaces the site's
    assert gpu["binds[/tmp:/tmp:rw]"] == ("/tmp:/tmp:rw", "site defaults")
    assert gpu["binds[/scratch/gpu:/data:rw]"] == ("/scratch/gpu:/data:rw", "partition gpu")
    assert "binds[/data:/data:ro]" not in gpu
    assert gpu["sbatch[--mail-type=FAIL]"][1] == "site defaults"
    assert gpu["sbatch[--exclusive]"][1] == "partition gpu"
    assert gpu["runtime.flags[--writable-tmpfs]"][1] == "partition gpu"
    assert gpu["description"] == ("GPU nodes", "partition gpu")


def test_unset_settings_say_who_decides() -> None:
    cpu = settings("cpu")
    assert cpu["mem_gb"] == (None, "not set: Slurm's default")
    assert cpu["limits.max_ntasks"] == (None, "not set: no limit")
    assert cpu["gpu.flag"] == (None, "not used: no GPUs (limits.max_gpus_per_node = 0)")
    assert cpu["time_min"] == (30, "site defaults")


def test_show_text_all_partitions(site_file: Path) -> None:
    result = CliRunner().invoke(site, ["show", "--site", str(site_file)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"site layered (from {site_file})\n")
    assert "\npartition cpu (default)\n" in out and "\npartition gpu\n" in out
    assert out.index("partition cpu") < out.index("partition gpu")  # the default first
    cpu_part, gpu_part = out.split("\npartition gpu\n")
    shared = [ln.split() for ln in (cpu_part + "\n" + gpu_part).splitlines() if ln.strip().startswith("env.SHARED")]
    assert shared == [
        ["env.SHARED", "from-site", "<-", "site", "defaults"],
        ["env.SHARED", "from-partition", "<-", "partition", "gpu"],
    ]


def test_show_json_one_partition(site_file: Path) -> None:
    result = CliRunner().invoke(site, ["show", "--site", str(site_file), "--partition", "gpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["site"] == "layered" and data["file"] == str(site_file)
    assert list(data["partitions"]) == ["gpu"]
    rows = {(r["key"], r["source"]) for r in data["partitions"]["gpu"]}
    assert ("gpu.type", "partition gpu") in rows and ("mpi.default", "site defaults") in rows
    site_wide = {r["key"]: r for r in data["site_wide"]}
    assert site_wide["gpu_partition"]["value"] == "gpu"


def test_show_uses_global_site_option(site_file: Path) -> None:
    result = CliRunner().invoke(site, ["show", "-p", "cpu"], obj={"site_path": str(site_file)})
    assert result.exit_code == 0 and "partition cpu (default)" in result.stdout


def test_show_uses_hpcjobs_site_env(site_file: Path) -> None:
    result = CliRunner().invoke(site, ["show", "-p", "cpu"], env={"HPCJOBS_SITE": str(site_file)})
    assert result.exit_code == 0 and f"(from {site_file})" in result.stdout


def test_show_errors_are_one_line(site_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(site, ["show", "--site", str(site_file), "-p", "nope"])
    assert result.exit_code == 2
    assert result.stderr == "hpcjobs: error: partition 'nope' is not defined by site 'layered' (have: cpu, gpu)\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndefault_partition: a\npartitions: {b: {}}\n")
    result = CliRunner().invoke(site, ["show", "--site", str(bad)])
    assert result.exit_code == 2
    assert result.stderr == f"hpcjobs: error: {bad}: default_partition: 'a' is not a partition (have: b)\n"
    result = CliRunner().invoke(site, ["show", "--site", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "site config not found" in result.stderr


@pytest.mark.parametrize("name", ["dev-cluster", "generic-cpu-gpu", "a100-pmix"])
def test_show_every_published_config(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "site-configs" / f"{name}.yaml"
    result = CliRunner().invoke(site, ["show", "--site", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["partitions"]
