"""hpcjobs.directives: sbatch's own reading of #SBATCH lines (issue 8, items 1-4).

The model (sbatch_words) is checked here against cases read back by the real sbatch 22.05 on the
dev cluster; tests/cluster/test_directives_cluster.py runs the same properties against Slurm.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from hpcjobs.directives import (
    MANAGED_LONG,
    MANAGED_SHORT,
    checked_directive,
    option_problem,
    option_vars,
    quote_value,
    render_option,
    sbatch_env,
    sbatch_words,
    slurm_input_vars,
    uncarriable,
)
from hpcjobs.errors import ConfigError
from tests.strategies import directive_text

# (text after #SBATCH, the argv words sbatch 22.05.8 made of it), each verified with sbatch --hold
VERIFIED = [
    ('--job-name="a b\\\\"', ["--job-name=a b\\"]),
    ("--output=a\\b", ["--output=ab"]),
    ("--job-name=a\\", ["--job-name=a"]),
    ("--partition gpu", ["--partition", "gpu"]),
    ("--job-name=x --partition=gpu", ["--job-name=x", "--partition=gpu"]),
    ("--job-name=a\vb --partition=gpu", ["--job-name=a", "b", "--partition=gpu"]),
    ('--job-name="a\rb"', ["--job-name=a\rb"]),
    ("--job-name='sq \"x\" \\' y'", ["--job-name=sq \"x\" ' y"]),
    ("--exclusive hetjob --partition=gpu", ["--exclusive"]),
    ('--exclusive "" --partition=gpu', ["--exclusive"]),
    ('--output="x\\\\y#z \'q\' \\"dq\\""', ["--output=x\\y#z 'q' \"dq\""]),
    ("--time=5 # comment --partition=gpu", ["--time=5"]),
]


@pytest.mark.parametrize(("text", "words"), VERIFIED)
def test_model_matches_what_real_sbatch_read(text: str, words: list[str]) -> None:
    assert sbatch_words(text) == words


def test_unmatched_quote_and_leading_colon_are_errors_like_sbatch() -> None:
    with pytest.raises(ConfigError, match="unmatched"):
        sbatch_words('--job-name="x')
    with pytest.raises(ConfigError, match="':'"):
        sbatch_words(":x")


@settings(max_examples=400, deadline=None)
@given(directive_text)
def test_any_value_is_carried_exactly_or_refused(value: str) -> None:
    for option in ("--job-name", "--output"):
        try:
            text = checked_directive(option, value)
        except ConfigError:
            assert uncarriable(value) is not None
            continue
        assert sbatch_words(text) == [f"{option}={value}"]
        assert "\n" not in text


@settings(max_examples=400, deadline=None)
@given(directive_text)
def test_an_accepted_entry_is_one_unmanaged_option(entry: str) -> None:
    if option_problem(entry) is not None:
        return
    words = sbatch_words(render_option(entry))
    assert words == [entry]
    name = entry[2:].split("=", 1)[0] if entry.startswith("--") else None
    if name is not None:
        assert name and not any(full.startswith(name) for full in MANAGED_LONG)
    else:
        assert len(entry) == 2 and entry[1] not in MANAGED_SHORT


@pytest.mark.parametrize(
    "entry",
    ["--exclusive --partition gpu --account evil", "--exclusive\r--partition=gpu", "--exclusive\v-pgpu",
     "--part=gpu", "--parti=gpu", "--p=gpu", "--acc=x", "--ti=3", "--time=3", "-t3", "-t 3", "-pgpu", "-p",
     "-Hpgpu", "--gres=gpu:2", "--gpus-per-task=1", "--mem-per-cpu=1G", "--clusters=other", "-M", "--chdir=/",
     "--wait", "--wrap=x", "--", "-", "--=x", "--x y", "exclusive", "--comment=x", "--kill-on=yes", "--job=x"],
)  # fmt: skip
def test_bypasses_from_the_issue_are_refused(entry: str) -> None:
    assert option_problem(entry) is not None


@pytest.mark.parametrize("entry", ["--exclusive", "--constraint=a b#c", "--mail-type=END", "-H", "--nodelist=vm",
                                   "--cluster-constraint=x", "--deadline=now+1hour", "--export=NONE"])
def test_ordinary_entries_pass_and_render_as_one_word(entry: str) -> None:
    assert option_problem(entry) is None
    assert sbatch_words(render_option(entry)) == [entry]


def test_plain_values_are_written_as_before() -> None:
    # goldens: nothing changes for ordinary values
    assert quote_value("hpcjobs-%x-%j.out") == "hpcjobs-%x-%j.out"
    assert quote_value("my job #1") == '"my job #1"'
    assert checked_directive("--job-name", "tool") == "--job-name=tool"


def test_input_variables_cleared_for_sbatch_except_slurm_conf() -> None:
    environ = {"SBATCH_PARTITION": "gpu", "SBATCH_TIMELIMIT": "3", "SLURM_MPI_TYPE": "pmi2", "SRUN_EXPORT_ENV": "x",
               "SLURMD_DEBUG": "1", "SLURM_CONF": "/etc/slurm/slurm.conf", "PATH": "/bin", "SLURMX": "kept"}
    assert sbatch_env(environ) == dict.fromkeys(
        ["SBATCH_PARTITION", "SBATCH_TIMELIMIT", "SLURMD_DEBUG", "SLURM_MPI_TYPE", "SRUN_EXPORT_ENV"]
    )
    assert option_vars(slurm_input_vars(environ)) == ["SBATCH_PARTITION", "SBATCH_TIMELIMIT"]
