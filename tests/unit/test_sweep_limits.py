"""How many Slurm calls a sweep submission makes, and the per-configuration-key cache of
MaxArraySize / MaxJobCount (hpcjobs.sweep.limitcache)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hpcjobs.errors import LimitExceeded
from hpcjobs.runner import Completed, RecordingRunner, SubprocessRunner
from hpcjobs.sweep.limitcache import asks_this_host, cached_config_limits
from tests.unit import test_sweep as _sweep
from tests.unit.test_sweep import SITE, FakeSlurm, _job

sif = _sweep.sif  # the fixture: the dev image path stats as a file

CONF = "ClusterName=lab\nMaxArraySize=1001\nMaxJobCount=10000\n"


class Fetch:
    def __init__(self, value: tuple[int, int, bool] = (1001, 10000, False)) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> tuple[int, int, bool]:
        self.calls += 1
        return self.value


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    conf = tmp_path / "etc" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text(CONF)
    return {"SLURM_CONF": str(conf), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_limits_are_asked_once_per_configuration_key(env: dict[str, str]) -> None:
    fetch = Fetch()
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)
    assert fetch.calls == 1
    kept = Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "limits" / "lab.json"
    assert json.loads(kept.read_text())["max_job_count"] == 10000
    Path(env["SLURM_CONF"]).write_text(CONF.replace("10000", "20000"))  # the admin changed slurm.conf
    fetch.value = (1001, 20000, False)
    assert cached_config_limits(fetch, None, env) == (1001, 20000, False)
    assert fetch.calls == 2
    assert cached_config_limits(fetch, SubprocessRunner(), env) == (1001, 20000, False)
    assert fetch.calls == 2


def test_kept_limits_are_not_trusted_when_others_could_write_them(env: dict[str, str]) -> None:
    fetch = Fetch()
    cached_config_limits(fetch, None, env)
    kept = Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "limits" / "lab.json"
    kept.write_text(kept.read_text().replace("10000", "99999"))
    os.chmod(kept, 0o666)
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)  # asked again, not the planted value
    assert fetch.calls == 2
    kept.write_text("{not json")
    os.chmod(kept, 0o644)
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)
    assert fetch.calls == 3


def test_a_runner_that_answers_itself_never_reads_or_writes_kept_limits(env: dict[str, str]) -> None:
    fake = RecordingRunner(answer=lambda c: Completed(c.argv, 0, "", ""))
    assert not asks_this_host(fake)
    assert asks_this_host(RecordingRunner())  # records, but every call goes to this host's Slurm
    assert not asks_this_host(RecordingRunner(inner=fake))
    fetch = Fetch((4, 100, False))
    for _ in range(2):
        assert cached_config_limits(fetch, fake, env) == (4, 100, False)
    assert fetch.calls == 2
    assert not (Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "limits").exists()


def test_slurm_calls_per_sweep_submission(tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """One limits query, one job-record count, then one sbatch per array and nothing else; the
    count is made before the first sbatch."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = FakeSlurm()
    _job().map([[f"p{i}"] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    programs = fake.runner.programs()
    assert sorted(programs) == ["sbatch", "sbatch", "sbatch", "scontrol", "squeue"]
    assert programs[-3:] == ["sbatch", "sbatch", "sbatch"]  # nothing between the arrays
    assert not (tmp_path / "cache" / "hpcjobs" / "limits").exists()  # a fake's answers are never kept


def test_not_now_refusal_comes_before_any_file_or_sbatch(tmp_path: Path, sif: None) -> None:
    fake = FakeSlurm()
    fake.records_now = 25  # 50 job records: 50 more would reach MaxJobCount = 100
    with pytest.raises(LimitExceeded, match="not now: the controller holds 50 jobs"):
        _job().map([[str(i)] for i in range(50)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert "sbatch" not in fake.runner.programs()
    assert not (tmp_path / "hpcjobs-sweeps").exists()
