"""Policy an admin can enforce (policy.deny_bind_sources, policy.locked, require_account/qos):
violations are refused by resolve(), before anything is converted or submitted, with a message
that names the rule. These are guard rails, not a security boundary (docs/admin-guide.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpcjobs.config.loader import load_site_text
from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import ConfigError, PolicyViolation
from hpcjobs.resolve import resolve
from hpcjobs.runner import RecordingRunner
from hpcjobs.runtimes.apptainer import mounts_host_path
from hpcjobs.spec import JobSpec
from tests.fakes import unexpected

REPO = Path(__file__).resolve().parents[2]


def site(policy: str, defaults: str = "{}") -> SiteConfig:
    return load_site_text(
        f"name: guarded\ndefault_partition: cpu\ndefaults: {defaults}\npartitions: {{cpu: {{}}}}\npolicy: {policy}\n",
        "guarded.yaml",
    )


def job(**fields: Any) -> JobSpec:
    return JobSpec.model_validate({"image": "/images/tool.sif", **fields})


DENY = site("{deny_bind_sources: [/etc/munge, /var/lib/slurm, /etc/ssh/]}")


@pytest.mark.parametrize(
    ("src", "denied"),
    [
        ("/etc/munge", "/etc/munge"),
        ("/etc/munge/munge.key", "/etc/munge"),
        ("/etc/munge/", "/etc/munge"),
        ("//etc/munge", "/etc/munge"),  # POSIX keeps a leading '//' in normpath; Linux does not care
        ("/etc/./munge", "/etc/munge"),
        ("/tmp/../etc/munge/x", "/etc/munge"),
        ("/var/lib/slurm/slurmctld", "/var/lib/slurm"),
        ("/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/"),
    ],
)
def test_denied_bind_sources_are_refused(src: str, denied: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        resolve(job(binds=[{"src": src, "dst": "/m"}]), DENY)
    assert str(info.value) == (
        f"bind source {src!r} is not allowed by site 'guarded' (policy.deny_bind_sources: {denied})"
    )


@pytest.mark.parametrize("src", ["/etc/munged", "/var/lib/slurm-backup", "/tmp", "/etc/sshd", "/etc/./munged"])
def test_neighbours_of_denied_paths_are_allowed(src: str) -> None:
    assert resolve(job(binds=[{"src": src, "dst": "/m"}]), DENY).binds[-1].src == src


@pytest.mark.parametrize("src", ["/etc", "/", "//", "/etc/", "/etc/ssl/..", "/var/lib/../lib/./"])
def test_ancestors_of_denied_paths_are_refused(src: str) -> None:
    # binding /etc shows /etc/munge too (issue 8, item 8)
    with pytest.raises(PolicyViolation, match=r"policy\.deny_bind_sources"):
        resolve(job(binds=[{"src": src, "dst": "/m"}]), DENY)


def test_denying_etc_covers_the_munge_key_dir() -> None:
    etc = site("{deny_bind_sources: [/etc]}")
    for src in ("/etc", "/etc/munge", "/etc/munge/munge.key", "/etc/hosts"):
        with pytest.raises(PolicyViolation, match=r"policy\.deny_bind_sources: /etc\)"):
            resolve(job(binds=[f"{src}:/x"]), etc)
    assert resolve(job(binds=["/etcetera:/x"]), etc).binds[0].src == "/etcetera"


def test_denied_bind_via_cli_override_is_refused() -> None:
    with pytest.raises(PolicyViolation, match="/etc/munge"):
        resolve(job(), DENY, {"binds": ["/etc/munge:/m:ro"]})


def test_site_binds_are_the_admins_to_choose() -> None:
    cfg = site("{deny_bind_sources: [/etc]}", defaults="{binds: ['/etc/hosts:/etc/hosts:ro']}")
    assert [b.src for b in resolve(job(), cfg).binds] == ["/etc/hosts"]


@pytest.mark.parametrize(
    "flags",
    [["--bind", "/etc/munge:/m"], ["--bind=/etc:/x"], ["-B", "/etc:/x"], ["-B/etc:/x"], ["-cB", "/etc:/x"],
     ["--mount", "type=bind,src=/etc,dst=/x"], ["--home", "/etc/munge"], ["-H", "/etc"], ["--overlay", "/etc"],
     ["--workdir", "/etc"], ["--fusemount", "host:sshfs x:/ /m"]],
)  # fmt: skip
def test_runtime_flags_cannot_get_around_the_deny_list(flags: list[str]) -> None:
    opts = [f for f in flags if f.startswith("-")]  # job runtime_flags must be options
    with pytest.raises(PolicyViolation) as info:
        resolve(job(runtime_flags=opts), DENY)
    assert str(info.value) == (
        f"runtime flag {opts[0]!r} mounts a host path, which site 'guarded' does not allow while "
        "policy.deny_bind_sources is set: use the job's binds"
    )


def test_harmless_runtime_flags_pass_and_mount_flags_pass_without_deny_list() -> None:
    assert resolve(job(runtime_flags=["--writable-tmpfs", "-e", "--no-home"]), DENY).runtime_flags == (
        "--writable-tmpfs",
        "-e",
        "--no-home",
    )
    open_site = site("{}")
    assert resolve(job(runtime_flags=["--bind=/etc:/x"]), open_site).runtime_flags == ("--bind=/etc:/x",)


def test_mounts_host_path_classifier() -> None:
    for flag in (
        "--bind",
        "--bind=/a",
        "-B",
        "-B/a",
        "-cB",
        "--mount",
        "--home",
        "-H",
        "--overlay",
        "-o",
        "--workdir",
        "-W",
        "--fusemount",
    ):
        assert mounts_host_path(flag), flag
    for flag in ("--writable-tmpfs", "-e", "-c", "--cleanenv", "--no-home", "--contain", "--nv", "-"):
        assert not mounts_host_path(flag), flag


LOCKED = site(
    "{locked: [runtime_flags, account]}",
    defaults="{account: site-acct, runtime: {flags: [--writable-tmpfs]}}",
)


def test_locked_runtime_flags_refused_from_job_and_cli() -> None:
    with pytest.raises(PolicyViolation) as info:
        resolve(job(runtime_flags=["--nv"]), LOCKED)
    assert str(info.value) == "site 'guarded' does not let jobs set 'runtime_flags' (policy.locked)"
    with pytest.raises(PolicyViolation, match=r"'runtime_flags' \(policy\.locked\)"):
        resolve(job(), LOCKED, {"runtime_flags": ["--nv"]})
    with pytest.raises(PolicyViolation, match=r"'account' \(policy\.locked\)"):
        resolve(job(account="mine"), LOCKED)


def test_locked_fields_still_get_the_site_values() -> None:
    r = resolve(job(), LOCKED)
    assert r.runtime_flags == ("--writable-tmpfs",) and r.account == "site-acct"
    assert r.provenance["account"] == "site defaults"


REQUIRE = site("{require_account: true, require_qos: true}")


def test_require_account_and_qos() -> None:
    with pytest.raises(PolicyViolation) as info:
        resolve(job(qos="normal"), REQUIRE)
    assert str(info.value) == "site 'guarded' requires an account: set account in the job or --set account=…"
    with pytest.raises(PolicyViolation) as info:
        resolve(job(account="proj"), REQUIRE)
    assert str(info.value) == "site 'guarded' requires a QoS: set qos in the job or --set qos=…"
    r = resolve(job(), REQUIRE, {"account": "proj", "qos": "normal"})
    assert (r.account, r.qos) == ("proj", "normal")


def test_require_account_met_by_site_default() -> None:
    cfg = site("{require_account: true}", defaults="{account: everyone}")
    assert resolve(job(), cfg).account == "everyone"


def test_policy_itself_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        site("{locked: [runtime_flag], deny_bind_sources: [etc]}")
    assert [p.split(" (valid:")[0] for p in info.value.problems] == [
        "policy.deny_bind_sources.0: 'etc' is not an absolute path",
        "policy.locked.0: 'runtime_flag' is not a job field that can be locked",
    ]


def test_refused_before_anything_runs() -> None:
    """Refusals happen before submission: the runner fails the test if anything is run."""
    from hpcjobs import ContainerJob

    no_processes = RecordingRunner(answer=unexpected)
    with pytest.raises(PolicyViolation):
        ContainerJob(image="/images/tool.sif", binds=["/etc/munge:/m"]).submit(DENY, runner=no_processes)
    with pytest.raises(PolicyViolation):
        ContainerJob(image="/images/tool.sif").submit(REQUIRE, runner=no_processes)
    assert no_processes.calls == []


def test_dev_cluster_config_denies_the_munge_key_through_the_cli(tmp_path: Path) -> None:
    exe = shutil.which("hpcjobs", path=str(Path(sys.executable).parent))
    assert exe is not None, "the hpcjobs console script is not installed (scripts/venv installs it)"
    job_file = tmp_path / "job.yaml"
    job_file.write_text("image: /images/tool.sif\nbinds: ['/etc/munge:/m:ro']\n")
    proc = subprocess.run(
        [exe, "--site", str(REPO / "site-configs" / "dev-cluster.yaml"), "render", str(job_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "hpcjobs: error: bind source '/etc/munge' is not allowed by site 'dev-cluster' "
        "(policy.deny_bind_sources: /etc/munge)\n"
    )
