"""Where output goes (hpcjobs.outputs): the rule as --explain states it, and the checks before
submission. Where files really land is checked in tests/cluster/test_output_dirs_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcjobs.config import load_site
from hpcjobs.errors import ConfigError
from hpcjobs.models import Bind
from hpcjobs.outputs import bind_holding, check_job_dir, host_path, log_path, where_output_goes
from hpcjobs.render import output_notes, render
from hpcjobs.resolve import resolve
from hpcjobs.runtimes.apptainer import ApptainerRuntime
from hpcjobs.spec import JobSpec

SITE = load_site(Path(__file__).resolve().parents[1] / "golden" / "explain" / "site.yaml")
JD = "/home/u/a b $x"


def lines(job_dir: str | None = JD, **fields: object) -> list[str]:
    job = resolve(JobSpec.model_validate({"image": "/i.sif", **fields}), SITE)
    return output_notes(job, job_dir)


def test_log_path_relative_to_the_job_directory_patterns_kept() -> None:
    assert log_path("hpcjobs-%x-%j.out", "/w d") == "/w d/hpcjobs-%x-%j.out"
    assert log_path("/abs/%j.out", "/w") == "/abs/%j.out"
    assert log_path("x.out", "/") == "/x.out"


def test_innermost_bind_holds_the_path() -> None:
    binds = [Bind.model_validate("/scratch:/data"), Bind.model_validate("/big:/data/big:ro")]
    assert bind_holding("/data/big/x", binds) == binds[1]
    assert bind_holding("/data/bigger", binds) == binds[0]
    assert bind_holding("/data", binds) == binds[0]
    assert bind_holding("/dat", binds) is None
    assert host_path("/data/big/x/../y", binds[1], "/w") == "/big/y"
    assert host_path("/data", Bind.model_validate("rel:/data"), "/w d") == "/w d/rel"


def test_default_program_directory_is_the_job_directory() -> None:
    text = "\n".join(lines())
    assert f"job starts in: {JD}  <- the job directory (sbatch --chdir)" in text
    assert f"Slurm log (stdout and stderr): {JD}/hpcjobs-%x-%j.out  <- output: built-in default" in text
    assert f"program runs in: {JD}, the job directory, which apptainer mounts at its own path" in text


@pytest.mark.parametrize("flag", ["--contain", "--containall", "-c", "-C", "--no-mount=home,cwd", "-ec"])
def test_flags_that_keep_the_job_directory_out(flag: str) -> None:
    job = resolve(JobSpec(image="/i.sif", runtime_flags=[flag]), SITE)
    assert ApptainerRuntime().starts_in_job_dir(job) is False
    text = "\n".join(output_notes(job, JD))
    assert "the image's own working directory (apptainer does not mount the job directory" in text


@pytest.mark.parametrize("flag", ["--no-home", "--no-mount=home", "--cleanenv", "-e"])
def test_flags_that_keep_it(flag: str) -> None:
    assert ApptainerRuntime().starts_in_job_dir(resolve(JobSpec(image="/i.sif", runtime_flags=[flag]), SITE))


def test_a_runtime_that_does_not_say() -> None:
    job = resolve(JobSpec(image="/i.sif"), SITE)
    text = "\n".join(where_output_goes(job, JD, starts_in_job_dir=None))
    assert "the image's own working directory (apptainer does not start it in the job directory)" in text


def test_workdir_on_rw_ro_and_no_bind_and_in_the_job_directory() -> None:
    rw = "\n".join(lines(workdir="/data/run", binds=["/scratch/me:/data"]))
    assert "program runs in: /data/run inside the container  <- workdir: job spec" in rw
    assert "= host /scratch/me/run (bind /scratch/me:/data:rw <- job spec): files it writes" in rw
    ro = "\n".join(lines(workdir="/data", binds=["/scratch/me:/data:ro"]))
    assert "read-only, the program cannot write files there" in ro
    none = "\n".join(lines(workdir="/opt/app"))
    assert "on no bind of this job: files written there stay in the container and do not reach the host" in none
    inside = "\n".join(lines(workdir=f"{JD}/sub"))
    assert f"= host {JD}/sub, inside the job directory" in inside
    unknown = "\n".join(lines(None, workdir="/home/u/x"))
    assert "on no bind" in unknown and "<the directory hpcjobs submit runs in>" in unknown


def test_relative_workdir_refused() -> None:
    with pytest.raises(ValueError, match="workdir 'out' must be an absolute path inside the container"):
        JobSpec(image="/i.sif", workdir="out")


def test_explain_states_it_with_a_hostile_job_directory_on_one_comment_line_each() -> None:
    job = resolve(JobSpec(image="/i.sif"), SITE)
    text = render(job, explain=True, job_dir="/w/new\nline 'q'")
    assert "# Where output goes (user guide: 'Where output goes'):" in text
    assert "#   job starts in: /w/new\\nline 'q'  <- " in text
    assert "Where output goes" not in render(job)


def test_checks_before_submission() -> None:
    job = resolve(JobSpec(image="/i.sif", output="logs/%x-%j.out"), SITE)
    with pytest.raises(ConfigError, match=r"the log's directory /w/logs does not exist; Slurm creates none"):
        check_job_dir(job, "/w", lambda p: False)
    check_job_dir(job, "/w", lambda p: p == "/w/logs")
    patterned = resolve(JobSpec(image="/i.sif", output="%u/%j.out"), SITE)
    check_job_dir(patterned, "/w", lambda p: False)  # only known on the node
    for bad, what in (("/w/a\nb", "control character"), ("/w/%j", "contains '%'"), ("/w/a\\b", "contains '\\\\\\\\'")):
        with pytest.raises(ConfigError, match=what):
            check_job_dir(job, bad, lambda p: True)
    absolute = resolve(JobSpec(image="/i.sif", output="/logs/%j.out"), SITE)
    check_job_dir(absolute, "/w/%j", lambda p: True)  # the log does not go through the job directory


@given(name=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20))
def test_any_printable_job_directory_shows_as_written(name: str) -> None:
    job_dir = "/w/" + name.replace("/", "_")
    text = "\n".join(where_output_goes(resolve(JobSpec(image="/i.sif"), SITE), job_dir, starts_in_job_dir=True))
    assert f"job starts in: {job_dir}  <- " in text
