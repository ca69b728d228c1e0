"""The Python API and the CLI against the real dev cluster: submit, status, wait, cancel, logs,
exit codes, refusal before submission, one-line errors. Tests taking the ``backend`` fixture run
through both scheduler backends (Slurm CLI; real pyslurm chosen by ``auto``) with the same answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from clusterenv import Cluster

from hpcjobs import ContainerJob, JobState

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "site-configs" / "dev-cluster.yaml"
HPCJOBS = [sys.executable, "-m", "hpcjobs"]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HPCJOBS_SITE": str(SITE), **(env or {})}
    return subprocess.run([*HPCJOBS, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=300)


def slurm_knows_name(name: str) -> bool:
    q = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True)
    c = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "jobname"], capture_output=True, text=True)
    return bool(q.stdout.strip()) or name in c.stdout.split()


def test_api_submit_wait_logs(cluster: Cluster, job_dir: Path, backend: str) -> None:
    job = ContainerJob(image=cluster.image("tiny_sif"), command=["api", "two words"], time_min=2)
    handle = job.submit(SITE, cwd=job_dir)
    st = handle.wait(poll_s=0.2, timeout_s=120)
    assert st.state is JobState.COMPLETED and st.exit_code == 0
    # the backend that answered the wait: real pyslurm in the pyslurm leg, chosen at the wait
    assert handle.scheduler.name == ("pyslurm" if backend == "pyslurm" else "slurm-cli")
    assert "entry: api\nentry: two words\n" in handle.logs()
    assert handle.log_path() == str(job_dir / f"hpcjobs-tiny-{handle.job_id}.out")


def test_api_real_exit_code_and_failed_state(cluster: Cluster, job_dir: Path, backend: str) -> None:
    job = ContainerJob(image=cluster.image("tiny_sif"), entrypoint=["/bin/sh", "-c", "exit 3"])
    st = job.submit(SITE, cwd=job_dir).wait(poll_s=0.2, timeout_s=120)
    assert st.state is JobState.FAILED and st.exit_code == 3


def test_cli_submit_wait_exit_code_and_json(cluster: Cluster, job_dir: Path, backend: str) -> None:
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\nentrypoint: [/bin/sh, -c, 'echo out; exit 5']\n"
    )
    r = cli("submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 5, r.stderr
    result = json.loads(r.stdout)
    assert result["state"] == "FAILED" and result["exit_code"] == 5
    logs = cli("logs", result["job_id"], cwd=job_dir)
    assert logs.returncode == 0 and logs.stdout == "out\n"
    st = cli("status", result["job_id"], "--json", cwd=job_dir)
    assert json.loads(st.stdout)[0]["state"] == "FAILED"


def test_cli_set_override_and_status_cancel(cluster: Cluster, job_dir: Path, backend: str) -> None:
    (job_dir / "job.yaml").write_text(f"image: {cluster.image('tiny_sif')}\nentrypoint: [sleep, '60']\n")
    r = cli("submit", "job.yaml", "--set", "name=cancel-me", "--set", "time_min=3", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert job_id.isdigit()
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    assert "JobName=cancel-me" in shown and "TimeLimit=00:03:00" in shown
    assert cli("cancel", job_id, cwd=job_dir).returncode == 0
    w = cli("wait", job_id, "--poll-s", "0.2", cwd=job_dir)
    assert "CANCELLED" in w.stdout and w.returncode != 0


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["time_min=5000"], "max_time_min"),
        (["gpus=1", "partition=cpu"], "has no GPUs"),
        (["gpus=3"], "max_gpus_per_node"),
        (["binds=['/no/such/dir:/x']"], "does not exist"),
    ],
)
def test_cli_refuses_before_submission(cluster: Cluster, job_dir: Path, sets: list[str], message: str) -> None:
    name = f"refused-{uuid.uuid4().hex[:8]}"
    (job_dir / "job.yaml").write_text(f"image: {cluster.image('tiny_sif')}\nname: {name}\n")
    args = [a for s in sets for a in ("--set", s)]
    r = cli("submit", "job.yaml", *args, cwd=job_dir)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcjobs: error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not slurm_knows_name(name)  # refused before sbatch: Slurm never saw it


def test_cli_bad_job_file_one_line_with_key_path(cluster: Cluster, job_dir: Path) -> None:
    (job_dir / "job.yaml").write_text("image: x.sif\nbinds: [{src: /tmp, bogus: 1}]\n")
    r = cli("render", "job.yaml", cwd=job_dir)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "binds.0.bogus" in r.stderr and "valid keys" in r.stderr


def test_cli_gpu_job_end_to_end(cluster: Cluster, job_dir: Path, backend: str) -> None:
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\ngpus: 1\nentrypoint: [/bin/sh, -c, 'echo CVD=$CUDA_VISIBLE_DEVICES']\n"
    )
    script = cli("render", "job.yaml", cwd=job_dir).stdout
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --gpus=1" in script and " --nv " in script
    r = cli("submit", "job.yaml", "--wait", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[0]
    # one of the node's two (fake) GPUs: another job on the shared cluster may hold the other
    assert (job_dir / f"hpcjobs-tiny-{job_id}.out").read_text().strip() in ("CVD=0", "CVD=1")


def test_cli_mpi_job_two_ranks(cluster: Cluster, job_dir: Path) -> None:
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('mpi_sif')}\nntasks: 2\nentrypoint: [{cluster['mpi_hello']}]\n"
    )
    r = cli("submit", "job.yaml", "--wait", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[0]
    out = (job_dir / f"hpcjobs-mpi-{job_id}.out").read_text()
    assert sorted(line.split()[1] for line in out.splitlines() if line.startswith("rank ")) == ["0", "1"], out


def test_cli_refuses_symlink_into_denied_bind_source(cluster: Cluster, job_dir: Path) -> None:
    name = f"refused-{uuid.uuid4().hex[:8]}"
    (job_dir / "keys").symlink_to("/etc/munge")
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\nname: {name}\nbinds: ['{job_dir}/keys:/k']\n"
    )
    r = cli("submit", "job.yaml", cwd=job_dir)
    assert r.returncode == 2 and "leads to '/etc/munge'" in r.stderr and r.stderr.count("\n") == 1
    assert not slurm_knows_name(name)


def test_job_name_and_output_path_with_spaces_and_hash(cluster: Cluster, job_dir: Path, backend: str) -> None:
    (job_dir / "out dir").mkdir()
    job = ContainerJob(image=cluster.image("tiny_sif"), name="my job #1", output="out dir/res %j.out", command=["x"])
    handle = job.submit(SITE, cwd=job_dir)
    assert handle.wait(poll_s=0.2, timeout_s=120).state is JobState.COMPLETED
    assert (job_dir / "out dir" / f"res {handle.job_id}.out").read_text().startswith("entry-argc: 1")
    shown = subprocess.run(["scontrol", "show", "job", handle.job_id], capture_output=True, text=True).stdout
    assert "JobName=my job #1" in shown


def test_cli_render_shows_the_script_submit_sends(cluster: Cluster, job_dir: Path) -> None:
    (job_dir / "job.yaml").write_text(f"image: {cluster.tiny_ref}\ncommand: [same]\n")
    rendered = cli("render", "job.yaml", cwd=job_dir)
    assert rendered.returncode == 0, rendered.stderr
    assert f"# image: {cluster.tiny_ref}\n# image digest: sha256:" in rendered.stdout
    r = cli("submit", "job.yaml", "--wait", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[0]
    sent = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == rendered.stdout.splitlines()[-1]  # the same pinned SIF, same argv
    as_written = cli("render", "job.yaml", "--image-as-written", cwd=job_dir).stdout
    assert as_written.splitlines()[-1].endswith(f"{cluster.tiny_ref} same")


def test_cli_mpi_job_from_the_registry_image(cluster: Cluster, job_dir: Path) -> None:
    """docker:// MPI image → digest → SIF conversion in a fresh cache → srun --mpi=pmix, 2 ranks."""
    (job_dir / "job.yaml").write_text(
        f"image: {cluster['mpi_ref']}\nntasks: 2\nentrypoint: [{cluster['mpi_hello']}]\n"
    )
    env = {"HPCJOBS_IMAGE_CACHE": str(job_dir / "cache"),
           "HPCJOBS_MKSQUASHFS_ARGS": "-comp gzip -Xcompression-level 1"}
    r = cli("-v", "submit", "job.yaml", "--wait", "--poll-s", "0.2", cwd=job_dir, env=env)
    assert r.returncode == 0, r.stderr
    assert "event='image.convert'" in r.stderr and "event='image.publish'" in r.stderr
    job_id = r.stdout.strip().splitlines()[0]
    out = (job_dir / f"hpcjobs-mpi-{job_id}.out").read_text()
    assert sorted(line.split()[1] for line in out.splitlines() if line.startswith("rank ")) == ["0", "1"], out
    script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True).stdout
    assert f"# image: {cluster['mpi_ref']}" in script and f"{job_dir}/cache/sif/sha256-" in script.splitlines()[-1]


def test_array_output_patterns_logs_and_backend_event(cluster: Cluster, job_dir: Path, backend: str) -> None:
    """An array (task 0 included) with %x and %A_%a in its output path and a name with a space and
    '#': `hpcjobs logs` of each task reads the file the task wrote; `-v` names the backend."""
    (job_dir / "job.yaml").write_text(
        f"image: {cluster.image('tiny_sif')}\nname: 'arr #1'\narray: '0-1'\noutput: '%x-%A_%a.out'\n"
        "entrypoint: [/bin/sh, -c, 'echo task=$SLURM_ARRAY_TASK_ID name=$SLURM_JOB_NAME']\n"
    )
    plain = cli("-v", "submit", "job.yaml", cwd=job_dir)
    assert plain.returncode == 0, plain.stderr
    # with auto, a submission alone chooses no query backend (no sinfo, no pyslurm import)
    assert ("scheduler.backend" in plain.stderr) is (backend == "cli"), plain.stderr
    r = cli("-v", "submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    queries = "pyslurm" if backend == "pyslurm" else "squeue/sacct/scancel/scontrol"
    assert f"backend='{backend}'" in r.stderr and "submit='sbatch'" in r.stderr
    assert f"queries='{queries}'" in r.stderr
    for task in (0, 1):
        logs = cli("logs", f"{job_id}_{task}", cwd=job_dir)
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout == f"task={task} name=arr #1\n"
        assert (job_dir / f"arr #1-{job_id}_{task}.out").read_text() == logs.stdout
    st = cli("status", job_id, f"{job_id}_0", f"{job_id}_1", "--json", cwd=job_dir)
    rows = {row["job_id"]: row for row in json.loads(st.stdout)}
    assert {rows[f"{job_id}_{t}"]["state"] for t in (0, 1)} == {"COMPLETED"}
    assert (rows[job_id]["state"], rows[job_id]["reason"]) == ("COMPLETED", "2 tasks: 2 COMPLETED")
