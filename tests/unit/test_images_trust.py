"""The cache's trust rules (hpcjobs/images/trust.py): what is served, what is refused and why.

Real files in a temp dir for the per-user cache; the shared-cache rules (other owners, groups) are
checked on constructed stat results, since a unit test runs as one user. The same attacks run as
two real users on the dev cluster in tests/cluster/test_image_cache_trust_cluster.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import pytest

from hpcjobs.images.check import check_cache
from hpcjobs.images.sif import write_test_sif
from hpcjobs.images.store import ImageStore, rmtree_quiet
from hpcjobs.images.trust import Rules, UntrustedCache, load_json

K1 = "sha256:" + "1" * 64
S1 = "sha256-" + "1" * 64
TOP = "sha256:" + "a" * 64
CFG = "sha256:" + "b" * 64
ME = os.getuid()


def publish(store: ImageStore, key: str = K1, payload: bytes = b"x") -> str:
    store.ensure()
    tmp = store.temp_sif(key)
    write_test_sif(tmp, payload)
    return store.publish(key, tmp, {"source": "test"}).path


def fake_stat(mode: int, uid: int = ME, gid: int = 100, size: int = 0) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, gid, size, 0, 0, 0))


def shared_rules(owner: int = 0, gid: int = 100, uid: int = 1500) -> Rules:
    return Rules("shared", Path("/c"), owner, gid, uid, 0o440)


# -- entries -----------------------------------------------------------------------------------
def test_published_entry_is_served(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    path = publish(store)
    entry = store.find(K1)
    assert entry is not None and entry.path == path
    meta = json.loads(store.layer.meta(S1).read_text())
    assert meta["creator_uid"] == ME and meta["sha256"].startswith("sha256:") and meta["size"] == entry.size


def test_symlink_entry_refused(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    path = Path(publish(store))
    evil = tmp_path / "evil.sif"
    write_test_sif(evil, b"evil")
    path.unlink()
    path.symlink_to(evil)
    with pytest.raises(UntrustedCache, match=r"sha256-1+\.sif: not served: a symlink; fix: rm -f "):
        store.find(K1)
    assert store.entries() == []  # listing skips it instead of failing


def test_fifo_entry_refused_without_blocking(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    store.ensure()
    os.mkfifo(store.layer.sif(S1))
    with pytest.raises(UntrustedCache, match="not a regular file"):
        store.find(K1)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("no-meta", "no metadata record"),
        ("meta-size", "does not match it"),
        ("meta-digest", "does not match it"),
        ("meta-uid", "names uid"),
        ("meta-mode", "its metadata record is mode 644"),
        ("meta-link", "its metadata record is a symlink"),
        ("sif-mode", "mode 644, not 444"),
    ],
)
def test_entry_that_breaks_its_promise_is_refused(tmp_path: Path, change: str, reason: str) -> None:
    store = ImageStore(str(tmp_path / "c"))
    path = Path(publish(store))
    meta = store.layer.meta(S1)
    rec = json.loads(meta.read_text())
    meta.chmod(0o644)
    if change == "no-meta":
        meta.unlink()
    elif change == "meta-link":
        other = tmp_path / "m.json"
        other.write_text(json.dumps(rec))
        meta.unlink()
        meta.symlink_to(other)
    elif change == "sif-mode":
        meta.chmod(0o444)
        path.chmod(0o644)
    elif change != "meta-mode":
        key = {"meta-size": "size", "meta-digest": "digest", "meta-uid": "creator_uid"}[change]
        rec[key] = {"size": 1, "digest": "sha256:" + "2" * 64, "creator_uid": ME + 1}[key]
        meta.write_text(json.dumps(rec))
        meta.chmod(0o444)
    with pytest.raises(UntrustedCache, match=reason):
        store.find(K1)


def test_verify_always_hashes_on_every_hit(tmp_path: Path) -> None:
    root = str(tmp_path / "c")
    path = Path(publish(ImageStore(root), payload=b"payload"))
    assert ImageStore(root, verify_hits=True).find(K1) is not None
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))  # same size: only the content check sees it
    path.chmod(0o444)
    assert ImageStore(root).find(K1) is not None  # the default lookup does not read the file
    with pytest.raises(UntrustedCache, match="content does not match the sha256"):
        ImageStore(root, verify_hits=True).find(K1)


def test_verify_always_refuses_a_record_without_sha256(tmp_path: Path) -> None:
    root = str(tmp_path / "c")
    publish(ImageStore(root))
    meta = ImageStore(root).layer.meta(S1)
    rec = json.loads(meta.read_text())
    del rec["sha256"]
    meta.chmod(0o644)
    meta.write_text(json.dumps(rec))
    meta.chmod(0o444)
    with pytest.raises(UntrustedCache, match="no sha256"):
        ImageStore(root, verify_hits=True).find(K1)


def test_stale_own_record_of_a_dead_publisher_is_replaced(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    store.ensure()
    meta = store.layer.meta(S1)
    meta.write_text(json.dumps({"digest": K1, "size": 1, "creator_uid": ME}))  # died before its link
    meta.chmod(0o444)
    publish(store)
    assert store.find(K1) is not None


# -- memos ---------------------------------------------------------------------------------------
def test_memo_round_trip_and_refusals(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    store.memo_put(TOP, "linux/amd64", TOP, CFG)
    assert store.memo_get(TOP, "linux/amd64") == (TOP, CFG)
    path = store.layer.memo_path(TOP, "linux/amd64")
    rec = json.loads(path.read_text())
    path.unlink()
    other = tmp_path / "memo.json"
    other.write_text(json.dumps(rec))
    path.symlink_to(other)
    with pytest.raises(UntrustedCache, match="digest memo not trusted: a symlink"):
        store.memo_get(TOP, "linux/amd64")
    path.unlink()
    path.write_text(json.dumps({**rec, "digest": CFG}))
    path.chmod(0o444)
    with pytest.raises(UntrustedCache, match="does not match its name"):
        store.memo_get(TOP, "linux/amd64")
    path.chmod(0o644)
    path.write_text(json.dumps(rec))
    with pytest.raises(UntrustedCache, match="mode 644"):
        store.memo_get(TOP, "linux/amd64")


# -- directories -----------------------------------------------------------------------------------
def test_symlinked_subdirectory_refused(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    store.ensure()
    os.rmdir(store.layer.root / "sif")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (store.layer.root / "sif").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UntrustedCache, match=r"/sif: a symlink, not the cache's directory"):
        ImageStore(str(tmp_path / "c")).find(K1)


def test_shared_directory_rules() -> None:
    r = shared_rules()
    d = stat.S_IFDIR
    assert r.dir_problem(Path("/c/sif"), fake_stat(d | 0o3770, uid=0), "sif") is None
    assert r.dir_problem(Path("/c/locks"), fake_stat(d | 0o2770, uid=0), "locks") is None
    p = r.dir_problem(Path("/c/sif"), fake_stat(d | 0o2770, uid=1500), "sif")  # the pre-created sif/
    assert p is not None and "can delete or swap anyone's entries" in p.what
    assert "install -d -o root" in p.fix and "-m 3770" in p.fix
    p = r.dir_problem(Path("/c/sif"), fake_stat(d | 0o2770, uid=0), "sif")
    assert p is not None and p.what == "mode 2770, not 3770" and p.fix == "chmod 3770 /c/sif"
    p = r.dir_problem(Path("/c/sif"), fake_stat(d | 0o3770, uid=0, gid=5), "sif")
    assert p is not None and "not the cache's group" in p.what
    p = r.dir_problem(Path("/c/sif"), fake_stat(stat.S_IFLNK | 0o777, uid=1500), "sif")
    assert p is not None and "a symlink" in p.what
    p = r.root_problem(fake_stat(d | 0o2770, uid=0))
    assert p is not None and "group-writable without the sticky bit" in p.what and p.fix == "chmod 3770 /c"
    p = r.root_problem(fake_stat(d | 0o3777, uid=0))
    assert p is not None and "world-writable" in p.what
    assert shared_rules(owner=7).root_problem(fake_stat(d | 0o3770, uid=0)) is not None  # images.cache_owner


def test_apptainer_cache_dir_must_be_the_users() -> None:
    r = shared_rules(uid=0)
    d = stat.S_IFDIR
    assert r.user_dir_problem(Path("/c/apptainer-cache/0"), fake_stat(d | 0o700, uid=0)) is None
    p = r.user_dir_problem(Path("/c/apptainer-cache/0"), fake_stat(d | 0o700, uid=1500))
    assert p is not None and "whose apptainer cache it is" in p.what and p.fix.startswith("rm -rf ")
    assert r.user_dir_problem(Path("/c/apptainer-cache/0"), fake_stat(d | 0o770, uid=0)) is not None


def test_shared_file_rules() -> None:
    r = shared_rules()
    f = stat.S_IFREG
    assert r.file_problem("/c/sif/x", fake_stat(f | 0o440, uid=1500), publisher=1500) is None
    assert "group" in (r.file_problem("/c/sif/x", fake_stat(f | 0o440, gid=5)) or "")
    assert "mode 640" in (r.file_problem("/c/sif/x", fake_stat(f | 0o640)) or "")
    assert "metadata record was written by" in (
        r.file_problem("/c/sif/x", fake_stat(f | 0o440, uid=1500), publisher=0) or ""
    )


def test_site_layer_rules() -> None:
    site = Rules("site", Path("/s"), 0, 0, 1500, 0o444, frozenset({0, 1500}))
    assert site.root_problem(fake_stat(stat.S_IFDIR | 0o555, uid=0)) is None
    assert site.root_problem(fake_stat(stat.S_IFDIR | 0o775, uid=0)) is not None  # group-writable
    assert site.root_problem(fake_stat(stat.S_IFDIR | 0o555, uid=4242)) is not None  # not root/owner/you
    assert site.file_problem("/s/sif/x", fake_stat(stat.S_IFREG | 0o444, uid=4242)) is not None
    assert site.file_problem("/s/sif/x", fake_stat(stat.S_IFREG | 0o664, uid=0)) is not None
    assert site.file_problem("/s/sif/x", fake_stat(stat.S_IFREG | 0o644, uid=0)) is None


def test_non_owner_cannot_create_shared_subdirectories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "c"
    root.mkdir()
    root.chmod(0o3770)
    store = ImageStore(str(root), shared=True, owner=ME + 1)  # designated owner: somebody else
    monkeypatch.setattr(store, "uid", ME + 2)
    with pytest.raises(UntrustedCache) as exc:
        store.ensure()
    assert "not by its designated owner" in str(exc.value)
    assert os.listdir(root) == []


def test_private_cache_of_someone_else_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(str(tmp_path / "c"))
    store.ensure()
    other = ImageStore(str(tmp_path / "c"))
    monkeypatch.setattr(other, "uid", ME + 1)
    with pytest.raises(UntrustedCache, match="a private cache owned by"):
        other.find(K1)


# -- images check ----------------------------------------------------------------------------------
def test_check_reports_and_fixes(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    assert [f.problem.what for f in check_cache(store)] == ["does not exist"]
    path = Path(publish(store))
    assert check_cache(store) == []
    path.unlink()
    path.symlink_to(tmp_path / "nowhere.sif")
    (store.layer.root / "meta").chmod(0o775)
    findings = check_cache(ImageStore(str(tmp_path / "c")))
    assert sorted(f.problem.what for f in findings) == ["mode 775 lets others write", "not served: a symlink"]
    assert all(not f.fixed and f.problem.fix for f in findings)
    fixed = check_cache(ImageStore(str(tmp_path / "c")), fix=True)
    assert all(f.fixed for f in fixed) and len(fixed) == 2
    assert not os.path.lexists(path) and check_cache(ImageStore(str(tmp_path / "c"))) == []


# -- bookkeeping records never follow a planted link ------------------------------------------------
def test_use_record_never_creates_a_planted_links_target(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    publish(store)
    target = tmp_path / "created-by-victim"
    use = store.layer.root / "uses" / f"{S1}.{ME}"
    with contextlib.suppress(FileNotFoundError):
        use.unlink()
    use.symlink_to(target)  # dangling: an O_CREAT that follows it would create the target
    store.touch(K1)
    assert not target.exists()


def test_records_are_read_without_following_links(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    store.ensure()
    (store.layer.root / "leases" / f"{S1}.{ME + 1}.json").symlink_to("/dev/zero")  # would never end
    (store.layer.root / "refs" / f"x.{ME + 1}.json").symlink_to("/dev/zero")
    assert store.leased_until(S1) is None and store.refs_by_digest() == {}
    assert load_json("/dev/zero") is None


def test_rmtree_does_not_chmod_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    victim.chmod(0o755)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "link").symlink_to(victim)
    assert rmtree_quiet(str(tree)) == 1
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o755 and not tree.exists()
