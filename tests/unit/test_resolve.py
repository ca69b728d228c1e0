"""resolve(): precedence, Docker entrypoint/command semantics, limits, binds, policy."""

from __future__ import annotations

import pytest

from hpcjobs.config import load_site_text
from hpcjobs.errors import BindError, ConfigError, LimitExceeded, PolicyViolation
from hpcjobs.preflight import check_bind_sources
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

SITE = load_site_text(
    """
name: t
default_partition: cpu
gpu_partition: gpu
defaults:
  time_min: 60
  mem_gb: 1
  binds: ["/tmp"]
  env: {A: site, B: site}
  mpi: {default: pmix, env: {PMIX_MCA_gds: hash}}
partitions:
  cpu:
    limits: {max_gpus_per_node: 0, max_time_min: 120, max_nodes: 2, max_mem_gb: 8, max_ntasks: 8, max_cpus_per_task: 4}
    env: {B: partition}
  gpu:
    time_min: 30
    limits: {max_gpus_per_node: 2}
    gpu: {flag: nv}
    node_local_paths: [/local]
    binds: ["/local/scratch:/scratch"]
policy:
  deny_bind_sources: [/etc, /var/run/munge]
""",
    "test-site.yaml",
)


def r(overrides: dict[str, object] | None = None, **fields: object):  # type: ignore[no-untyped-def]
    return resolve(JobSpec.model_validate({"image": "/i/x.sif", **fields}), SITE, overrides)


def test_precedence_cli_over_job_over_partition_over_site() -> None:
    assert r().time_min == 60 and r().provenance["time_min"] == "site defaults"
    assert r(partition="gpu", gpus=1).time_min == 30
    assert r(partition="gpu", gpus=1).provenance["time_min"] == "partition gpu"
    assert r(time_min=90).time_min == 90 and r(time_min=90).provenance["time_min"] == "job spec"
    job = r({"time_min": 100}, time_min=90)
    assert job.time_min == 100 and job.provenance["time_min"] == "cli"


def test_env_layers_and_job_wins() -> None:
    assert dict(r().env) == {"A": "site", "B": "partition"}
    assert dict(r(env={"A": "job"}).env) == {"A": "job", "B": "partition"}


def test_docker_semantics_neither() -> None:
    job = r()
    assert (job.mode, job.args) == ("run", ())


def test_docker_semantics_command_only_replaces_cmd() -> None:
    job = r(command=["echo", "a b"])
    assert (job.mode, job.args) == ("run", ("echo", "a b"))
    assert r(command='echo "a b" c').args == ("echo", "a b", "c")  # Compose splits strings like a shell


def test_docker_semantics_entrypoint_with_command() -> None:
    job = r(entrypoint=["/bin/prog", "--flag"], command=["x"])
    assert (job.mode, job.args) == ("exec", ("/bin/prog", "--flag", "x"))
    assert "apptainer exec" in render(job)


def test_empty_entrypoint_runs_command() -> None:
    assert r(entrypoint=[], command=["ls"]).args == ("ls",)
    with pytest.raises(ConfigError, match="nothing to run"):
        r(entrypoint=[])


def test_gpu_job_goes_to_gpu_partition_with_nv() -> None:
    job = r(gpus=1)
    assert job.partition == "gpu" and job.gpu_flag == "nv"
    assert "--nv" in render(job).splitlines()[-1]
    assert "--nv" not in render(r()).splitlines()[-1]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"gpus": 1, "partition": "cpu"}, "has no GPUs"),
        ({"time_min": 121}, "max_time_min"),
        ({"nodes": 3}, "max_nodes"),
        ({"mem_gb": 9}, "max_mem_gb"),
        ({"ntasks": 9}, "max_ntasks"),
        ({"cpus_per_task": 5}, "max_cpus_per_task"),
        ({"partition": "gpu", "gpus": 3}, "max_gpus_per_node"),
    ],
)
def test_limits_refused_with_limit_and_value(fields: dict[str, object], message: str) -> None:
    with pytest.raises(LimitExceeded, match=message) as info:
        r(**fields)
    key = next(k for k in fields if k != "partition")
    assert f"{key}={fields[key]}" in str(info.value)


def test_limit_via_cli_override_refused() -> None:
    with pytest.raises(LimitExceeded, match="time_min=500"):
        r({"time_min": 500})


def test_duplicate_bind_destination_is_an_error() -> None:
    with pytest.raises(BindError, match="/tmp"):
        r(binds=["/var/tmp:/tmp"])
    with pytest.raises(BindError, match="/data"):
        r(binds=["/a:/data", "/b:/data:ro"])


def test_missing_bind_source_refused_but_node_local_not_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "does not exist"
    with pytest.raises(BindError, match="does not exist"):
        check_bind_sources(r(binds=[f"{missing}:/x"]))
    check_bind_sources(r(partition="gpu", gpus=1), exists=lambda p: p != "/local/scratch" and True)
    job = r(partition="gpu", gpus=1, binds=["/local/other:/other"])
    assert "/local/other" in job.unchecked_bind_sources


def test_denied_bind_sources() -> None:
    with pytest.raises(PolicyViolation, match="/etc"):
        r(binds=["/etc/munge:/m"])
    with pytest.raises(PolicyViolation):
        r(binds=["/var/run/munge:/m"])
    r(binds=["/etcetera:/e"])  # a prefix of the name only is not below /etc


def test_extra_sbatch_may_not_override_managed_options() -> None:
    with pytest.raises(ConfigError, match="--partition"):
        r(extra_sbatch=["--partition=gpu"])
    assert "#SBATCH --exclusive" in render(r(extra_sbatch=["--exclusive"]))


def test_unknown_partition_lists_partitions() -> None:
    with pytest.raises(ConfigError, match="have: cpu, gpu"):
        r(partition="nope")


@pytest.mark.parametrize("bad", ["a;b", "a b", "x\ny", "$(id)"])
def test_hostile_partition_account_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        r(partition=bad)
    with pytest.raises(ConfigError):
        r(account=bad)


def test_hostile_job_name_quoted_in_directive() -> None:
    assert '#SBATCH --job-name="my job #1"' in render(r(name="my job #1"))
    # a double quote and a trailing backslash are carried with sbatch's escapes (issue 8, item 4)
    assert '#SBATCH --job-name="a\\"b \\\\"' in render(r(name='a"b \\'))
    with pytest.raises(ConfigError, match="control character"):
        r(name="a\rb")


def test_unknown_override_lists_fields() -> None:
    with pytest.raises(ConfigError, match="valid: account"):
        r({"gpu": 1})


def test_mpi_multi_task_uses_srun_pmix_and_pmix_env() -> None:
    job = r(ntasks=2)
    script = render(job)
    assert script.splitlines()[-1].startswith("exec srun --mpi=pmix apptainer run")
    assert "export PMIX_MCA_gds=hash" in script
    single = render(r())
    assert "srun" not in single and "PMIX_MCA_gds" not in single


def test_mpirun_launcher() -> None:
    assert render(r(ntasks=2, mpi="mpirun")).splitlines()[-1].startswith("exec mpirun -np 2 apptainer")


def test_array_output_pattern() -> None:
    script = render(r(array="0-3%2"))
    assert "#SBATCH --array=0-3%2" in script and "%A_%a" in script
    with pytest.raises(ValueError):
        r(array="0-3; rm -rf /")


@pytest.mark.parametrize(
    ("text", "message"),
    [("a:b:c:d", "is not SRC"), ("/x:rel", "absolute path"), ("/a,b:/c", "may not contain ','")],
)
def test_parse_bind_errors_are_plain(text: str, message: str) -> None:
    from hpcjobs.models import parse_bind

    with pytest.raises(BindError, match=message) as info:
        parse_bind(text)
    assert "pydantic" not in str(info.value)


def test_bind_env_cleared_when_site_denies_bind_sources() -> None:
    script = render(r())
    unset = next(line.split()[1:] for line in script.splitlines() if line.startswith("unset "))
    for key in ("BIND", "BINDPATH", "MOUNT", "HOME", "OVERLAY", "WORKDIR", "FUSESPEC", "CONTAINLIBS", "CONFIG_FILE"):
        assert f"APPTAINER_{key}" in unset and f"SINGULARITY_{key}" in unset
    no_policy = load_site_text("name: n\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    assert "unset" not in render(resolve(JobSpec(image="/i/x.sif"), no_policy))


def test_symlinked_bind_source_into_denied_path_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hpcjobs.preflight import check_bind_realpaths

    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    job = r(binds=[f"{link}:/x"])  # lexically fine
    with pytest.raises(PolicyViolation, match="leads to '/etc'"):
        check_bind_realpaths(job, SITE.policy)
    check_bind_realpaths(r(binds=[f"{tmp_path}:/x"]), SITE.policy)
    with pytest.raises(PolicyViolation):  # through a --set override too
        check_bind_realpaths(r({"binds": [f"{link}:/y"]}), SITE.policy)


def test_site_own_binds_are_not_checked_against_its_deny_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hpcjobs.preflight import check_bind_realpaths

    (tmp_path / "secret" / "sub").mkdir(parents=True)
    site = load_site_text(
        f"name: s\ndefault_partition: cpu\ndefaults: {{binds: ['{tmp_path}/secret/sub:/sub']}}\n"
        f"partitions: {{cpu: {{}}}}\npolicy: {{deny_bind_sources: ['{tmp_path}/secret']}}\n"
    )
    check_bind_realpaths(resolve(JobSpec(image="/i/x.sif"), site), site.policy)


@pytest.mark.parametrize(
    "opt", ["--time=5", "-t 5", "-t5", "--dependency=afterok:1", "-d afterok:1", "--comment=x", "-N2"]
)
def test_managed_options_refused_in_any_spelling(opt: str) -> None:
    with pytest.raises(ConfigError, match="sets -"):
        r(extra_sbatch=[opt])


def test_comment_refusal_says_why() -> None:
    with pytest.raises(ConfigError, match="never submits twice"):
        r(extra_sbatch=["--comment=mine"])


def test_dependency_field_renders_with_kill_on_invalid_dep() -> None:
    script = render(r(dependency="afterok:12:13,afterany:14"))
    assert "#SBATCH --dependency=afterok:12:13,afterany:14\n#SBATCH --kill-on-invalid-dep=yes\n" in script
    assert r({"dependency": "singleton"}).dependency == "singleton"
    for bad in ["afterok", "afterok:1 ; rm", "after-ok:1", "afterok:$(id)"]:
        with pytest.raises(ValueError):
            r(dependency=bad)
