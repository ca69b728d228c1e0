"""The dev cluster is real: Slurm runs batch jobs that run Apptainer on every test image form.

These tests check the cluster set up by ``scripts/dev-cluster up`` (not the hpcjobs package),
so that the package's own integration tests can rely on it. They need root for the jobs run as
the unprivileged test user.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clusterenv import Cluster, job_state, run_job, sbatch_script, wait_job

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]

IMAGE_FORMS: dict[str, Callable[[Cluster], str]] = {
    "sif": lambda c: c.image("tiny_sif"),
    "oci-archive": lambda c: "oci-archive:" + c.image("tiny_oci_archive"),
    "oci-dir": lambda c: "oci:" + c.image("tiny_oci_dir"),
    "docker-archive": lambda c: "docker-archive:" + c.image("tiny_docker_archive"),
    "registry": lambda c: c.tiny_ref,
}


def test_cluster_json_describes_the_cluster(cluster: Cluster) -> None:
    for key in ("tiny_oci_dir", "tiny_oci_archive", "tiny_docker_archive", "tiny_sif", "mpi_sif"):
        assert Path(cluster.image(key)).exists(), key
    assert cluster.partitions == ["cpu", "gpu"]
    assert cluster.gpus == 2
    assert cluster.tiny_ref == f"docker://{cluster.registry}/test/tiny:1"
    assert cluster["tiny_env"]["TINY_VAR"] == "from-image"
    assert cluster["tiny_cmd"] == ["default-cmd"]
    assert cluster["tiny_workdir"] == "/opt/work"
    assert pwd.getpwnam(cluster.test_user).pw_uid != 0


def test_registry_serves_the_tiny_image(cluster: Cluster) -> None:
    for tag in ("1", "latest"):
        req = urllib.request.Request(
            f"http://{cluster.registry}/v2/test/tiny/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Docker-Content-Digest"] == cluster["tiny_manifest_digest"]


def test_partitions_cpus_and_gpus(cluster: Cluster) -> None:
    out = subprocess.run(["sinfo", "-h", "-o", "%P|%c|%G|%a"], capture_output=True, text=True,
                         check=True, timeout=20, cwd="/").stdout
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines()}
    assert set(rows) == {"cpu*", "gpu"}, out  # cpu is the default partition
    for cpus, gres, avail in rows.values():
        assert cpus == "16"
        assert gres.startswith("gpu:2")
        assert avail == "up"


@pytest.mark.parametrize(
    ("form", "user"),
    [(form, None) for form in IMAGE_FORMS] + [("sif", "hpctest"), ("oci-archive", "hpctest"),
                                               ("registry", "hpctest")],
    ids=lambda v: v or "root",
)
def test_sbatch_apptainer_on_each_image_form(cluster: Cluster, job_dir: Path, form: str,
                                             user: str | None) -> None:
    user = cluster.test_user if user == "hpctest" else None
    src = IMAGE_FORMS[form](cluster)
    opts = "--no-https " if src.startswith("docker://") else ""
    img = opts + shlex.quote(src)
    script = f"""#!/bin/sh
set -eu
echo "job-user=$(id -un)"
apptainer exec {img} /bin/sh -c 'echo "in-uid=$(id -u)"; echo "tiny-var=$TINY_VAR"; \
. /etc/os-release; echo "os-id=$ID"; cat /opt/work/marker.txt'
apptainer run {img} first 'two words'
apptainer run {img}
"""
    state, code, out = run_job(script, job_dir, user=user, args=["-J", f"form-{form}"])
    assert (state, code) == ("COMPLETED", 0), out
    name = user or "root"
    lines = out.splitlines()
    assert f"job-user={name}" in lines
    assert f"in-uid={pwd.getpwnam(name).pw_uid}" in lines
    assert "tiny-var=from-image" in lines
    assert "os-id=hpcjobs-tiny" in lines
    assert "tiny-workdir" in lines
    prefix = cluster["tiny_entry_prefix"]
    args = [line[len(prefix):] for line in lines if line.startswith(prefix)]
    # `run` = ENTRYPOINT + CMD; arguments replace CMD
    assert args == ["first", "two words", *cluster["tiny_cmd"]], out


@pytest.mark.parametrize("ngpus", [1, 2])
def test_gpu_job_sees_cuda_visible_devices(cluster: Cluster, job_dir: Path, ngpus: int) -> None:
    sif = shlex.quote(cluster.image("tiny_sif"))
    script = f"""#!/bin/sh
echo "host-cvd=${{CUDA_VISIBLE_DEVICES:-unset}}"
apptainer exec {sif} /bin/sh -c 'echo "in-cvd=${{CUDA_VISIBLE_DEVICES:-unset}}"'
"""
    state, code, out = run_job(script, job_dir, args=["-p", "gpu", f"--gpus={ngpus}"])
    assert (state, code) == ("COMPLETED", 0), out
    found = dict(line.split("=", 1) for line in out.splitlines() if "-cvd=" in line)
    assert found["host-cvd"] == found["in-cvd"], out
    ids = found["in-cvd"].split(",")
    assert len(ids) == ngpus and set(ids) <= {"0", "1"}, out


def test_more_gpus_than_the_node_has_is_refused(cluster: Cluster, job_dir: Path) -> None:
    with pytest.raises(AssertionError, match="Requested node configuration is not available"):
        sbatch_script("#!/bin/sh\ntrue\n", cwd=job_dir, args=["-p", "gpu", f"--gpus={cluster.gpus + 1}"])


@pytest.mark.parametrize("user", [None, "hpctest"], ids=["root", "hpctest"])
def test_srun_pmix_mpi_in_container(cluster: Cluster, job_dir: Path, user: str | None) -> None:
    user = cluster.test_user if user else None
    mpi = shlex.quote(cluster.image("mpi_sif"))
    script = f"""#!/bin/sh
export PMIX_MCA_gds=hash
srun --mpi=pmix -n 2 apptainer exec {mpi} {cluster["mpi_hello"]}
"""
    state, code, out = run_job(script, job_dir, user=user, args=["-n", "2", "-J", "mpi-hello"])
    assert (state, code) == ("COMPLETED", 0), out
    ranks = re.findall(r"^rank (\d+) of (\d+) on (\S+) \(rank sum (\d+)\)$", out, re.MULTILINE)
    assert sorted(r[0] for r in ranks) == ["0", "1"], out
    assert all(size == "2" and total == "1" for _, size, _, total in ranks), out


def test_exit_code_and_sacct_fallback(cluster: Cluster, job_dir: Path) -> None:
    job = sbatch_script("#!/bin/sh\necho failing\nexit 3\n", cwd=job_dir, user=cluster.test_user)
    assert wait_job(job, timeout_s=60) == ("FAILED", 3)
    # once scontrol forgets a job (MinJobAge), `sacct -c` reads the jobcomp file
    out = subprocess.run(["sacct", "-c", "-n", "-P", "-j", job, "-o", "jobid,state,exitcode"],
                         capture_output=True, text=True, check=True, timeout=20, cwd="/").stdout
    assert f"{job}|FAILED|3:0" in out.splitlines(), out
    assert job_state(job) == ("FAILED", 3)


def test_up_again_keeps_controller_state_and_daemons(cluster: Cluster, job_dir: Path) -> None:
    """`dev-cluster up` on a healthy cluster restarts nothing and keeps queued jobs (Slurm 24.11
    saves the cluster name as ``name|id``; comparing the whole string wiped the state every time)."""
    if os.getuid() != 0:
        pytest.skip("scripts/dev-cluster up needs root")
    held = sbatch_script("#!/bin/sh\nexit 0\n", cwd=job_dir, args=["--hold"])
    try:
        pidfile = Path("/run/slurmctld.pid")
        before = pidfile.read_text().strip()
        up = subprocess.run([str(REPO / "scripts" / "dev-cluster"), "up"], capture_output=True, text=True,
                            timeout=600, check=False, cwd="/")  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert "wiping" not in up.stdout + up.stderr
        assert "slurmctld already running" in up.stdout, up.stdout
        assert pidfile.read_text().strip() == before
        state = job_state(held)
        assert state is not None and state[0] == "PENDING", state
        later = sbatch_script("#!/bin/sh\nexit 0\n", cwd=job_dir, args=["--hold"])
        subprocess.run(["scancel", later], check=True, timeout=30)
        assert int(later) > int(held)
    finally:
        subprocess.run(["scancel", held], check=False, timeout=30)
