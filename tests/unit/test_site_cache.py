"""The per-user cache of validated site configs (hpcjobs.config.cache): a hit only for the same bytes,
and a corrupt, foreign or planted cache file is ignored, never trusted."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from hpcjobs.config import cache
from hpcjobs.config.loader import SiteSource, load_site_source
from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import ConfigError

SITE = "name: s1\ndefault_partition: cpu\npartitions:\n  cpu:\n    limits: {max_nodes: 2}\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}


def load(path: Path, env: dict[str, str]) -> SiteConfig:
    return load_site_source(SiteSource(path, "--site"), env)


def entries(env: dict[str, str]) -> list[Path]:
    folder = Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "site-validated"
    return sorted(folder.glob("*.pickle")) if folder.is_dir() else []


def spy_validation(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import hpcjobs.config.loader as loader

    seen: list[str] = []
    real = loader.validate_site

    def counting(data: object, source: str) -> SiteConfig:
        seen.append(source)
        return real(data, source)

    monkeypatch.setattr(loader, "validate_site", counting)
    return seen


def test_same_bytes_hit_changed_bytes_revalidate(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    validated = spy_validation(monkeypatch)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    first = load(site_file, env)
    assert len(validated) == 1 and len(entries(env)) == 1
    assert load(site_file, env) == first and len(validated) == 1  # a hit: not validated again
    site_file.write_text(SITE.replace("max_nodes: 2", "max_nodes: 3"))
    changed = load(site_file, env)
    assert len(validated) == 2 and changed.partitions["cpu"].limits.max_nodes == 3
    site_file.write_text(SITE.replace("max_nodes: 2", "max_nodes: 0"))
    with pytest.raises(ConfigError, match=r"partitions\.cpu\.limits\.max_nodes"):
        load(site_file, env)  # an invalid edit is an error, never an old cached model


def test_cache_file_is_private(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    load(tmp_path / "site.yaml", env)
    (entry,) = entries(env)
    assert entry.stat().st_mode & 0o077 == 0 and entry.parent.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "empty", "other object", "group-writable", "other owner", "symlink", "folder writable"],
)
def test_bad_cache_file_is_ignored_and_revalidated(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    good = load(site_file, env)
    (entry,) = entries(env)
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"hpcjobs-site-cache-1\n\x80\x05garbage")
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "other object":  # a valid pickle of something else (here: a dict claiming to be a site)
        entry.write_bytes(b"hpcjobs-site-cache-1\n" + pickle.dumps({"name": "evil"}))
    elif damage == "group-writable":
        entry.chmod(0o620)
    elif damage == "other owner":
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root (the suite runs as root)")
        os.chown(entry, 65534, 65534)
    elif damage == "symlink":
        planted = tmp_path / "planted.pickle"
        planted.write_bytes(data)
        entry.unlink()
        entry.symlink_to(planted)
    else:
        entry.parent.chmod(0o777)
    validated = spy_validation(monkeypatch)
    assert load(site_file, env) == good
    assert validated == [str(site_file)]  # validated again, the cache file not trusted


def test_untrusted_pickle_never_runs(tmp_path: Path, env: dict[str, str]) -> None:
    """A pickle planted by someone else would run code when loaded: the owner/mode check comes first."""
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    load(site_file, env)
    (entry,) = entries(env)
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.mkdir, (str(marker),))

    payload = b"hpcjobs-site-cache-1\n" + pickle.dumps(Boom())
    entry.write_bytes(payload)
    entry.chmod(0o666)  # writable by others: as if planted
    assert load(site_file, env).name == "s1"
    assert not marker.exists()
    entry.write_bytes(payload)  # the control: the user's own file is unpickled (the payload works) ...
    entry.chmod(0o600)
    assert load(site_file, env).name == "s1"  # ... and a non-SiteConfig result is still not used
    assert marker.exists()


def test_plugins_section_is_never_cached(tmp_path: Path, env: dict[str, str]) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE + "plugins: {}\n")
    load(site_file, env)
    assert len(entries(env)) == 1  # an empty section validates like none
    site_file.write_text(SITE + "plugins:\n  nosuch: {a: 1}\n")
    with pytest.raises(ConfigError, match="no installed plugin reads this section"):
        load(site_file, env)
    assert len(entries(env)) == 1


def test_disabled_by_environment(tmp_path: Path, env: dict[str, str]) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    load(site_file, {**env, cache.DISABLE_VAR: "1"})
    assert entries(env) == []


def test_unwritable_cache_is_skipped(tmp_path: Path, env: dict[str, str]) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    blocker = Path(env["XDG_CACHE_HOME"])
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the cache folder would go")
    assert load(site_file, env).name == "s1"


def test_key_covers_the_bytes_the_versions_and_the_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    import hpcjobs._version

    a = cache.site_key(b"x")
    assert cache.site_key(b"x") == a and cache.site_key(b"y") != a
    with monkeypatch.context() as m:
        m.setattr(hpcjobs._version, "__version__", "99.0")
        assert cache.site_key(b"x") != a
    assert cache.site_key(b"x") == a
    # another set of installed plugins (one more, or another version): another key
    with monkeypatch.context() as m:
        m.setattr(cache, "plugins_fingerprint", lambda: "profiler=acme.hpc:plugin@acme-hpc==1.0")
        assert cache.site_key(b"x") != a


def test_plugins_fingerprint_lists_the_installed_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="hpcjobs")}
    text = cache.plugins_fingerprint()
    assert "apptainer" in names  # the built-ins register through entry points too
    assert all(f"{n}=" in text for n in names)


def test_a_hit_builds_no_site_config_validators(tmp_path: Path, env: dict[str, str]) -> None:
    """What the cache is for (checked by what was built, not by timing): a fresh process that finds
    the validated config builds neither SiteConfig's nor Partition's validators to render a job."""
    import json
    import subprocess
    import sys

    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    probe = (
        "import json, sys\n"
        "from hpcjobs.config.loader import SiteSource, load_site_source\n"
        "from hpcjobs.config.site import Partition, SiteConfig\n"
        "from hpcjobs.jobfile import load_job_text\n"
        "from hpcjobs.render import render\n"
        "from hpcjobs.resolve import resolve\n"
        "site = load_site_source(SiteSource(__import__('pathlib').Path(sys.argv[1]), '--site'))\n"
        "script = render(resolve(load_job_text('image: /x.sif\\ncommand: [hi]\\n'), site))\n"
        "print(json.dumps([SiteConfig.__pydantic_complete__, Partition.__pydantic_complete__, 'hi' in script]))\n"
    )
    child_env = {**os.environ, **env}
    child_env.pop(cache.DISABLE_VAR, None)

    def built() -> list[bool]:
        out = subprocess.run([sys.executable, "-c", probe, str(site_file)], env=child_env, capture_output=True,
                             text=True, check=True).stdout
        result: list[bool] = json.loads(out)
        return result

    assert built() == [True, True, True]  # a miss validates (and fills the cache)
    assert built() == [False, False, True]  # a hit: nothing of the site config's models was built


def test_model_copy_with_update_works_out_partitions_anew() -> None:
    """effective() keeps its results in the instance; a copy with other settings must not reuse them."""
    from hpcjobs.config.loader import load_site_text

    site = load_site_text(
        "name: s\ndefault_partition: cpu\npartitions:\n  cpu:\n    time_min: 5\n", "<t>"
    )
    assert site.effective("cpu").time_min == 5
    changed = site.model_copy(update={"defaults": site.defaults.model_copy(update={"time_min": 7}),
                                      "partitions": {"cpu": site.partitions["cpu"].model_copy(update={"time_min": 9})}})
    assert changed.effective("cpu").time_min == 9
    assert site.effective("cpu").time_min == 5
    same = site.model_copy()
    assert same.effective("cpu") is site.effective("cpu")
