"""End to end on the real dev cluster: rendered scripts run by real Slurm and real Apptainer.

CPU, GPU, MPI (srun --mpi=pmix and mpirun), arrays, the three Docker entrypoint/command cases,
hostile arguments and environment, as root and as the non-root test user.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clusterenv import Cluster, run_job
from hypothesis import HealthCheck, assume, given, settings

from hpcjobs.config import load_site
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.runtimes.apptainer import UNCARRIABLE_ENV
from hpcjobs.spec import JobSpec
from tests.strategies import hostile_args, hostile_text

pytestmark = pytest.mark.cluster

SITE = load_site(Path(__file__).resolve().parents[2] / "site-configs" / "dev-cluster.yaml")
USERS = [None, "hpctest"]

# Prints each argument base64-encoded, one per line, so any byte sequence can be compared exactly.
ARGV_DUMP = ["/bin/sh", "-c", 'for a in "$@"; do printf "ARG:%s\\n" "$(printf %s "$a" | base64 -w0)"; done', "dump"]
ENV_DUMP = 'printf "ENV:%s\\n" "$(printf %s "$HOSTILE" | base64 -w0)"'


def script_for(**fields: Any) -> str:
    fields.setdefault("output", "slurm-%j.out")
    return render(resolve(JobSpec.model_validate(fields), SITE))


def decoded(out: str, prefix: str) -> list[str]:
    return [
        base64.b64decode(line[len(prefix):]).decode("utf-8", "surrogateescape")
        for line in out.splitlines()
        if line.startswith(prefix)
    ]


@pytest.mark.parametrize("user", USERS, ids=["root", "user"])
def test_cpu_job_runs_image_entrypoint_and_cmd(cluster: Cluster, job_dir: Path, user: str | None) -> None:
    state, code, out = run_job(script_for(image=cluster.image("tiny_sif")), job_dir, user=user)
    assert (state, code) == ("COMPLETED", 0), out
    assert "entry: default-cmd" in out  # ENTRYPOINT + CMD


def test_command_only_replaces_cmd_keeps_entrypoint(cluster: Cluster, job_dir: Path) -> None:
    state, code, out = run_job(script_for(image=cluster.image("tiny_sif"), command=["a b", "$HOME"]), job_dir)
    assert (state, code) == ("COMPLETED", 0), out
    assert "entry-argc: 2\nentry: a b\nentry: $HOME\n" in out  # no CMD, no shell evaluation
    assert "default-cmd" not in out


def test_entrypoint_replaces_entrypoint_and_cmd(cluster: Cluster, job_dir: Path) -> None:
    script = script_for(image=cluster.image("tiny_sif"), entrypoint=["/bin/echo", "E"], command=["x y"])
    state, code, out = run_job(script, job_dir)
    assert (state, code) == ("COMPLETED", 0), out
    assert out.strip().splitlines()[-1] == "E x y"
    assert "entry:" not in out


@pytest.mark.parametrize("image_key", ["tiny_oci_archive", "tiny_docker_archive"])
def test_oci_reference_passed_to_apptainer(cluster: Cluster, job_dir: Path, image_key: str) -> None:
    prefix = "oci-archive:" if image_key == "tiny_oci_archive" else "docker-archive:"
    state, code, out = run_job(
        script_for(image=prefix + cluster.image(image_key), command=["ok"]), job_dir, timeout_s=180
    )
    assert (state, code) == ("COMPLETED", 0), out
    assert "entry: ok" in out


@pytest.mark.parametrize("user", USERS, ids=["root", "user"])
def test_gpu_job_sees_cuda_visible_devices_with_nv(cluster: Cluster, job_dir: Path, user: str | None) -> None:
    script = script_for(image=cluster.image("tiny_sif"), gpus=1,
                        entrypoint=["/bin/sh", "-c", 'echo "CVD=$CUDA_VISIBLE_DEVICES"'])
    assert "--nv" in script.splitlines()[-1] and "#SBATCH --partition=gpu" in script
    state, code, out = run_job(script, job_dir, user=user)
    assert (state, code) == ("COMPLETED", 0), out
    # either fake GPU: jobs of others may hold the other one (no device cgroups here: real indexes)
    assert out.strip().splitlines()[-1] in ("CVD=0", "CVD=1"), out


def test_cpu_partition_has_no_nv(cluster: Cluster, job_dir: Path) -> None:
    script = script_for(
        image=cluster.image("tiny_sif"), entrypoint=["/bin/sh", "-c", 'echo "CVD=[$CUDA_VISIBLE_DEVICES]"']
    )
    assert "--nv" not in script and "#SBATCH --partition=cpu" in script
    state, code, out = run_job(script, job_dir)
    assert (state, code) == ("COMPLETED", 0), out
    assert "CVD=[]" in out


@pytest.mark.parametrize(
    ("user", "mpi", "cleanenv"),
    [(None, "pmix", False), ("hpctest", "pmix", False), ("hpctest", "mpirun", False), (None, "pmix", True)],
    ids=["root-pmix", "user-pmix", "user-mpirun", "root-pmix-cleanenv"],
)
def test_two_rank_mpi_job(cluster: Cluster, job_dir: Path, user: str | None, mpi: str, cleanenv: bool) -> None:
    script = script_for(image=cluster.image("mpi_sif"), ntasks=2, mpi=mpi, cleanenv=cleanenv,
                        entrypoint=[cluster["mpi_hello"]])
    state, code, out = run_job(script, job_dir, user=user, timeout_s=180)
    assert (state, code) == ("COMPLETED", 0), out
    ranks = sorted(line.split()[1] for line in out.splitlines() if line.startswith("rank "))
    assert ranks == ["0", "1"], out
    assert all(" of 2" in line for line in out.splitlines() if line.startswith("rank "))


def test_array_task_id_reaches_container(cluster: Cluster, job_dir: Path) -> None:
    script = script_for(image=cluster.image("tiny_sif"), array="0-2", output="slurm-%A_%a.out",
                        entrypoint=["/bin/sh", "-c", 'echo "task=$SLURM_ARRAY_TASK_ID"'])
    state, code, _ = run_job(script, job_dir)
    assert (state, code) == ("COMPLETED", 0)
    outs = sorted(p.read_text().strip() for p in job_dir.glob("slurm-*_*.out"))
    assert outs == ["task=0", "task=1", "task=2"]


def test_hostile_args_env_and_bind_path_end_to_end(cluster: Cluster, job_dir: Path) -> None:
    weird_dir = job_dir / "dir with 'quotes' $x; echo pwned\nnewline"
    weird_dir.mkdir()
    (weird_dir / "f").write_text("inside\n")
    args = ["a b", "it's", 'say "hi"', "$HOME", "`id`", "; echo pwned", "line1\nline2", "é✓", "", "\\", "*"]
    env_value = "$HOME `id` \"q\" 'q' \\ ; echo x\nend"
    script = script_for(
        image=cluster.image("tiny_sif"),
        entrypoint=["/bin/sh", "-c", ARGV_DUMP[2] + "; " + ENV_DUMP + "; cat /weird/f", "dump"],
        command=args,
        env={"HOSTILE": env_value},
        binds=[{"src": str(weird_dir), "dst": "/weird", "mode": "ro"}],
    )
    state, code, out = run_job(script, job_dir)
    assert (state, code) == ("COMPLETED", 0), out
    assert decoded(out, "ARG:") == args
    assert decoded(out, "ENV:") == [env_value]
    assert "inside" in out and "pwned" not in out.replace("; echo pwned", "")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=hostile_args, value=hostile_text)
def test_property_real_apptainer_receives_exact_argv_and_env(
    cluster: Cluster, tmp_path: Path, args: list[str], value: str
) -> None:
    """The rendered script run by bash, with the real apptainer (no Slurm: many examples, quickly)."""
    assume(not any(bad in value for bad in UNCARRIABLE_ENV))  # refused by render; see tests/unit
    script = script_for(
        image=cluster.image("tiny_sif"),
        entrypoint=["/bin/sh", "-c", ARGV_DUMP[2] + "; " + ENV_DUMP, "dump"],
        command=args,
        env={"HOSTILE": value},
    )
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8"}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stdout = proc.stdout.decode("utf-8", "surrogateescape")
    assert decoded(stdout, "ARG:") == args
    assert decoded(stdout, "ENV:") == [value]


def test_script_cwd_is_submit_dir(cluster: Cluster, job_dir: Path) -> None:
    state, code, out = run_job(script_for(image=cluster.image("tiny_sif"), command=["x"]), job_dir)
    assert (state, code) == ("COMPLETED", 0)
    assert f"entry-pwd: {os.path.realpath(job_dir)}" in out


def test_cleanenv_gpu_job_keeps_cuda_visible_devices_and_drops_host_env(cluster: Cluster, job_dir: Path) -> None:
    script = script_for(
        image=cluster.image("tiny_sif"), gpus=1, cleanenv=True, env={"MINE": "kept"},
        entrypoint=["/bin/sh", "-c", 'echo "CVD=$CUDA_VISIBLE_DEVICES MINE=$MINE HOSTONLY=[$HOSTONLY]"'],
    )
    state, code, out = run_job(script, job_dir, env={"HOSTONLY": "leak"})
    assert (state, code) == ("COMPLETED", 0), out
    assert out.strip().splitlines()[-1] in ("CVD=0 MINE=kept HOSTONLY=[]", "CVD=1 MINE=kept HOSTONLY=[]"), out


def test_workload_ends_when_its_dependency_fails(cluster: Cluster, job_dir: Path) -> None:
    """A failed image-conversion job must not leave the workload pending forever."""
    from dataclasses import replace

    from clusterenv import sbatch_script, wait_job

    failing = sbatch_script("#!/bin/sh\nexit 1\n", cwd=job_dir)
    job = resolve(JobSpec(image=cluster.image("tiny_sif"), output="slurm-%j.out"), SITE)
    script = render(replace(job, dependency=f"afterok:{failing}"))
    workload = sbatch_script(script, cwd=job_dir)
    assert wait_job(failing)[0] == "FAILED"
    state, _ = wait_job(workload, timeout_s=60)
    assert state == "CANCELLED"


def test_deny_policy_drops_binds_from_the_login_environment(cluster: Cluster, job_dir: Path) -> None:
    from hpcjobs.config import Policy

    assert SITE.policy.deny_bind_sources  # the dev cluster keeps the munge key out of containers
    open_site = SITE.model_copy(update={"policy": Policy()})
    probe = ["/bin/sh", "-c", "test -e /sneaky && echo BOUND || echo NOT-BOUND"]
    env = {"APPTAINER_BIND": f"{job_dir}:/sneaky"}
    spec = JobSpec(image=cluster.image("tiny_sif"), entrypoint=probe, output="slurm-%j.out")
    plain = render(resolve(spec, open_site))
    state, _, out = run_job(plain, job_dir, env=env)
    assert state == "COMPLETED" and "BOUND" in out.split()  # the variable does bind without a policy
    strict = render(resolve(spec, SITE))
    state, _, out = run_job(strict, job_dir, env=env)
    assert state == "COMPLETED" and "NOT-BOUND" in out.split()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=hostile_args, value=hostile_text)
def test_property_through_slurm_and_apptainer(cluster: Cluster, job_dir: Path, args: list[str], value: str) -> None:
    """A few generated hostile jobs all the way: render → sbatch → Slurm → apptainer → program."""
    assume(not any(bad in value for bad in UNCARRIABLE_ENV))
    script = script_for(
        image=cluster.image("tiny_sif"),
        entrypoint=["/bin/sh", "-c", ARGV_DUMP[2] + "; " + ENV_DUMP, "dump"],
        command=args,
        env={"HOSTILE": value},
    )
    state, code, out = run_job(script, job_dir)
    assert (state, code) == ("COMPLETED", 0), out
    assert decoded(out, "ARG:") == args
    assert decoded(out, "ENV:") == [value]
