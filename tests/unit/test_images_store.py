"""The on-disk store: atomic publish that never replaces, permissions (per-user and shared),
read-only site layers, SIF verification, gc ordering / size / in-use / leases / locks."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from hpcjobs.errors import ImageError
from hpcjobs.images.lock import LeaseLock
from hpcjobs.images.sif import InvalidSif, verify_sif, write_test_sif
from hpcjobs.images.store import ImageStore

K1, K2, K3 = ("sha256:" + c * 64 for c in "123")


def publish(store: ImageStore, key: str, payload: bytes = b"x", size: int = 0) -> str:
    store.ensure()
    tmp = store.temp_sif(key)
    write_test_sif(tmp, payload + b"\0" * size)
    return store.publish(key, tmp, {"source": "test", "refs": [f"ref-{key[-4:]}"]}).path


def age(store: ImageStore, key: str, seconds: float) -> None:
    """Make every record of ``key``'s use look ``seconds`` old."""
    stem = key.replace(":", "-")
    t = time.time() - seconds
    for name in os.listdir(store.layer.root / "uses"):
        if name.startswith(stem):
            os.utime(store.layer.root / "uses" / name, (t, t))
    meta = store.layer.meta(stem)
    data = json.loads(meta.read_text())
    data["created"] = t
    meta.chmod(0o644)
    meta.write_text(json.dumps(data))
    meta.chmod(store.file_mode)  # as published: a record with another mode is not trusted


def modes(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    out["."] = stat.S_IMODE(os.stat(root).st_mode)
    return out


def test_publish_is_atomic_and_read_only(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    path = publish(store, K1, b"first")
    assert path.endswith("sif/sha256-" + "1" * 64 + ".sif")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    verify_sif(path)
    # a second publish of the same key never replaces the first
    again = publish(store, K1, b"second, different bytes")
    assert again == path and b"first" in Path(path).read_bytes()
    assert [n for n in os.listdir(tmp_path / "c" / "sif") if n.startswith(".")] == []  # temps gone
    e = store.find(K1)
    assert e is not None and e.refs == ("ref-1111",) and e.source == "test"


def test_permissions_private(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    publish(store, K1)
    store.record_ref("docker://x/y:1", K1, None)
    m = modes(tmp_path / "c")
    assert all(mode & 0o002 == 0 for mode in m.values()), m  # nothing world-writable
    assert m["."] == 0o700 and m["sif"] == 0o700 and m["locks"] == 0o700
    assert m["sif/sha256-" + "1" * 64 + ".sif"] == 0o444


def test_permissions_shared(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = ImageStore(str(tmp_path / "c"), shared=True)
        publish(store, K1)
        store.record_ref("docker://x/y:1", K1, None)
        store.touch(K1)
    finally:
        os.umask(old)
    m = modes(tmp_path / "c")
    assert all(mode & 0o002 == 0 for mode in m.values()), m
    assert m["sif"] == 0o3770  # group can add entries; sticky: nobody replaces another user's
    assert m["locks"] == 0o2770  # no sticky bit: a dead user's stale lock can be taken over
    assert m["sif/sha256-" + "1" * 64 + ".sif"] == 0o440  # group-readable, read-only
    assert m["meta/sha256-" + "1" * 64 + ".json"] == 0o440
    uses = [k for k in m if k.startswith("uses/")]
    assert uses and all(m[k] == 0o640 for k in uses)


def test_world_writable_foreign_dir_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "c"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    store = ImageStore(str(root))
    monkeypatch.setattr(store, "uid", os.getuid() + 1)  # as if someone else owned it
    with pytest.raises(ImageError, match=r"image cache refused: .*owned by .*not by you"):
        store.ensure()
    own = ImageStore(str(root))
    own.ensure()  # our own: fixed instead
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_site_layer_first_and_never_written(tmp_path: Path) -> None:
    site = ImageStore(str(tmp_path / "site"))
    site_path = publish(site, K1, b"site copy")
    for dirpath, _dirs, files in os.walk(tmp_path / "site"):
        os.chmod(dirpath, 0o555)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o444)
    try:
        user = ImageStore(str(tmp_path / "user"), (str(tmp_path / "site"),))
        publish(user, K1, b"user copy")
        e = user.find(K1)
        assert e is not None and e.layer == "site" and e.path == site_path
        assert user.find(K2) is None
        assert {x.layer for x in user.entries()} == {"site", "cache"}
        report = user.gc(max_size_bytes=0, in_use_grace_s=0)
        assert all(r.layer == "cache" for r in report.removed)
        assert os.path.exists(site_path)
    finally:
        for dirpath, _dirs, _files in os.walk(tmp_path / "site"):
            os.chmod(dirpath, 0o755)


def test_verify_sif_rejects_partial_files(tmp_path: Path) -> None:
    good = tmp_path / "good.sif"
    write_test_sif(good, b"payload" * 100)
    full = good.read_bytes()
    verify_sif(good)
    for cut in (0, 10, 64, 128, 300, 713, len(full) - 1):
        bad = tmp_path / f"cut{cut}.sif"
        bad.write_bytes(full[:cut])
        with pytest.raises(InvalidSif):
            verify_sif(bad)
    junk = tmp_path / "junk.sif"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(InvalidSif, match="magic"):
        verify_sif(junk)


def test_gc_lru_order_and_size(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    for key, ago in ((K1, 300), (K2, 100), (K3, 200)):
        publish(store, key, size=10_000)
        store.touch(key)
        age(store, key, ago)
    sizes = {e.digest: e.size for e in store.entries()}
    # keep room for exactly one: the most recently used (K2) stays
    report = store.gc(max_size_bytes=sizes[K2] + 10, in_use_grace_s=0)
    assert [e.digest for e in report.removed] == [K1, K3]  # least recently used first
    assert [e.digest for e in store.entries()] == [K2]
    assert report.freed_bytes == sizes[K1] + sizes[K3]
    assert not os.path.exists(store.layer.meta(K1.replace(":", "-")))


def test_gc_older_than(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    publish(store, K1)
    publish(store, K2)
    age(store, K1, 10 * 86400)
    age(store, K2, 1 * 86400)
    report = store.gc(older_than_days=5, in_use_grace_s=0)
    assert [e.digest for e in report.removed] == [K1]
    dry = store.gc(older_than_days=0.5, in_use_grace_s=0, dry_run=True)
    assert [e.digest for e in dry.removed] == [K2] and store.find(K2, touch=False) is not None


def test_gc_never_removes_in_use_leased_or_locked(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"), stale_after_s=30)
    for key in (K1, K2, K3):
        publish(store, key)
        age(store, key, 3600)
    store.touch(K1)  # just used
    store.add_lease(K2, 3600, note="queued job")
    lock = LeaseLock(store.layer.lock(K3.replace(":", "-")), heartbeat_s=0.1, stale_after_s=30)
    lock.acquire()
    try:
        report = store.gc(max_size_bytes=0, in_use_grace_s=600)
    finally:
        lock.release()
    assert report.removed == []
    assert {e.digest: r for e, r in report.kept} == {K1: "in use", K2: "leased", K3: "locked"}
    # an expired lease no longer protects; the lock is gone now too
    for name in os.listdir(store.layer.root / "leases"):
        p = store.layer.root / "leases" / name
        data = json.loads(p.read_text())
        data["until"] = time.time() - 1
        p.write_text(json.dumps(data))
    report = store.gc(max_size_bytes=0, in_use_grace_s=600)
    assert sorted(e.digest for e in report.removed if e.digest) == [K2, K3]


def test_gc_cleans_leftovers_of_killed_conversions(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"), stale_after_s=2)
    store.ensure()
    tmp = store.temp_sif(K1)
    tmp.write_bytes(b"half a sif")
    work = store.temp_dir(K1)
    (work / "f").write_text("x")
    old = time.time() - 60
    for p in (tmp, work):
        os.utime(p, (old, old))
    fresh = store.temp_sif(K2)
    fresh.write_bytes(b"still being written")
    report = store.gc(max_size_bytes=10**12)
    assert report.temps_removed == 2
    assert not tmp.exists() and not work.exists() and fresh.exists()
    assert store.find(K1) is None  # a temp file is never an entry


def test_touch_and_last_used(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    publish(store, K1)
    store.touch(K1)
    age(store, K1, 1000)
    before = store.entries()[0].last_used
    assert store.find(K1) is not None  # a hit records a use
    after = store.entries()[0].last_used
    assert before is not None and after is not None and after > before + 900


def test_refs_and_memo(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "c"))
    publish(store, K1)
    store.record_ref("docker://r/x:1", K1, "sha256:" + "9" * 64)
    store.record_ref("oci-archive:/weird\nname.tar", K1, None)
    store.record_ref("docker://r/x:1", K2, None)  # the tag moved
    refs = store.refs_by_digest()
    assert refs[K1] == ["oci-archive:/weird\nname.tar"] and refs[K2] == ["docker://r/x:1"]
    store.memo_put(K3, "linux/amd64", "sha256:" + "8" * 64, K1)
    assert store.memo_get(K3, "linux/amd64") == ("sha256:" + "8" * 64, K1)
    assert store.memo_get(K3, "linux/arm64") is None
