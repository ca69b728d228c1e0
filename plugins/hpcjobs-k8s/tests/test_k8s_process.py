"""The real process seam: ``hpcjobs submit|status|logs --target k8s`` as a subprocess, with the site's
``kubectl`` pointing at a fake kubectl program that records its argv and stdin. (No Kubernetes
cluster runs in CI; this checks what reaches the program, not what a cluster does with it.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).parent
HPCJOBS = Path(sys.executable).parent / "hpcjobs"

FAKE = '''#!{python}
import json, pathlib, sys
log = pathlib.Path({log!r})
args = sys.argv[1:]
stdin = sys.stdin.read() if "--filename=-" in args else None
with log.open("a") as f:
    f.write(json.dumps({{"argv": args, "stdin": stdin}}) + "\\n")
if args[-2:] == ["config", "current-context"]:
    print("lab")
elif "create" in args:
    doc = json.loads(stdin)
    for item in doc["items"] if doc["kind"] == "List" else [doc]:
        kind = {{"Job": "job.batch", "ConfigMap": "configmap", "MPIJob": "mpijob.kubeflow.org"}}[item["kind"]]
        print(kind + "/" + item["metadata"]["name"])
elif "get" in args:
    print(json.dumps({{"kind": "Job", "metadata": {{"name": args[-3].split("/")[1]}},
                      "status": {{"conditions": [{{"type": "Complete", "status": "True"}}]}}}}))
elif "logs" in args:
    sys.stdout.write("[pod/sim-x/job] done\\n")
else:
    sys.exit(3)
'''


def _has_user(name: str) -> bool:
    return subprocess.run(["id", name], capture_output=True, check=False).returncode == 0


# as root (CI), also as the unprivileged test user of the dev cluster, as a researcher would run it
USERS = [None] + (["hpctest"] if os.geteuid() == 0 and _has_user("hpctest") else [])


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hpcjobs-k8s-", dir="/tmp"))
    path.chmod(0o777)  # the test user writes the fake's call log here
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("user", USERS, ids=lambda u: u or "self")
def test_submit_status_logs_through_a_kubectl_program(shared_dir: Path, user: str | None) -> None:
    tmp_path = shared_dir
    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "kubectl"
    fake.write_text(FAKE.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    site = yaml.safe_load((HERE / "site.yaml").read_text())
    site["plugins"]["kubernetes"]["kubectl"] = str(fake)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site))
    job_file = tmp_path / "job.yaml"
    for f in (site_file, job_file):
        f.touch(mode=0o644)
    hostile = "$(HOME) 'q' \"d\" ; echo x\nline2 \x85"
    job_file.write_text(yaml.safe_dump({"image": "docker://python:3.12", "name": "sim",
                                        "command": ["python", "-c", hostile], "env": {"V": hostile}}))

    def hpcjobs(*args: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", user, "--"] if user else []
        return subprocess.run([*prefix, str(HPCJOBS), "--site", str(site_file), *args], capture_output=True,
                              text=True, check=False, timeout=120, cwd=tmp_path)  # fmt: skip

    sub = hpcjobs("submit", str(job_file), "--target", "k8s")
    assert (sub.returncode, sub.stdout, sub.stderr) == (0, "sim\n", "")
    st = hpcjobs("status", "sim", "--target", "k8s")
    assert st.stdout == "sim\tCOMPLETED\t0\n"
    lg = hpcjobs("logs", "sim", "--target", "k8s")
    assert lg.stdout == "[pod/sim-x/job] done\n"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["argv"] for c in calls] == [
        ["config", "current-context"],
        ["--namespace=research", "create", "--filename=-", "--output=name"],
        ["--namespace=research", "get", "job/sim", "--ignore-not-found", "--output=json"],
        ["--namespace=research", "logs", "--selector=job-name=sim", "--all-containers", "--prefix", "--tail=-1",
         "--max-log-requests=100"],
    ]  # fmt: skip
    sent = json.loads(calls[1]["stdin"])
    rendered = yaml.safe_load(hpcjobs("render", str(job_file), "--target", "k8s").stdout)
    assert sent == rendered
    c = sent["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["python", "-c", hostile.replace("$", "$$")]
    assert {"name": "V", "value": hostile.replace("$", "$$")} in c["env"]


def test_without_kubectl_the_error_is_one_line(tmp_path: Path) -> None:
    site = yaml.safe_load((HERE / "site.yaml").read_text())
    site["plugins"]["kubernetes"]["kubectl"] = str(tmp_path / "no-such-kubectl")
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site))
    job_file = tmp_path / "job.yaml"
    job_file.write_text("image: docker://python:3.12\nname: sim\n")
    r = subprocess.run([str(HPCJOBS), "submit", str(job_file), "--site", str(site_file), "--target", "k8s"],
                       capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"hpcjobs: error: {tmp_path}/no-such-kubectl: program not found on PATH\n"


@pytest.mark.parametrize("user", USERS, ids=lambda u: u or "self")
def test_a_sweep_job_file_renders_and_submits_as_a_list(shared_dir: Path, user: str | None) -> None:
    log = shared_dir / "calls.jsonl"
    fake = shared_dir / "kubectl"
    fake.write_text(FAKE.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    site = yaml.safe_load((HERE / "site.yaml").read_text())
    site["plugins"]["kubernetes"]["kubectl"] = str(fake)
    (shared_dir / "site.yaml").write_text(yaml.safe_dump(site))
    hostile = "$(HOME) ; echo x\n'q'"
    (shared_dir / "job.yaml").write_text(yaml.safe_dump({
        "image": "docker://python:3.12", "name": "fit", "entrypoint": ["python", "fit.py"], "array_throttle": 2,
        "sweep": {"grid": {"args": {"--lr": ["0.1", hostile]}, "env": {"SEED": ["1", "2"]}}}}))  # fmt: skip

    def hpcjobs(*args: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", user, "--"] if user else []
        return subprocess.run([*prefix, str(HPCJOBS), "--site", str(shared_dir / "site.yaml"), *args],
                              capture_output=True, text=True, check=False, timeout=120, cwd=shared_dir)  # fmt: skip

    for f in ("site.yaml", "job.yaml"):
        (shared_dir / f).chmod(0o644)
    shown = hpcjobs("render", "job.yaml", "--target", "k8s")
    assert shown.returncode == 0, shown.stderr
    rendered = yaml.safe_load(shown.stdout)
    assert [i["kind"] for i in rendered["items"]] == ["ConfigMap", "Job"]
    assert (rendered["items"][1]["spec"]["completions"], rendered["items"][1]["spec"]["parallelism"]) == (4, 2)
    sub = hpcjobs("submit", "job.yaml", "--target", "k8s")
    assert (sub.returncode, sub.stdout, sub.stderr) == (0, "fit\n", "")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert json.loads(calls[-1]["stdin"]) == rendered
    waits = hpcjobs("submit", "job.yaml", "--target", "k8s", "--wait")
    assert waits.returncode == 2 and "--wait works with target slurm only" in waits.stderr


def test_an_mpi_job_submits_as_an_mpijob(shared_dir: Path) -> None:
    log = shared_dir / "calls.jsonl"
    fake = shared_dir / "kubectl"
    fake.write_text(FAKE.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    site = yaml.safe_load((HERE / "site.yaml").read_text())
    site["plugins"]["kubernetes"].update(kubectl=str(fake), mpi_operator="kubeflow.org/v2beta1")
    (shared_dir / "site.yaml").write_text(yaml.safe_dump(site))
    (shared_dir / "job.yaml").write_text(yaml.safe_dump({"image": "docker://lab/mpi:1", "name": "ring", "nodes": 2,
                                                        "ntasks": 4, "entrypoint": ["ring", "$(X) ; y"]}))
    sub = subprocess.run([str(HPCJOBS), "--site", str(shared_dir / "site.yaml"), "submit", "job.yaml", "--target",
                          "k8s"], capture_output=True, text=True, check=False, timeout=120, cwd=shared_dir)  # fmt: skip
    assert (sub.returncode, sub.stdout, sub.stderr) == (0, "mpijob/ring\n", "")
    sent = json.loads([json.loads(line) for line in log.read_text().splitlines()][-1]["stdin"])
    assert (sent["kind"], sent["spec"]["slotsPerWorker"]) == ("MPIJob", 2)
    (launcher,) = sent["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"]
    assert launcher["command"][-2:] == ["ring", "$$(X) ; y"]
