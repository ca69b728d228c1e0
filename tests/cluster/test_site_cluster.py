"""Site admin tools against the real dev cluster: discover describes it, the draft runs real jobs,
--explain scripts are accepted by real sbatch (comments after #SBATCH options included), and
requests beyond the discovered limits are refused before submission."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clusterenv import Cluster, run_job, wait_job

from hpcjobs.config.loader import load_site_text
from hpcjobs.errors import LimitExceeded
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.site.discover import discover
from hpcjobs.spec import JobSpec

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def hpcjobs_exe() -> list[str]:
    exe = shutil.which("hpcjobs", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "hpcjobs.cli"]


@pytest.fixture(scope="module")
def draft(cluster: Cluster) -> str:
    return discover()


def test_discover_cli_writes_a_valid_draft_of_both_partitions_and_gpus(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "site.yaml"
    proc = subprocess.run(
        [*hpcjobs_exe(), "site", "discover", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*hpcjobs_exe(), "site", "validate", str(out)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, f"{out}: ok\n"), proc.stderr

    cfg = load_site_text(out.read_text(), str(out))
    assert cfg.name == cluster["cluster_name"]
    assert sorted(cfg.partitions) == sorted(cluster.partitions)
    assert cfg.default_partition == cluster["default_partition"]
    assert cfg.gpu_partition == cluster["gpu_partition"]
    gpu = cfg.partitions[cluster["gpu_partition"]]
    assert gpu.limits.max_gpus_per_node == cluster.gpus
    assert gpu.gpu.flag == "nv" and gpu.gpu.request == "gpus"
    assert cfg.partitions[cluster["default_partition"]].limits.max_gpus_per_node == 0
    for p in cfg.partitions.values():
        assert p.limits.max_cpus_per_task == cluster["cpus"]
        assert p.limits.max_nodes == 1
        assert p.limits.max_mem_gb and p.limits.max_mem_gb > 0
    assert cfg.defaults.mpi.default == "pmix"  # srun --mpi=list offers pmix on the dev cluster
    assert f"gpu:{cluster.gpus}" in out.read_text()


def test_discover_matches_sinfo(cluster: Cluster, draft: str) -> None:
    cfg = load_site_text(draft, "draft")
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%R %c %m %G"], capture_output=True, text=True, timeout=30)
    for line in sinfo.stdout.splitlines():
        part, cpus, mem_mb, gres = line.split()
        p = cfg.partitions[part]
        assert p.limits.max_cpus_per_task == int(cpus)
        assert round((p.limits.max_mem_gb or 0) * 1024) <= int(mem_mb.rstrip("+"))
        if gres.startswith("gpu:") and part == cluster["gpu_partition"]:
            assert p.limits.max_gpus_per_node == int(gres.split(":")[-1].split("(")[0])


@pytest.mark.parametrize("explain", [False, True], ids=["plain", "explain"])
def test_discovered_config_runs_a_gpu_job(cluster: Cluster, job_dir: Path, draft: str, explain: bool) -> None:
    cfg = load_site_text(draft, "draft")
    spec = JobSpec.model_validate(
        {
            "image": cluster.image("tiny_sif"),
            "gpus": 1,
            "output": "slurm-%j.out",
            "entrypoint": ["/bin/sh", "-c", 'echo "CVD=$CUDA_VISIBLE_DEVICES"'],
        }
    )
    script = render(resolve(spec, cfg), explain=explain)
    assert "#SBATCH --partition=gpu" in script and "--nv" in script.splitlines()[-1]
    state, code, out = run_job(script, job_dir)
    assert (state, code) == ("COMPLETED", 0), out
    assert "CVD=0" in out or "CVD=1" in out  # either of the node's two GPUs: the cluster is shared


def test_requests_beyond_discovered_limits_are_refused(cluster: Cluster, draft: str) -> None:
    cfg = load_site_text(draft, "draft")
    for fields, limit in [
        ({"gpus": 1, "partition": "cpu"}, "max_gpus_per_node = 0"),
        ({"gpus": cluster.gpus + 1}, "limits.max_gpus_per_node"),
        ({"nodes": 2}, "limits.max_nodes"),
        ({"cpus_per_task": cluster["cpus"] + 1}, "limits.max_cpus_per_task"),
    ]:
        with pytest.raises(LimitExceeded, match=re.escape(limit)):
            resolve(JobSpec.model_validate({"image": cluster.image("tiny_sif"), **fields}), cfg)


def test_sbatch_reads_explained_directives_with_their_comments(cluster: Cluster, job_dir: Path) -> None:
    """'#SBATCH --time=7  # <- job spec': real sbatch must take 7 minutes and the name, not the comment."""
    cfg = load_site_text((REPO / "site-configs" / "dev-cluster.yaml").read_text(), "dev-cluster.yaml")
    spec = JobSpec.model_validate(
        {
            "image": cluster.image("tiny_sif"),
            "name": "explained job",
            "time_min": 7,
            "mem_gb": 0.5,
            "output": "slurm-%j.out",
            "command": ["hello"],
        }
    )
    script = render(resolve(spec, cfg, {"cpus_per_task": 2}), explain=True)
    assert "#SBATCH --time=7  # <- job spec" in script
    assert "#SBATCH --cpus-per-task=2  # <- CLI override (--set)" in script
    # plain sbatch (clusterenv's helper adds --time on the command line, which would win)
    proc = subprocess.run(
        ["sbatch", "--parsable", "--hold", f"--chdir={job_dir}"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=job_dir,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
        ).stdout
        assert "TimeLimit=00:07:00" in shown, shown
        assert "JobName=explained job " in shown, shown
        assert "NumCPUs=2" in shown or "CPUs/Task=2" in shown, shown
        assert re.search(r"MinMemoryNode=512M\b", shown), shown
    finally:
        subprocess.run(["scontrol", "release", job_id], capture_output=True, timeout=30)
    state, code = wait_job(job_id)
    assert (state, code) == ("COMPLETED", 0)
    assert "entry: hello" in (job_dir / f"slurm-{job_id}.out").read_text()


def test_site_show_and_validate_published_configs(cluster: Cluster) -> None:
    configs = sorted(str(p) for p in (REPO / "site-configs").glob("*.yaml"))
    proc = subprocess.run([*hpcjobs_exe(), "site", "validate", *configs], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(
        [*hpcjobs_exe(), "--site", str(REPO / "site-configs" / "dev-cluster.yaml"), "site", "show", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert sorted(data["partitions"]) == sorted(cluster.partitions)
