"""Issue 8 ("safe on a shared cluster"), the parts that need no cluster: what resolve refuses,
the Runner's env, sbatch's environment, binds with ':', job files and job ids.
The same findings are checked against real Slurm and Apptainer in tests/cluster/test_safety_cluster.py."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hpcjobs.config import load_site_text
from hpcjobs.config.loader import validate_model
from hpcjobs.errors import ConfigError, HpcjobsError, PolicyViolation, SchedulerError
from hpcjobs.models import Bind
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.runner import Call, Completed, RecordingRunner, SubprocessRunner
from hpcjobs.schedulers.base import check_job_ids
from hpcjobs.schedulers.slurm_cli import SlurmCli
from hpcjobs.spec import JobSpec

SITE = load_site_text(
    "name: t\ndefault_partition: cpu\ndefaults: {node_local_paths: [/scratch-local]}\n"
    "partitions: {cpu: {limits: {max_time_min: 60}}, gpu: {limits: {max_gpus_per_node: 2}}}\n"
    "policy: {deny_bind_sources: [/etc/munge], locked: [account]}\n",
    "site.yaml",
)


def r(**fields: object):  # type: ignore[no-untyped-def]
    # as a job file is read: validation problems are ConfigErrors naming the key
    return resolve(validate_model(JobSpec, {"image": "/i/x.sif", **fields}, "job.yaml"), SITE)


@pytest.mark.parametrize(
    "fields",
    [
        {"extra_sbatch": ["--exclusive --partition gpu --account evil"]},  # item 1
        {"extra_sbatch": ["--time=600"]},  # max_time_min through extra_sbatch
        {"extra_sbatch": ["--ti=600"]},  # an abbreviation sbatch accepts... and refuses as ambiguous
        {"extra_sbatch": ["--acc=evil"]},  # locked account
        {"extra_sbatch": ["--gpus-per-task=8"]},  # max_gpus_per_node another way
        {"extra_sbatch": ["--exclusive\r--partition=gpu"]},  # item 2
        {"output": "o.out\r--partition=gpu"},
        {"output": "o.out\v--partition=gpu"},
        {"output": "o.out\f--partition=gpu"},
        {"output": "a\\b"},  # item 4: Slurm would write 'ab'
        {"name": "a\x1bb"},
        {"env": {"A\n": "x"}},  # item 3
        {"array": "0-3\n"},
        {"dependency": "afterok:1\n"},
        {"partition": "cpu\n"},
    ],
)
def test_issue_cases_refused_before_submission(fields: dict[str, object]) -> None:
    with pytest.raises((ConfigError, PolicyViolation)):
        r(**fields)


def test_site_gpu_type_with_trailing_newline_refused() -> None:
    with pytest.raises(ConfigError, match="GPU type"):
        load_site_text("name: t\ndefault_partition: g\npartitions: {g: {gpu: {type: \"a100\\n\"}}}\n", "s.yaml")


def test_name_ending_in_backslash_and_quotes_are_carried() -> None:
    script = render(r(name='a b\\', output='o "1" #x.out'))
    assert '#SBATCH --job-name="a b\\\\"\n' in script
    assert '#SBATCH --output="o \\"1\\" #x.out"\n' in script


def test_node_local_paths_normalised_before_the_prefix_test() -> None:
    job = r(binds=["/scratch-local/../tmp:/t", "/scratch-local/run:/r"])
    assert job.unchecked_bind_sources == ("/scratch-local/run",)


def test_runner_env_none_removes_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCJOBS_T_GONE", "1")
    monkeypatch.setenv("HPCJOBS_T_KEPT", "2")
    out = SubprocessRunner()(["env"], env={"HPCJOBS_T_GONE": None, "HPCJOBS_T_NEW": "3"}).stdout.splitlines()
    assert "HPCJOBS_T_KEPT=2" in out and "HPCJOBS_T_NEW=3" in out
    assert not any(line.startswith("HPCJOBS_T_GONE=") for line in out)


def test_sbatch_runs_without_slurm_input_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for key, value in {"SBATCH_PARTITION": "gpu", "SBATCH_TIMELIMIT": "3", "SLURM_MPI_TYPE": "pmi2",
                       "SLURM_CONF": "/etc/slurm/slurm.conf"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)

    def answer(call: Call) -> Completed:
        assert call.argv[0] == "sbatch"
        return Completed(call.argv, 0, "42\n", "")

    runner = RecordingRunner(answer=answer)
    with caplog.at_level(logging.INFO, logger="hpcjobs"):
        assert SlurmCli(runner).submit("#!/bin/bash\ntrue\n", cwd=str(tmp_path)) == "42"
    env = runner.calls[0].env
    assert env is not None
    assert {k for k, v in env.items() if v is None} >= {"SBATCH_PARTITION", "SBATCH_TIMELIMIT", "SLURM_MPI_TYPE"}
    assert "SLURM_CONF" not in env
    warned = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert warned and "SBATCH_PARTITION" in warned[0].getMessage() and "SLURM_MPI_TYPE" not in warned[0].getMessage()


def test_explain_names_the_cleared_variables() -> None:
    text = render(r(), explain=True, environ={"SBATCH_PARTITION": "gpu", "HOME": "/root", "SLURM_CONF": "x"})
    assert "# Set here and cleared for sbatch: SBATCH_PARTITION.\n" in text
    assert "cleared for sbatch" not in render(r(), explain=True, environ={"HOME": "/root"})


def test_bind_with_colon_uses_mount_csv() -> None:
    assert Bind(src="/var:/x", dst="/y").runtime_args() == ["--mount", "type=bind,src=/var:/x,dst=/y"]
    assert Bind(src='/a"b:c', dst="/y", mode="ro").runtime_args() == ["--mount", 'type=bind,"src=/a""b:c",dst=/y,ro']
    assert Bind(src="/data", dst="/d", mode="ro").runtime_args() == ["--bind", "/data:/d:ro"]
    script = render(r(binds=[{"src": "/tmp/a:b", "dst": "/in"}]), explain=True)
    assert "--mount type=bind,src=/tmp/a:b,dst=/in" in script
    assert "#   --mount type=bind,src=/tmp/a:b,dst=/in" in script  # explained as a bind, not a plugin word


@pytest.mark.parametrize("jid", ["99999999999999999999", "4294967294", "0", "1_99999999999"])
def test_out_of_range_job_ids_refused(jid: str) -> None:
    with pytest.raises(SchedulerError, match="not a Slurm job id"):
        check_job_ids([jid])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpcjobs", *args], capture_output=True, text=True)


def test_status_and_wait_agree_on_a_malformed_id() -> None:
    status, wait = _cli("status", "99999999999999999999"), _cli("wait", "99999999999999999999")
    assert status.returncode == wait.returncode == 2
    assert status.stderr == wait.stderr and status.stderr.count("\n") == 1


def test_non_utf8_job_file_is_one_line_exit_2(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_bytes(b"image: /x.sif\nname: caf\xe9\n")
    res = _cli("render", str(job), "--site", str(Path(__file__).parents[2] / "site-configs" / "dev-cluster.yaml"))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("hpcjobs: error: ") and "not UTF-8" in res.stderr and res.stderr.count("\n") == 1


def test_hpcjobs_error_root() -> None:
    assert issubclass(PolicyViolation, HpcjobsError) and issubclass(ConfigError, HpcjobsError)


def test_every_directive_of_a_plan_is_checked_plugin_ones_too() -> None:
    from hpcjobs.plugin_api import Directive, LaunchPlan
    from hpcjobs.render import render_plan

    ok = LaunchPlan(directives=[Directive("--mail-user", 'a b"c\\'), Directive("--exclusive", None)])
    text = render_plan(ok)
    assert '#SBATCH --mail-user="a b\\"c\\\\"\n#SBATCH --exclusive\n' in text
    for bad in (Directive("-t", "5"), Directive("--x y", None), Directive("--mail-user", "a\rb"),
                Directive("--a=b", "c"), Directive("x", None)):  # fmt: skip
        with pytest.raises(ConfigError):
            render_plan(LaunchPlan(directives=[bad]))
