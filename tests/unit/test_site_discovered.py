"""The discovered default site config (hpcjobs.config.discovered) through a fake Slurm at the runner
seam: which key says "ask again", when the cached file is reused, and that a published config wins.
tests/cluster/test_first_contact_cluster.py runs the same against the live cluster, as root and as
the test user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcjobs.cli import main_group
from hpcjobs.config.discovered import KEY_PREFIX, MAX_AGE_S, config_key, discovered_site
from hpcjobs.config.loader import DISCOVERED, find_site_file, load_site_source
from hpcjobs.config.site import Policy
from hpcjobs.config.sources import find_site
from hpcjobs.errors import ConfigError, SchedulerError
from hpcjobs.runner import Completed
from tests.unit.test_site_discover import (
    A100_NODES,
    A100_PARTITIONS,
    DEV_CONFIG,
    DEV_MPI,
    DEV_NODES,
    DEV_PARTITIONS,
    FakeSlurm,
    ok,
)

SLURM_CONF = "ClusterName=hpcjobs-dev\nSlurmctldHost=vm\nPartitionName=cpu Nodes=vm Default=YES\n"


def fake(partitions: str = DEV_PARTITIONS, nodes: str = DEV_NODES, config: str = DEV_CONFIG) -> FakeSlurm:
    return FakeSlurm(
        {
            "scontrol -o show partition": ok(partitions),
            "scontrol -o show node": ok(nodes),
            "scontrol show config": ok(config),
            "srun --mpi=list": ok(DEV_MPI),
        }
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean user: HOME without a site config, a private cache, slurm.conf in a folder of its own."""
    home = tmp_path / "home"
    home.mkdir()
    conf_dir = tmp_path / "etc-slurm"
    conf_dir.mkdir()
    (conf_dir / "slurm.conf").write_text(SLURM_CONF)
    (conf_dir / "gres.conf").write_text("Name=gpu File=/dev/fakegpu[0-1]\n")
    return {"HOME": str(home), "SLURM_CONF": str(conf_dir / "slurm.conf")}


def discover_calls(runner: FakeSlurm) -> int:
    return runner.argvs().count(("scontrol", "-o", "show", "partition"))


# --- the configuration key ------------------------------------------------------------------------


def test_key_from_slurm_conf_changes_with_slurm_conf_and_gres_conf(env: dict[str, str]) -> None:
    conf = Path(env["SLURM_CONF"])
    first = config_key(fake(), env)
    assert first.cluster == "hpcjobs-dev" and first.basis == str(conf)
    assert config_key(fake(), env) == first  # stable: nothing changed
    conf.write_text(SLURM_CONF + "PartitionName=gpu Nodes=vm\n")
    second = config_key(fake(), env)
    assert second.digest != first.digest
    (conf.parent / "gres.conf").write_text("Name=gpu File=/dev/fakegpu[0-3]\n")
    assert config_key(fake(), env).digest != second.digest


def test_key_from_slurm_conf_asks_nobody(env: dict[str, str]) -> None:
    runner = fake()
    config_key(runner, env)
    assert runner.calls == []  # reading two small files is the cheap path


def test_key_from_scontrol_show_config_where_slurm_conf_is_unreadable(env: dict[str, str], tmp_path: Path) -> None:
    configless = {**env, "SLURM_CONF": str(tmp_path / "no-such" / "slurm.conf")}
    runner = fake()
    key = config_key(runner, configless)
    assert runner.argvs() == [("scontrol", "show", "config")]
    assert key.cluster == "hpcjobs-dev" and key.basis == "scontrol show config"
    # a recorded variant (another partition layout → another SelectType and config time) is another key
    variant = DEV_CONFIG.replace("select/cons_tres", "select/linear").replace("08:40:00", "09:12:00")
    assert config_key(fake(config=variant), configless).digest != key.digest
    assert config_key(fake(), configless).digest == key.digest


def test_discovery_failure_says_what_to_do(env: dict[str, str]) -> None:
    down = Completed(("scontrol",), 1, "", "Unable to contact slurm controller")
    runner = FakeSlurm({"scontrol -o show partition": down})
    with pytest.raises(ConfigError, match=r"no site config \(pass --site PATH.*from the cluster failed.*Unable"):
        discovered_site(runner, env)


def test_key_without_slurm_is_one_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    configless = {**env, "SLURM_CONF": str(tmp_path / "nope")}
    runner = FakeSlurm({"scontrol show config": Completed(("scontrol",), 1, "", "Unable to contact slurm controller")})
    with pytest.raises(SchedulerError, match=r"no site config, and Slurm cannot be asked.*Unable to contact"):
        config_key(runner, configless)


def test_key_without_scontrol_is_one_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    from hpcjobs.errors import RunnerError

    configless = {**env, "SLURM_CONF": str(tmp_path / "nope")}
    runner = FakeSlurm({"scontrol show config": RunnerError("scontrol: command not found")})
    with pytest.raises(SchedulerError, match=r"Slurm cannot be asked.*command not found"):
        config_key(runner, configless)


def test_cluster_name_is_a_safe_file_name(env: dict[str, str]) -> None:
    Path(env["SLURM_CONF"]).write_text("clustername = ../../etc/passwd x\n")
    assert "/" not in config_key(fake(), env).cluster


# --- the cached file ------------------------------------------------------------------------------


def test_first_use_discovers_and_caches_then_reuses(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    runner = fake()
    first = discovered_site(runner, env)
    assert first.rediscovered and discover_calls(runner) == 1
    assert first.path == Path(env["HOME"]) / ".cache" / "hpcjobs" / "discovered" / "hpcjobs-dev.yaml"
    text = first.path.read_text()
    assert text.startswith(KEY_PREFIX + first.key.digest + "\n")
    assert [r.getMessage() for r in caplog.records if "no site config is published" in r.getMessage()]
    caplog.clear()
    second = discovered_site(runner, env)
    assert not second.rediscovered and discover_calls(runner) == 1  # not asked again
    assert first.path.read_text() == text
    assert not caplog.records  # said once, when it was discovered


def test_changed_slurm_conf_means_discover_again(env: dict[str, str]) -> None:
    runner = fake()
    first = discovered_site(runner, env)
    assert "a100:" not in first.path.read_text()
    Path(env["SLURM_CONF"]).write_text(SLURM_CONF + "PartitionName=a100 Nodes=g[01-03]\n")
    again_runner = fake(A100_PARTITIONS, A100_NODES)  # what Slurm reports after the change
    again = discovered_site(again_runner, env)
    assert again.rediscovered and discover_calls(again_runner) == 1
    assert again.key.digest != first.key.digest
    text = again.path.read_text()
    assert text.startswith(KEY_PREFIX + again.key.digest)
    assert "\n  a100:\n" in text and "\n  cpu:\n" not in text  # the new partitions, not the old ones


def test_changed_scontrol_show_config_means_discover_again(env: dict[str, str], tmp_path: Path) -> None:
    configless = {**env, "SLURM_CONF": str(tmp_path / "none" / "slurm.conf")}
    discovered_site(fake(), configless)
    runner = fake(config=DEV_CONFIG.replace("08:40:00", "10:00:00"))
    assert discovered_site(runner, configless).rediscovered


def test_a_cached_key_that_does_not_match_is_rebuilt(env: dict[str, str]) -> None:
    runner = fake()
    first = discovered_site(runner, env)
    lines = first.path.read_text().splitlines(keepends=True)
    first.path.write_text(KEY_PREFIX + "0" * 64 + "\n" + "".join(lines[1:]))
    assert discovered_site(runner, env).rediscovered
    assert first.path.read_text().startswith(KEY_PREFIX + first.key.digest)


def test_an_old_cache_is_rebuilt(env: dict[str, str]) -> None:
    runner = fake()
    first = discovered_site(runner, env)
    mtime = first.path.stat().st_mtime
    assert not discovered_site(runner, env, now_s=mtime + MAX_AGE_S - 60).rediscovered
    assert discovered_site(runner, env, now_s=mtime + MAX_AGE_S + 60).rediscovered


@pytest.mark.parametrize("how", ["group-writable file", "group-writable folder", "symlink", "other owner"])
def test_an_untrusted_cache_is_not_used(env: dict[str, str], tmp_path: Path, how: str) -> None:
    runner = fake()
    path = discovered_site(runner, env).path
    if how == "group-writable file":
        path.chmod(0o664)
    elif how == "group-writable folder":
        path.parent.chmod(0o770)
    elif how == "symlink":
        planted = tmp_path / "planted.yaml"
        planted.write_text(path.read_text())
        path.unlink()
        path.symlink_to(planted)
    else:
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root (the suite runs as root)")
        os.chown(path, 65534, 65534)
    if how == "group-writable folder":  # nothing is read from it or written to it: asked every time
        found = discovered_site(runner, env)
        assert found.rediscovered and found.text is not None and "not cached" in found.origin
        assert discovered_site(runner, env).rediscovered and discover_calls(runner) == 3
        site = load_site_source(find_site(None, env, runner), env)
        assert site.name == "hpcjobs-dev" and site.origin and "not cached" in site.origin
    else:
        assert discovered_site(runner, env).rediscovered
        assert not path.is_symlink() and path.stat().st_uid == os.geteuid()


# --- the profile ----------------------------------------------------------------------------------


def test_discovered_profile_guesses_no_policy_and_gpus_only_where_nodes_have_them(env: dict[str, str]) -> None:
    Path(env["SLURM_CONF"]).write_text("ClusterName=a100-site\n")
    runner = fake(A100_PARTITIONS, A100_NODES, DEV_CONFIG.replace("hpcjobs-dev", "a100-site"))
    src = find_site(None, env, runner)
    site = load_site_source(src, env)
    assert src.how == DISCOVERED and site.origin and "a100-site" in site.origin
    assert site.policy == Policy()  # no deny lists, no locked fields, nothing required
    assert site.defaults.binds == [] and site.defaults.account is None
    assert site.partitions["a100"].gpu.flag == "nv" and site.partitions["a100"].limits.max_gpus_per_node == 8
    assert site.partitions["login-cpu"].limits.max_gpus_per_node == 0
    assert "gpu" not in site.partitions["login-cpu"].model_fields_set


# --- lookup order: a published config always wins ------------------------------------------------


def test_published_configs_win_over_discovery(env: dict[str, str], tmp_path: Path) -> None:
    runner = fake()
    published = tmp_path / "site.yaml"
    published.write_text("name: pub\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    user = Path(env["HOME"]) / ".config" / "hpcjobs" / "site.yaml"
    assert find_site(str(published), env, runner).how == "--site"
    assert find_site(None, {**env, "HPCJOBS_SITE": str(published)}, runner).how == "$HPCJOBS_SITE"
    user.parent.mkdir(parents=True)
    user.write_text(published.read_text())
    assert find_site(None, env, runner).path == user
    assert runner.calls == []  # nothing was discovered
    user.unlink()
    assert find_site(None, env, runner).how == DISCOVERED
    with pytest.raises(ConfigError, match="no site config"):
        find_site_file(None, env)  # the published-only lookup still says so


def test_cli_render_explain_and_site_show_say_discovered(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import hpcjobs.runner

    runner = fake()
    monkeypatch.setattr(hpcjobs.runner, "default_runner", lambda: runner)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HPCJOBS_SITE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr("hpcjobs.config.loader.SYSTEM_PATH", str(tmp_path / "no-etc-site.yaml"))
    job = tmp_path / "job.yaml"
    job.write_text("image: /x/tiny.sif\ncommand: [hello]\ngpus: 1\n")
    cached = Path(env["HOME"]) / ".cache" / "hpcjobs" / "discovered" / "hpcjobs-dev.yaml"

    r = CliRunner().invoke(main_group, ["render", "--explain", "--image-as-written", str(job)])
    assert r.exit_code == 0, r.output
    assert f"# site config: discovered from the cluster hpcjobs-dev, cached in {cached}\n" in r.stdout
    assert "#SBATCH --partition=gpu" in r.stdout and "--nv" in r.stdout

    r = CliRunner().invoke(main_group, ["site", "show", "--json"])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load(r.stdout)
    assert data["discovered"] is True and data["file"] == str(cached)
    r = CliRunner().invoke(main_group, ["site", "show"])
    assert r.stdout.startswith(f"site hpcjobs-dev (discovered from the cluster hpcjobs-dev, cached in {cached};")
    assert discover_calls(runner) == 1
