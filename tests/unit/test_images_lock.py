"""The NFS-safe lease lock: mutual exclusion across processes, heartbeat, stale takeover by age and
by dead pid, rename-based takeover that two takers cannot both win."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcjobs.errors import ImageLockTimeout
from hpcjobs.images.lock import LeaseInfo, LeaseLock, boot_id, lease_is_live, pid_alive, pid_start_time

CTX = mp.get_context("fork")


def _critical(lock_path: str, inside: str, log: str, rounds: int) -> None:
    for _ in range(rounds):
        with LeaseLock(lock_path, heartbeat_s=0.05, stale_after_s=5.0):
            # O_EXCL marker: fails if anyone else is inside at the same time
            fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
            time.sleep(0.002)
            os.unlink(inside)


def test_mutual_exclusion_across_processes(tmp_path: Path) -> None:
    lock, inside, log = str(tmp_path / "x.lock"), str(tmp_path / "inside"), str(tmp_path / "log")
    procs = [CTX.Process(target=_critical, args=(lock, inside, log, 15)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    assert len(Path(log).read_text().split()) == 8 * 15
    assert not os.path.exists(lock)


def test_lease_content_and_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "h.lock"
    with LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0, purpose="test") as lock:
        info = LeaseInfo.parse(path.read_bytes())
        assert info is not None and info == lock.info
        assert (info.host, info.pid, info.purpose) == (socket.gethostname(), os.getpid(), "test")
        os.utime(path, (0, 0))  # pretend it is old: the heartbeat must refresh it
        time.sleep(0.2)
        assert time.time() - path.stat().st_mtime < 1.0
        assert lease_is_live(path, 1.0)
        assert lock.held and not lock.lost
    assert not path.exists()


def _write_lease(
    path: Path, *, host: str, pid: int, start: str = "", boot: str | None = None, age: float = 0
) -> bytes:
    info = LeaseInfo(
        host, boot if boot is not None else boot_id(), pid, start, "tok" + str(pid), time.time() - age
    )
    data = info.dump()
    path.write_bytes(data)
    t = time.time() - age
    os.utime(path, (t, t))
    return data


def test_stale_by_age_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "a.lock"
    _write_lease(path, host="other-node", pid=4242, age=3600)
    taken: list[str] = []
    lock = LeaseLock(
        path,
        heartbeat_s=0.05,
        stale_after_s=2.0,
        timeout_s=5,
        on_takeover=lambda info, reason: taken.append(reason),
    )
    t0 = time.monotonic()
    with lock:
        assert time.monotonic() - t0 < 1.0
        assert LeaseInfo.parse(path.read_bytes()) == lock.info
    assert taken and "no heartbeat" in taken[0]


def test_dead_pid_on_this_host_taken_over_at_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = tmp_path / "p.lock"
    _write_lease(path, host=socket.gethostname(), pid=proc.pid, age=0)  # fresh mtime, but the pid is gone
    reasons: list[str] = []
    lock = LeaseLock(
        path,
        heartbeat_s=0.05,
        stale_after_s=30.0,
        timeout_s=5,
        on_takeover=lambda info, reason: reasons.append(reason),
    )
    t0 = time.monotonic()
    with lock:
        assert time.monotonic() - t0 < 1.0
    assert reasons == ["holder process is gone"]


def test_reused_pid_detected_by_start_time(tmp_path: Path) -> None:
    path = tmp_path / "r.lock"
    # our own pid, but a start time that is not ours: the pid was "reused"
    _write_lease(path, host=socket.gethostname(), pid=os.getpid(), start="1")
    with LeaseLock(path, heartbeat_s=0.05, stale_after_s=30.0, timeout_s=5):
        pass
    assert pid_alive(os.getpid(), pid_start_time(os.getpid()))
    assert not pid_alive(os.getpid(), "1")


def test_live_lease_on_other_host_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    _write_lease(path, host="other-node", pid=1)
    waited: list[object] = []
    lock = LeaseLock(path, heartbeat_s=0.05, stale_after_s=30.0, timeout_s=0.3, on_wait=waited.append)
    with pytest.raises(ImageLockTimeout, match="other-node pid 1"):
        lock.acquire()
    assert len(waited) == 1 and path.exists()


def test_silent_heartbeat_taken_over_by_observation(tmp_path: Path) -> None:
    """A lease whose mtime looks fresh (clock skew) but never moves is stale after stale_after_s."""
    path = tmp_path / "s.lock"
    _write_lease(path, host="other-node", pid=1, age=-100)  # mtime in the future: skewed clock
    t0 = time.monotonic()
    with LeaseLock(path, heartbeat_s=0.05, stale_after_s=0.5, timeout_s=5):
        assert 0.4 < time.monotonic() - t0 < 3.0


def _hold_forever(path: str, ready: str) -> None:
    lock = LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0)
    lock.acquire()
    Path(ready).write_text("x")
    time.sleep(600)


def test_killed_holder_taken_over(tmp_path: Path) -> None:
    path, ready = str(tmp_path / "k.lock"), str(tmp_path / "ready")
    p = CTX.Process(target=_hold_forever, args=(path, ready))
    p.start()
    deadline = time.monotonic() + 10
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lease_is_live(path, 1.0)
    assert not LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0).try_acquire()
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert not lease_is_live(path, 1.0)
    with LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0, timeout_s=5) as lock:
        assert lock.held


def _take_stale(path: str, inside: str, results: str) -> None:
    lock = LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0, timeout_s=20)
    with lock:
        fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        time.sleep(0.05)
        os.unlink(inside)
    with open(results, "a") as f:
        f.write("ok\n")


def test_many_takers_of_one_stale_lock(tmp_path: Path) -> None:
    """Sixteen processes find the same stale lease at once: never two inside together."""
    path, inside, results = tmp_path / "m.lock", str(tmp_path / "inside"), str(tmp_path / "results")
    _write_lease(path, host="gone-node", pid=7, age=3600)
    procs = [CTX.Process(target=_take_stale, args=(str(path), inside, results)) for _ in range(16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 16
    assert Path(results).read_text().split() == ["ok"] * 16
    leftovers = [n for n in os.listdir(tmp_path) if ".stale." in n or ".release." in n]
    assert leftovers == []


def test_lost_lease_noticed_and_not_released(tmp_path: Path) -> None:
    path = tmp_path / "lost.lock"
    lock = LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0)
    lock.acquire()
    os.unlink(path)
    other = _write_lease(path, host="other-node", pid=99)  # someone else holds it now
    time.sleep(0.2)
    assert lock.lost and not lock.held
    lock.release()
    assert path.read_bytes() == other  # release never removes a lease that is not ours


def test_garbage_lease_file_is_stale_only_when_old(tmp_path: Path) -> None:
    path = tmp_path / "g.lock"
    path.write_bytes(b"")  # a creator that died between O_EXCL and its write
    assert not LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0).try_acquire()
    os.utime(path, (time.time() - 10, time.time() - 10))
    assert LeaseLock(path, heartbeat_s=0.05, stale_after_s=1.0).try_acquire()
    assert json.loads(path.read_bytes())["pid"] == os.getpid()


def test_parameters_checked() -> None:
    with pytest.raises(ValueError):
        LeaseLock("/tmp/x", heartbeat_s=5, stale_after_s=5)
