"""The image cache against the real dev cluster: real apptainer, the real registry, real Slurm jobs.

Conversions are counted by a wrapper around apptainer (``--apptainer WRAPPER``) that appends one
line per ``build`` to a file, so "exactly one conversion" counts real apptainer builds.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterenv import Cluster, job_output, sbatch_script, wait_job

from hpcjobs import images
from hpcjobs.config import load_site_text
from hpcjobs.images.sif import verify_sif
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SITE_FILE = REPO / "site-configs" / "dev-cluster.yaml"
PY = sys.executable
APPTAINER = shutil.which("apptainer") or "/usr/bin/apptainer"

WRAPPER = """#!/bin/bash
# counts apptainer builds, then behaves as the test asks (HPCJOBS_TEST_MODE)
if [ "$1" = build ]; then
  echo "$$ $*" >> {count}
  dest="${{@: -2:1}}"
  case "${{HPCJOBS_TEST_MODE:-}}" in
    sleep-before) touch {ready}; sleep 300 ;;
    partial) head -c 200000 {tiny_sif} > "$dest"; touch {ready}; sleep 300 ;;
    after) {apptainer} "$@" || exit $?; touch {ready}; sleep 300 ;;
  esac
fi
exec {apptainer} "$@"
"""


@pytest.fixture
def work(cluster: Cluster) -> Iterator[dict[str, Path]]:
    # under /tmp with traversable parents: the unprivileged test user reaches the files too
    tmp = Path(tempfile.mkdtemp(prefix="hpcjobs-images-", dir="/tmp"))
    tmp.chmod(0o755)
    count, ready = tmp / "builds", tmp / "ready"
    wrapper = tmp / "apptainer-counting"
    wrapper.write_text(
        WRAPPER.format(count=count, ready=ready, tiny_sif=cluster.image("tiny_sif"), apptainer=APPTAINER)
    )
    wrapper.chmod(0o755)
    try:
        yield {"cache": tmp / "cache", "count": count, "ready": ready, "wrapper": wrapper, "tmp": tmp}
    finally:
        for dirpath, _d, _f in os.walk(tmp):
            with contextlib.suppress(OSError):
                os.chmod(dirpath, 0o755)
        shutil.rmtree(tmp, ignore_errors=True)


def builds(work: dict[str, Path]) -> int:
    return len(work["count"].read_text().splitlines()) if work["count"].exists() else 0


def pull_cmd(work: dict[str, Path], ref: str, *extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "hpcjobs.images",
        "--cache-dir",
        str(work["cache"]),
        "pull",
        "--json",
        "--apptainer",
        str(work["wrapper"]),
        *extra,
        ref,
    ]


def pull(work: dict[str, Path], ref: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = subprocess.run(
        pull_cmd(work, ref, *extra),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=str(work["tmp"]),
    )
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def run_sif(path: str, *args: str) -> str:
    r = subprocess.run([APPTAINER, "run", "--no-eval", path, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


# -- one conversion for sixteen processes -----------------------------------------------------
def test_sixteen_concurrent_pulls_convert_once(cluster: Cluster, work: dict[str, Path]) -> None:
    ref = f"docker-archive:{cluster.image('tiny_docker_archive')}"
    procs = [
        subprocess.Popen(
            pull_cmd(work, ref), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(work["tmp"])
        )
        for _ in range(16)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [e for _, e in outs]
    entries = [json.loads(o) for o, _ in outs]
    assert builds(work) == 1  # exactly one real apptainer build
    assert len({e["path"] for e in entries}) == 1
    assert sorted(e["origin"] for e in entries).count("converted") == 1
    path = entries[0]["path"]
    verify_sif(path)
    assert "entry: hi" in run_sif(path, "hi")
    assert os.stat(path).st_mode & 0o777 == 0o444


# -- kill -9 at several points ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sleep-before", "partial", "after"])
def test_kill_9_leaves_nothing_served(cluster: Cluster, work: dict[str, Path], mode: str) -> None:
    ref = f"oci-archive:{cluster.image('tiny_oci_archive')}"
    p = subprocess.Popen(
        pull_cmd(work, ref),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HPCJOBS_TEST_MODE": mode},
        start_new_session=True,
        cwd=str(work["tmp"]),
    )
    deadline = time.monotonic() + 60
    while not work["ready"].exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert work["ready"].exists(), p.stderr.read() if p.stderr else ""
    os.killpg(p.pid, signal.SIGKILL)  # the whole conversion: python, wrapper, apptainer
    p.wait()
    sif_dir = work["cache"] / "sif"
    assert [n for n in os.listdir(sif_dir) if not n.startswith(".")] == []  # nothing published
    assert images.list_entries(cache_dir=str(work["cache"])) == []
    assert os.listdir(work["cache"] / "locks")  # the dead conversion's lock is still there
    t0 = time.monotonic()
    entry = pull(work, ref)  # takes the stale lock over (same host, pid gone) and converts again
    assert time.monotonic() - t0 < 30
    assert entry["origin"] == "converted" and builds(work) == 2
    verify_sif(entry["path"])
    assert "entry: again" in run_sif(entry["path"], "again")
    assert [n for n in os.listdir(sif_dir) if n.startswith(".")] == []  # leftover temp removed
    assert os.listdir(work["cache"] / "locks") == []


# -- the registry: tags move, digests pin -----------------------------------------------------
def _modified_layout(src: Path, dest: Path, marker: bytes) -> None:
    """Copy the tiny OCI layout and add a layer holding /marker.txt: a new image, new digests."""
    shutil.copytree(src, dest)
    blobs = dest / "blobs" / "sha256"
    index = json.loads((dest / "index.json").read_text())
    mdesc = index["manifests"][0]
    manifest = json.loads((blobs / mdesc["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("marker.txt")
        ti.size, ti.mode = len(marker), 0o644
        t.addfile(ti, io.BytesIO(marker))
    layer = buf.getvalue()
    layer_gz = gzip.compress(layer, mtime=0)

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return "sha256:" + h

    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(layer).hexdigest())
    cfg = json.dumps(config).encode()
    manifest["layers"].append(
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(layer_gz), "size": len(layer_gz)}
    )
    manifest["config"] = {**manifest["config"], "digest": put(cfg), "size": len(cfg)}
    mbytes = json.dumps(manifest).encode()
    mdesc.update(digest=put(mbytes), size=len(mbytes))
    (dest / "index.json").write_text(json.dumps(index))


def skopeo_copy(src: str, dest: str) -> None:
    r = subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", src, dest], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr


def test_registry_tag_moves_and_digest_pins(cluster: Cluster, work: dict[str, Path]) -> None:
    repo = f"{cluster.registry}/test/hpcjobs-images-{secrets.token_hex(4)}"
    skopeo_copy(f"oci:{cluster.image('tiny_oci_dir')}", f"docker://{repo}:1")
    first = pull(work, f"docker://{repo}:1")
    assert first["origin"] == "converted" and builds(work) == 1
    assert pull(work, f"docker://{repo}:1")["origin"] == "hit" and builds(work) == 1

    changed = work["tmp"] / "changed-layout"
    _modified_layout(Path(cluster.image("tiny_oci_dir")), changed, b"second version\n")
    skopeo_copy(f"oci:{changed}", f"docker://{repo}:1")  # the same tag, new content
    second = pull(work, f"docker://{repo}:1")
    assert second["origin"] == "converted" and second["digest"] != first["digest"] and builds(work) == 2
    assert second["path"] != first["path"] and os.path.exists(first["path"])  # old kept until gc
    r = subprocess.run([APPTAINER, "exec", second["path"], "cat", "/marker.txt"], capture_output=True, text=True)
    assert r.stdout == "second version\n"

    # pinning the first manifest digest still gives the first image, without converting
    pinned = pull(work, f"docker://{repo}@{first['manifest']}")
    assert (pinned["path"], pinned["origin"], builds(work)) == (first["path"], "hit", 2)

    # gc (LRU) removes the older one when asked to keep one image's worth
    os.utime(work["cache"] / "uses" / f"{first['digest'].replace(':', '-')}.{os.getuid()}", (1, 1))
    m = work["cache"] / "meta" / f"{first['digest'].replace(':', '-')}.json"
    report = images.gc(max_size_bytes=second["size"], cache_dir=str(work["cache"]), in_use_grace_s=0)
    assert [e.digest for e in report.removed] == [first["digest"]]
    assert not os.path.exists(first["path"]) and os.path.exists(second["path"]) and not m.exists()


def test_first_pull_of_the_dev_registry_image(cluster: Cluster, work: dict[str, Path]) -> None:
    entry = pull(work, cluster.tiny_ref)
    assert entry["origin"] == "converted" and entry["manifest"] == cluster["tiny_manifest_digest"]
    # the same image from the three local forms: no further conversion
    for key, kind in (
        ("tiny_oci_archive", "oci-archive"),
        ("tiny_oci_dir", "oci"),
        ("tiny_docker_archive", "docker-archive"),
    ):
        assert pull(work, f"{kind}:{cluster.image(key)}")["path"] == entry["path"]
    assert builds(work) == 1


# -- a read-only site layer ------------------------------------------------------------------
def _user_can_run_python(user: str) -> bool:
    r = subprocess.run(
        ["runuser", "-u", user, "--", PY, "-c", "import hpcjobs"],
        capture_output=True,
        cwd="/tmp",
        env={**os.environ, "HOME": "/tmp"},
    )
    return r.returncode == 0


def test_read_only_site_layer_hit(cluster: Cluster, work: dict[str, Path]) -> None:
    site_cache = work["tmp"] / "site-cache"
    ref = f"oci-archive:{cluster.image('tiny_oci_archive')}"
    staged = subprocess.run(
        [PY, "-m", "hpcjobs.images", "--cache-dir", str(site_cache), "pull", ref],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert staged.returncode == 0, staged.stderr
    for dirpath, _dirnames, filenames in os.walk(site_cache):  # what an admin does: read-only for all
        os.chmod(dirpath, 0o555)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o444)
    site_yaml = work["tmp"] / "site.yaml"
    site_yaml.write_text(_with_images(SITE_FILE.read_text(), {"site_caches": [str(site_cache)]}))
    try:
        entry = pull(work, ref, env={"HPCJOBS_SITE": str(site_yaml)})  # a fresh writable cache
        assert entry["layer"] == "site" and entry["path"].startswith(str(site_cache)) and builds(work) == 0
        assert not (work["cache"] / "sif").exists() or not os.listdir(work["cache"] / "sif")
        user = cluster.test_user
        r = subprocess.run(
            ["runuser", "-u", user, "--", APPTAINER, "run", "--no-eval", entry["path"], "x"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/tmp",
        )
        assert "entry: x" in r.stdout, r.stderr  # an unprivileged user runs the site entry
        if _user_can_run_python(user):
            argv = [
                "runuser",
                "-u",
                user,
                "--",
                PY,
                "-m",
                "hpcjobs.images",
                "--cache-dir",
                "/tmp/hpcjobs-uc",
                "pull",
                "--json",
                ref,
            ]
            r = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=120,
                cwd="/tmp",
                env={**os.environ, "HPCJOBS_SITE": str(site_yaml), "HOME": "/tmp"},
            )
            assert r.returncode == 0 and json.loads(r.stdout)["layer"] == "site", r.stderr
    finally:
        for dirpath, _d, _f in os.walk(site_cache):
            os.chmod(dirpath, 0o755)


def _with_images(text: str, images_cfg: dict[str, Any]) -> str:
    import yaml

    data = yaml.safe_load(text)
    data.setdefault("images", {}).update(images_cfg)
    return str(yaml.safe_dump(data))


# -- shared cache: group-readable, never replaceable by another user ---------------------------
def test_shared_cache_permissions(cluster: Cluster, work: dict[str, Path]) -> None:
    import pwd

    user = cluster.test_user
    gid = pwd.getpwnam(user).pw_gid
    shared = work["tmp"] / "shared"
    shared.mkdir()
    os.chown(shared, 0, gid)
    shared.chmod(0o3770)  # as the admin guide says: setgid + sticky, group rwx, nothing for others
    ref = f"docker-archive:{cluster.image('tiny_docker_archive')}"
    r = subprocess.run(
        [PY, "-m", "hpcjobs.images", "--cache-dir", str(shared), "pull", "--shared", "--json", ref],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout)
    path = entry["path"]
    st = os.stat(path)
    assert (st.st_mode & 0o777, st.st_gid) == (0o440, gid)  # group-readable via the setgid directory
    assert os.stat(shared / "sif").st_mode & 0o7777 == 0o3770
    assert os.stat(shared / "locks").st_mode & 0o7777 == 0o2770
    for dirpath, dirnames, filenames in os.walk(shared):
        for n in dirnames + filenames:
            assert not os.lstat(os.path.join(dirpath, n)).st_mode & 0o002, n  # nothing world-writable

    def as_user(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=60, cwd="/tmp"
        )

    assert "entry: shared" in as_user(APPTAINER, "run", "--no-eval", path, "shared").stdout  # group member runs it
    other = shared / "sif" / "by-user.tmp"
    assert as_user("sh", "-c", f"echo x > '{other}'").returncode == 0  # the group may add files …
    assert as_user("mv", "-f", str(other), path).returncode != 0  # … but never replace another's entry
    assert as_user("rm", "-f", path).returncode != 0
    assert as_user("sh", "-c", f"echo x >> '{path}'").returncode != 0
    verify_sif(path)
    other.unlink()


# -- jobs on the real cluster -------------------------------------------------------------------
def _site(**images_cfg: Any) -> Any:
    if SITE_FILE.is_file():
        return load_site_text(_with_images(SITE_FILE.read_text(), images_cfg), str(SITE_FILE))
    return load_site_text(
        _with_images("name: dev\ndefault_partition: cpu\npartitions: {cpu: {}, gpu: {}}\n", images_cfg), "inline"
    )


def test_job_runs_from_the_cached_sif(cluster: Cluster, job_dir: Path) -> None:
    cache_dir = job_dir / "cache"
    site = _site()
    spec = JobSpec(image=f"oci-archive:{cluster.image('tiny_oci_archive')}", command=["from-cache"], time_min=5)
    job = images.prepare_job(resolve(spec, site), site, cache_dir=str(cache_dir))
    assert job.image.startswith(str(cache_dir / "sif")) and job.image_digest
    script = render(job)
    assert f"# image digest: {job.image_digest}" in script and job.image in script
    job_id = sbatch_script(script, cwd=job_dir)
    assert wait_job(job_id) == ("COMPLETED", 0)
    out = job_output(job_dir, job_id, f"hpcjobs-{job.name}-{{id}}.out")
    assert "entry: from-cache" in out


def test_conversion_as_a_dependent_slurm_job(cluster: Cluster, job_dir: Path) -> None:
    from hpcjobs.api import plan_submitter
    from hpcjobs.schedulers import get_scheduler

    cache_dir = job_dir / "cache"
    site = _site(convert_on="slurm", build_partition="cpu", build_time_min=10)
    spec = JobSpec(image=cluster.tiny_ref, command=["after-conversion"], time_min=5)
    submitter = plan_submitter(get_scheduler(prefer="cli"))
    job = images.prepare_job(resolve(spec, site), site, submitter=submitter, cache_dir=str(cache_dir))
    assert job.dependency and job.dependency.startswith("afterok:")
    assert not os.path.exists(job.image)  # cold: the conversion job makes it
    conv_id = job.dependency.split(":", 1)[1]
    script = render(job)
    assert f"#SBATCH --dependency=afterok:{conv_id}" in script
    job_id = sbatch_script(script, cwd=job_dir)
    assert wait_job(conv_id, timeout_s=180) == ("COMPLETED", 0)
    assert wait_job(job_id, timeout_s=180) == ("COMPLETED", 0)
    out = job_output(job_dir, job_id, f"hpcjobs-{job.name}-{{id}}.out")
    assert "entry: after-conversion" in out
    verify_sif(job.image)
    logs = list((cache_dir / "logs").glob(f"hpcjobs-convert-{conv_id}.out"))
    assert logs and logs[0].read_text().strip().splitlines()[-1] == job.image  # the job printed the path
    # once converted, preparing again needs no conversion job
    again = images.prepare_job(
        resolve(spec, site), site, submitter=plan_submitter(get_scheduler(prefer="cli")), cache_dir=str(cache_dir)
    )
    assert (again.image, again.dependency) == (job.image, None)
