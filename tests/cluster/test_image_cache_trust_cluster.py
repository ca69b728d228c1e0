"""The shared image cache against a hostile group member, on the real dev cluster (issue 8, items 6
and 7): root is the cache's owner and a victim, the test user ``hpctest`` (a member of the cache's
group) plants files, symlinks, directories and memos, and swaps entries. Nothing planted is ever
served: each attempt is refused with a one-line error that names the fix, and ``images check``
reports it. Everything runs the real CLI as the real users; images run in real apptainer.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterenv import Cluster

from tests.cluster.test_user_cli import UserCli, user_cli  # noqa: F401  (fixture: hpcjobs run as hpctest)

pytestmark = pytest.mark.cluster

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
APPTAINER = shutil.which("apptainer") or "/usr/bin/apptainer"


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=60, cwd="/tmp")


def hpcjobs_root(*args: str, cwd: Path | str = "/tmp") -> subprocess.CompletedProcess[str]:
    """The CLI as root (the cache's owner), with no site config in the way (the suite's warm-start
    choice kept: a warm server would outlive the test, conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCJOBS_") or k == "HPCJOBS_WARM"}
    return subprocess.run([PY, "-m", "hpcjobs", *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.fixture
def shared(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """A shared cache set up as docs/admin-image-cache.md says (root-owned, group hpctest)."""
    user = cluster.test_user
    gid = pwd.getpwnam(user).pw_gid
    tmp = Path(tempfile.mkdtemp(prefix="hpcjobs-trust-", dir="/tmp"))
    tmp.chmod(0o755)
    cache = tmp / "shared"
    subprocess.run(["install", "-d", "-o", "root", "-g", str(gid), "-m", "3770", str(cache)], check=True)
    ref = f"docker-archive:{cluster.image('tiny_docker_archive')}"
    r = hpcjobs_root("images", "--cache-dir", str(tmp / "probe"), "inspect", "--no-labels", ref)
    assert r.returncode == 0, r.stderr
    digest = json.loads(r.stdout)["digest"]
    evil = tmp / "evil.sif"  # another image the planter wants run: the MPI image, owned by the planter
    shutil.copy(cluster.image("mpi_sif"), evil)
    os.chown(evil, pwd.getpwnam(user).pw_uid, gid)
    try:
        yield {
            "cache": cache,
            "user": user,
            "gid": gid,
            "ref": ref,
            "stem": digest.replace(":", "-", 1),
            "evil": evil,
            "tmp": tmp,
        }
    finally:
        for dirpath, _d, _f in os.walk(tmp):
            with contextlib.suppress(OSError):
                os.chmod(dirpath, 0o755)
        shutil.rmtree(tmp, ignore_errors=True)


def setup_cache(s: dict[str, Any]) -> None:
    r = hpcjobs_root("images", "--cache-dir", str(s["cache"]), "check", "--shared", "--fix")
    assert r.returncode == 0, r.stdout + r.stderr
    assert hpcjobs_root("images", "--cache-dir", str(s["cache"]), "check", "--shared").returncode == 0


def root_pull(s: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return hpcjobs_root("images", "--cache-dir", str(s["cache"]), "pull", "--shared", "--json", *extra, s["ref"])


def refused(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one-line refusal (exit 2) naming the problem and a fix."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("hpcjobs: error: ")]
    assert len(lines) == 1, r.stderr
    assert "image cache refused" in lines[0] and "fix: " in lines[0], lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert r.stdout == ""  # no path printed: nothing served
    return lines[0]


def runs_tiny(path: str) -> bool:
    r = subprocess.run([APPTAINER, "run", "--no-eval", path, "probe"], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and "entry: probe" in r.stdout


# -- set-up -----------------------------------------------------------------------------------
def test_set_up_and_check(shared: dict[str, Any]) -> None:
    cache = shared["cache"]
    r = hpcjobs_root("images", "--cache-dir", str(cache), "check", "--shared")
    assert r.returncode == 1 and f"{cache}/sif: missing" in r.stdout, r.stdout  # says what is wrong …
    assert "check --shared --fix" in r.stdout  # … and the fix
    setup_cache(shared)
    for name in ("sif", "meta", "digests", "refs", "uses", "leases", "tmp", "logs", "apptainer-cache"):
        st = os.lstat(cache / name)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, shared["gid"], 0o3770), name
    assert os.lstat(cache / "locks").st_mode & 0o7777 == 0o2770


def test_first_user_of_a_fresh_cache_does_not_own_its_subdirectories(
    shared: dict[str, Any],
    user_cli: UserCli,  # noqa: F811
) -> None:
    """Whoever touches a fresh shared cache first must not end up able to delete others' entries."""
    r = user_cli("images", "--cache-dir", str(shared["cache"]), "pull", "--shared", shared["ref"], cwd=shared["tmp"])
    line = refused(r, "missing", "check --shared --fix")
    assert "root" in line  # who may create it
    assert os.listdir(shared["cache"]) == []  # nothing created by the user


def test_group_member_uses_the_shared_cache(shared: dict[str, Any], user_cli: UserCli) -> None:  # noqa: F811
    setup_cache(shared)
    r = root_pull(shared)
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["path"]
    r = user_cli(
        "images", "--cache-dir", str(shared["cache"]), "pull", "--shared", "--json", shared["ref"], cwd=shared["tmp"]
    )
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout)
    assert (entry["path"], entry["origin"]) == (path, "hit")  # root's entry serves the group member
    assert as_user(shared["user"], "rm", "-f", path).returncode != 0
    assert as_user(shared["user"], "mv", str(shared["cache"] / "sif"), str(shared["cache"] / "sif.old")).returncode != 0


# -- item 6: planting ---------------------------------------------------------------------------
def test_planted_symlink_entry_is_never_served(shared: dict[str, Any], user_cli: UserCli) -> None:  # noqa: F811
    setup_cache(shared)
    entry = shared["cache"] / "sif" / f"{shared['stem']}.sif"
    assert as_user(shared["user"], "ln", "-s", str(shared["evil"]), str(entry)).returncode == 0
    refused(root_pull(shared), str(entry), "not served: a symlink")
    r = user_cli("images", "--cache-dir", str(shared["cache"]), "pull", "--shared", shared["ref"], cwd=shared["tmp"])
    refused(r, "a symlink")  # not for the planter either
    r = hpcjobs_root("images", "--cache-dir", str(shared["cache"]), "check", "--shared")
    assert r.returncode == 1 and str(entry) in r.stdout and "a symlink" in r.stdout
    r = hpcjobs_root("images", "--cache-dir", str(shared["cache"]), "check", "--shared", "--fix")
    assert r.returncode == 0 and "fixed: " in r.stdout, r.stdout
    r = root_pull(shared)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["origin"] == "converted" and not os.path.islink(got["path"]) and runs_tiny(got["path"])


def test_planted_file_without_or_with_a_forged_record_is_never_served(shared: dict[str, Any]) -> None:
    setup_cache(shared)
    user, cache, stem = shared["user"], shared["cache"], shared["stem"]
    entry = cache / "sif" / f"{stem}.sif"
    assert as_user(user, "sh", "-c", f"cp {shared['evil']} {entry} && chmod 440 {entry}").returncode == 0
    refused(root_pull(shared), "not served: no metadata record")
    size = os.stat(entry).st_size
    forged = json.dumps({"digest": stem.replace("-", ":", 1), "size": size, "creator_uid": 0})  # claims root's
    meta = cache / "meta" / f"{stem}.json"
    assert as_user(user, "sh", "-c", f"printf '%s' '{forged}' > {meta} && chmod 440 {meta}").returncode == 0
    refused(root_pull(shared), "names uid 0 but is owned by " + user)


def test_planted_digest_memo_is_never_trusted(cluster: Cluster, shared: dict[str, Any]) -> None:
    setup_cache(shared)
    top = cluster["tiny_manifest_digest"]
    ref = cluster.tiny_ref.rsplit(":", 1)[0] + "@" + top  # pinned: resolved from the memo if there is one
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    memo = shared["cache"] / "digests" / f"{top.replace(':', '-', 1)}.linux-{arch}.json"
    wrong = shared["tmp"] / "memo.json"
    wrong.write_text(json.dumps({"digest": top, "platform": f"linux/{arch}", "manifest": top, "config": top}))
    wrong.chmod(0o644)
    assert as_user(shared["user"], "ln", "-s", str(wrong), str(memo)).returncode == 0
    r = hpcjobs_root("images", "--cache-dir", str(shared["cache"]), "pull", "--shared", ref)
    refused(r, str(memo), "digest memo not trusted: a symlink")
    os.unlink(memo)
    other = "sha256:" + "0" * 64  # a regular file, right mode, but its record is for another digest
    rec = json.dumps({"digest": other, "platform": f"linux/{arch}", "manifest": top, "config": top})
    assert as_user(shared["user"], "sh", "-c", f"printf '%s' '{rec}' > {memo} && chmod 440 {memo}").returncode == 0
    r = hpcjobs_root("images", "--cache-dir", str(shared["cache"]), "pull", "--shared", ref)
    refused(r, "digest memo not trusted: a record that does not match its name")


# -- item 7: swapping, pre-created directories ----------------------------------------------------
def test_published_entry_cannot_be_swapped(shared: dict[str, Any]) -> None:
    setup_cache(shared)
    r = root_pull(shared)
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["path"]
    user = shared["user"]
    staged = shared["cache"] / "sif" / "x.tmp"
    assert as_user(user, "sh", "-c", f"cp {shared['evil']} {staged} && chmod 440 {staged}").returncode == 0
    assert as_user(user, "mv", "-f", str(staged), path).returncode != 0  # the sticky bit, root-owned sif/
    r = root_pull(shared)
    assert r.returncode == 0 and json.loads(r.stdout)["origin"] == "hit" and runs_tiny(path), r.stderr


def test_pre_created_subdirectory_is_refused(shared: dict[str, Any]) -> None:
    """As in the issue: the user pre-creates sif/ (2770, no sticky bit), root publishes, the user swaps."""
    user, cache = shared["user"], shared["cache"]
    assert as_user(user, "mkdir", "-m", "2770", str(cache / "sif")).returncode == 0
    refused(root_pull(shared), f"{cache}/sif: owned by {user}", "check --shared --fix")
    assert not list((cache / "sif").iterdir())  # root published nothing into it
    assert as_user(user, "ln", "-s", str(shared["evil"]), str(cache / "sif" / f"{shared['stem']}.sif")).returncode == 0
    r = hpcjobs_root("images", "--cache-dir", str(cache), "check", "--shared", "--fix")  # the admin's repair
    assert r.returncode == 0, r.stdout
    st = os.lstat(cache / "sif")
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o3770)
    assert not os.path.lexists(cache / "sif" / f"{shared['stem']}.sif")  # the planted link is gone
    r = root_pull(shared)
    assert r.returncode == 0 and runs_tiny(json.loads(r.stdout)["path"]), r.stderr


def test_pre_created_apptainer_cache_dir_is_refused(shared: dict[str, Any]) -> None:
    setup_cache(shared)
    mine = shared["cache"] / "apptainer-cache" / "0"  # root's layer cache, made by the planter
    assert as_user(shared["user"], "mkdir", "-m", "700", str(mine)).returncode == 0
    refused(root_pull(shared), f"{mine}: owned by {shared['user']}")
    r = hpcjobs_root("images", "--cache-dir", str(shared["cache"]), "check", "--shared", "--fix")
    assert r.returncode == 0 and not mine.exists(), r.stdout
    assert root_pull(shared).returncode == 0


def test_verify_always_catches_a_changed_entry(shared: dict[str, Any]) -> None:
    """What the sticky bit cannot stop: the publisher (here root) changing its own file in place.
    ``--verify always`` refuses it on the next hit; the default does not (docs/security.md says so)."""
    setup_cache(shared)
    r = root_pull(shared)
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["path"]
    r = root_pull(shared, "--verify", "always")
    assert r.returncode == 0 and json.loads(r.stdout)["origin"] == "hit", r.stderr
    with open(path, "r+b") as f:  # root ignores the 0440 mode
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    refused(root_pull(shared, "--verify", "always"), "does not match the sha256")
    assert root_pull(shared).returncode == 0  # the default lookup does not read the content


# -- read-only site layers ------------------------------------------------------------------------
def test_site_cache_writable_by_others_is_refused(shared: dict[str, Any]) -> None:
    site = shared["tmp"] / "site"
    r = hpcjobs_root("images", "--cache-dir", str(site), "pull", shared["ref"])
    assert r.returncode == 0, r.stderr
    subprocess.run(["chmod", "-R", "a-w,a+rX", str(site)], check=True)
    site_yaml = shared["tmp"] / "site.yaml"
    site_yaml.write_text(
        "name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n"
        f"images: {{site_caches: [{site}], cache_dir: {shared['tmp'] / 'own'}}}\n"
    )
    env_site = ["--site", str(site_yaml)]
    r = hpcjobs_root(*env_site, "images", "pull", "--json", shared["ref"])
    assert r.returncode == 0 and json.loads(r.stdout)["layer"] == "site", r.stdout + r.stderr
    os.chown(site / "sif", pwd.getpwnam(shared["user"]).pw_uid, -1)  # a user could now plant there
    refused(hpcjobs_root(*env_site, "images", "pull", shared["ref"]), f"{site}/sif: owned by {shared['user']}")
    os.chown(site / "sif", 0, -1)
    os.chmod(site / "sif", 0o775)
    refused(hpcjobs_root(*env_site, "images", "pull", shared["ref"]), "writable by group or others")


# -- jobs through the shared cache ----------------------------------------------------------------
def test_jobs_through_the_shared_cache(
    cluster: Cluster,
    shared: dict[str, Any],
    job_dir: Path,
    user_cli: UserCli,  # noqa: F811
) -> None:
    """hpctest's job runs root's published entry; root's job whose image hpctest planted a symlink
    for is refused before anything is submitted."""
    import yaml

    setup_cache(shared)
    assert root_pull(shared).returncode == 0
    site = yaml.safe_load((REPO / "site-configs" / "dev-cluster.yaml").read_text())
    site["images"].update({"cache_dir": str(shared["cache"]), "shared": True})
    site_yaml = job_dir / "site.yaml"
    site_yaml.write_text(yaml.safe_dump(site))
    site_yaml.chmod(0o644)
    (job_dir / "job.yaml").write_text(f"image: {shared['ref']}\nname: shared\ncommand: ['from shared']\n")
    r = user_cli("--site", str(site_yaml), "submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2", cwd=job_dir)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["state"] == "COMPLETED"
    assert "entry: from shared" in (job_dir / f"hpcjobs-shared-{result['job_id']}.out").read_text()
    assert len(os.listdir(shared["cache"] / "sif")) == 1  # root's entry served it: no second conversion

    mpi = f"oci:{cluster.image('mpi_oci_dir')}"
    r = hpcjobs_root("images", "--cache-dir", str(shared["tmp"] / "probe"), "inspect", "--no-labels", mpi)
    assert r.returncode == 0, r.stderr
    stem = json.loads(r.stdout)["digest"].replace(":", "-", 1)
    planted = shared["cache"] / "sif" / f"{stem}.sif"
    assert as_user(shared["user"], "ln", "-s", str(shared["evil"]), str(planted)).returncode == 0
    (job_dir / "root.yaml").write_text(f"image: {mpi}\nname: victim\ncommand: [hostname]\n")
    r = hpcjobs_root("--site", str(site_yaml), "submit", "root.yaml", cwd=job_dir)
    refused(r, str(planted), "a symlink")
    queued = subprocess.run(["squeue", "-h", "-n", "victim", "-o", "%i"], capture_output=True, text=True).stdout
    assert queued.strip() == "" and not list(job_dir.glob("hpcjobs-victim-*")), queued
