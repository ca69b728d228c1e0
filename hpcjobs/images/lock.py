"""A lease lock that works across processes *and nodes* on NFS and Lustre.

``flock``/``fcntl`` locks only hold within one node on many cluster filesystems, so this lock is a
file created with ``O_CREAT | O_EXCL`` (atomic on NFSv3+ and Lustre) holding JSON: host, boot id,
pid, the pid's start time and a random token. While held, a heartbeat thread touches the file every
``heartbeat_s`` seconds and checks that it still holds the lease.

A waiter takes the lock over when the lease is **stale**:

* the holder runs on this host (same host name and boot id) and its pid is gone (or was reused:
  the start time differs) — taken over at once;
* the file's mtime is older than ``stale_after_s`` by the wall clock; or
* the waiter has watched the file for ``stale_after_s`` seconds of its own monotonic clock and
  the heartbeat never moved it (immune to clock skew between nodes).

Takeover is rename-based: the taker renames the lease file to a private name (only one rename of
a path can succeed), then reads what it got. If that is the lease it judged stale, it deletes it and
competes for the lock with ``O_EXCL`` like everyone else; if a fresh holder had slipped in, the
lease is put back with ``link`` (never overwriting). A holder whose lease was taken notices at its
next heartbeat (:attr:`LeaseLock.lost`).

The lock exists to make work happen once; it is not what keeps the cache correct — publishing is
atomic and never replaces an entry, so even a lost lease cannot corrupt anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hpcjobs.errors import ImageLockTimeout

DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class LeaseInfo:
    host: str
    boot_id: str
    pid: int
    pid_start: str
    token: str
    created: float
    purpose: str = ""

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"

    @classmethod
    def mine(cls, purpose: str = "") -> LeaseInfo:
        pid = os.getpid()
        return cls(
            socket.gethostname(),
            boot_id(),
            pid,
            pid_start_time(pid),
            secrets.token_hex(12),
            time.time(),
            purpose,
        )

    @classmethod
    def parse(cls, data: bytes) -> LeaseInfo | None:
        try:
            obj = json.loads(data)
            return cls(
                str(obj["host"]),
                str(obj.get("boot_id", "")),
                int(obj["pid"]),
                str(obj.get("pid_start", "")),
                str(obj["token"]),
                float(obj.get("created", 0.0)),
                str(obj.get("purpose", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def dump(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_start_time(pid: int) -> str:
    """The process start time (clock ticks since boot) from /proc; "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def pid_alive(pid: int, start: str) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    if start:
        now = pid_start_time(pid)
        if now and now != start:
            return False  # the pid was reused by another process
    return True


def _read(path: str) -> tuple[bytes, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        return os.read(fd, 4096), st
    except OSError:
        return None
    finally:
        os.close(fd)


class LeaseLock:
    """``with LeaseLock(path):`` — mutual exclusion across processes and nodes, see module doc."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        timeout_s: float | None = None,
        mode: int = 0o644,
        purpose: str = "",
        on_wait: Callable[[LeaseInfo | None], None] | None = None,
        on_takeover: Callable[[LeaseInfo | None, str], None] | None = None,
    ) -> None:
        if stale_after_s <= heartbeat_s:
            raise ValueError("stale_after_s must be larger than heartbeat_s")
        self.path = os.fspath(path)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.timeout_s = timeout_s
        self.mode = mode
        self.purpose = purpose
        self.on_wait = on_wait
        self.on_takeover = on_takeover
        self.info: LeaseInfo | None = None
        self.waited = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._host = socket.gethostname()
        self._boot = boot_id()

    # -- public -----------------------------------------------------------------------------
    @property
    def held(self) -> bool:
        return self.info is not None and not self._lost.is_set()

    @property
    def lost(self) -> bool:
        """True once the heartbeat found the lease file gone or someone else's."""
        return self._lost.is_set()

    def try_acquire(self) -> bool:
        """One attempt, no waiting (a stale lease is still taken over)."""
        return self._attempt({})

    def acquire(self) -> None:
        start = time.monotonic()
        seen: dict[str, Any] = {}
        delay = 0.02
        notified = False
        while not self._attempt(seen):
            if self.timeout_s is not None and time.monotonic() - start > self.timeout_s:
                holder = seen.get("info")
                who = f" (held by {holder.describe()})" if isinstance(holder, LeaseInfo) else ""
                raise ImageLockTimeout(f"{self.path}: still locked after {self.timeout_s:.0f} s{who}")
            if not notified:
                self.waited = notified = True
                if self.on_wait is not None:
                    info = seen.get("info")
                    self.on_wait(info if isinstance(info, LeaseInfo) else None)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5, self.heartbeat_s / 2)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        info, self.info = self.info, None
        if info is None:
            return
        # rename first, so we never delete a lease that someone else holds by now
        private = f"{self.path}.release.{info.token}"
        try:
            os.rename(self.path, private)
        except OSError:
            return
        got = _read(private)
        if got is not None and LeaseInfo.parse(got[0]) == info:
            with contextlib.suppress(OSError):
                os.unlink(private)
            return
        with contextlib.suppress(OSError):
            os.link(private, self.path)  # not ours: put it back unless a new lease exists
        with contextlib.suppress(OSError):
            os.unlink(private)

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- internals --------------------------------------------------------------------------
    def _attempt(self, seen: dict[str, Any]) -> bool:
        for _ in range(2):  # a second try right after taking a stale lease over
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
                break
            except FileExistsError:
                if not self._check_stale(seen):
                    return False
        else:
            return False
        info = LeaseInfo.mine(self.purpose)
        try:
            os.fchmod(fd, self.mode)
            os.write(fd, info.dump())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.info = info
        self._lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-heartbeat {self.path}", daemon=True)
        self._thread.start()
        return True

    def _check_stale(self, seen: dict[str, Any]) -> bool:
        """True when the lease vanished or was taken over (worth an immediate retry)."""
        got = _read(self.path)
        if got is None:
            return True  # vanished: try again at once
        data, st = got
        info = LeaseInfo.parse(data)
        seen["info"] = info
        identity = (st.st_ino, st.st_mtime_ns, data)
        now = time.monotonic()
        if seen.get("identity") != identity:
            seen["identity"], seen["since"] = identity, now
        reason = self._stale_reason(info, st, now - float(seen["since"]))
        if reason is None:
            return False
        seen.pop("identity", None)
        return self._take_over(info, data, st.st_ino, reason)

    def _stale_reason(self, info: LeaseInfo | None, st: os.stat_result, unchanged_s: float) -> str | None:
        if (
            info is not None
            and info.host == self._host
            and info.boot_id == self._boot
            and not pid_alive(info.pid, info.pid_start)
        ):
            return "holder process is gone"
        age = time.time() - st.st_mtime
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s"
        if unchanged_s > self.stale_after_s:
            return f"heartbeat not seen for {unchanged_s:.0f} s"
        return None

    def _take_over(self, judged: LeaseInfo | None, judged_data: bytes, judged_ino: int, reason: str) -> bool:
        private = f"{self.path}.stale.{secrets.token_hex(8)}"
        try:
            os.rename(self.path, private)
        except OSError:
            return True  # another taker won the rename (or the holder released): the path may be free
        got = _read(private)
        if got is not None and got[0] == judged_data and got[1].st_ino == judged_ino:
            with contextlib.suppress(OSError):
                os.unlink(private)
            if self.on_takeover is not None:
                self.on_takeover(judged, reason)
            return True
        # we displaced a lease we had not judged (a new holder slipped in): put it back
        with contextlib.suppress(OSError):
            os.link(private, self.path)
        with contextlib.suppress(OSError):
            os.unlink(private)
        return False

    def _heartbeat(self) -> None:
        info = self.info
        while not self._stop.wait(self.heartbeat_s):
            got = _read(self.path)
            if info is None or got is None or LeaseInfo.parse(got[0]) != info:
                self._lost.set()
                return
            try:
                os.utime(self.path)
            except OSError:
                self._lost.set()
                return


def lease_holder(path: str | os.PathLike[str]) -> tuple[LeaseInfo | None, float] | None:
    """(holder, seconds since its last heartbeat) of a lease file, or None when there is none."""
    got = _read(os.fspath(path))
    if got is None:
        return None
    return LeaseInfo.parse(got[0]), time.time() - got[1].st_mtime


def lease_is_live(path: str | os.PathLike[str], stale_after_s: float = DEFAULT_STALE_AFTER_S) -> bool:
    """A lease file exists and does not look stale (same checks as a waiter's, without waiting)."""
    found = lease_holder(path)
    if found is None:
        return False
    info, age = found
    if info is not None and info.host == socket.gethostname() and info.boot_id == boot_id():
        if not pid_alive(info.pid, info.pid_start):
            return False
    return age <= stale_after_s
