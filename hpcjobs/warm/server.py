"""The warm server: imports what ``render`` and ``submit`` use, builds the validators, then forks a
child per call that takes on the caller's argv, environment, working directory, umask and standard
streams and runs ``hpcjobs.cli.main`` (:mod:`hpcjobs.warm`).

It runs no hpcjobs command itself and keeps no per-call state: a child starts from the state the
server reached after its imports, as if a fresh process had imported the same modules. It ends after
``idle_s`` without a call, when the installation changes (a module file it imported or the installed
entry points), on ``hpcjobs warm stop``, or on SIGTERM.
"""

from __future__ import annotations

import os
import sys
import time

from hpcjobs.warm import key as warm_key
from hpcjobs.warm import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any, NoReturn

# What `render` and `submit` import (tests/unit/test_warm.py checks that a call imports no more of
# hpcjobs, click, yaml or pydantic); a plugin distribution is imported per call, through its entry point.
PRELOAD = (
    "click", "yaml", "pydantic", "pluggy", "subprocess", "shlex", "uuid", "hpcjobs.cli", "hpcjobs.api",
    "hpcjobs.spec", "hpcjobs.models", "hpcjobs.config.site", "hpcjobs.config.loader", "hpcjobs.config.sources",
    "hpcjobs.config.cache", "hpcjobs.jobfile", "hpcjobs.resolve", "hpcjobs.render", "hpcjobs.plan",
    "hpcjobs.plugin_api", "hpcjobs.plugins", "hpcjobs.plugin_index", "hpcjobs.pydantic_plugins", "hpcjobs.log",
    "hpcjobs.directives", "hpcjobs.sbatch_options", "hpcjobs.names", "hpcjobs.images.refs", "hpcjobs.outputs",
    "hpcjobs.preflight", "hpcjobs.runner", "hpcjobs.launchers.srun", "hpcjobs.launchers.mpirun",
    "hpcjobs.launchers.binding", "hpcjobs.launchers.options", "hpcjobs.runtimes.apptainer",
    "hpcjobs.runtimes.singularity", "hpcjobs.mpi.check",
    "hpcjobs.schedulers", "hpcjobs.schedulers.auto", "hpcjobs.schedulers.choice", "hpcjobs.schedulers.slurm_cli",
)  # fmt: skip


class Stop(Exception):
    """End the server (a stop request, a changed installation)."""


def preload() -> None:
    """Import :data:`PRELOAD` and build every hpcjobs model's validator (each is ``defer_build``)."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from pydantic import BaseModel

    todo: list[type[Any]] = [BaseModel]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("hpcjobs.") and "[" not in cls.__name__:
            try:
                cls.model_rebuild(force=True)
            except Exception:  # noqa: S110 - a call builds (and reports) it itself
                pass


class Stamp:
    """The installation the server imported: each module file's mtime and size, and the entry points."""

    def __init__(self) -> None:
        self.files = self._files()
        self.entry_points = self._entry_points()

    @staticmethod
    def _files() -> dict[str, tuple[int, int]]:
        out = {}
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out[path] = (st.st_mtime_ns, st.st_size)
        return out

    @staticmethod
    def _entry_points() -> str:
        from hpcjobs.plugin_index import metadata_key

        return metadata_key(sys.path)

    def changed(self) -> bool:
        for path, seen in self.files.items():
            try:
                st = os.stat(path)
            except OSError:
                return True
            if (st.st_mtime_ns, st.st_size) != seen:
                return True
        return self._entry_points() != self.entry_points


def main(path: str, idle_s: float) -> None:
    """Serve on ``path`` (a socket in the user's private folder) until idle for ``idle_s``."""
    import fcntl

    cwd_first = warm_key.search_path()[:1] == [warm_key.CWD_MARK]
    material = warm_key.material()  # in the folder the client started it from, as the client computed it
    os.chdir("/")  # holds no folder busy
    if cwd_first:
        sys.path[0] = ""  # "/" while the server imports; each child puts its caller's folder there
    folder = os.path.dirname(path)
    if warm_key.socket_dir({warm_key.DIR_VAR: folder}) != folder:
        return
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server has this key
    if os.path.basename(path) != warm_key.digest(material) + ".sock":
        return  # started with another interpreter state than its client's: it would serve nobody
    preload()
    import threading

    if threading.active_count() != 1:
        return  # fork() copies one thread of many: what the others held (locks) would stay held
    import gc

    gc.collect()
    gc.freeze()  # the children share these pages; their collections skip what the server made
    Server(path, material, idle_s, lock, cwd_first).serve()


class Server:
    def __init__(self, path: str, material: bytes, idle_s: float, lock: int, cwd_first: bool) -> None:
        self.path = path
        self.cwd_first = cwd_first
        self.material = material
        self.idle_s = idle_s
        self.lock = lock
        self.stamp = Stamp()
        self.children: dict[int, _socket.socket] = {}
        self.served = 0
        self.children_cpu_s = 0.0
        self.started = time.time()

    def serve(self) -> None:
        import select
        import signal
        import socket

        try:
            os.unlink(self.path)  # a server that ended without cleaning up: the lock says it is gone
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        os.chmod(self.path, 0o600)
        listener.listen(64)
        self.listener = listener
        self.inode = os.stat(self.path).st_ino
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake = (wake_r, wake_w)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.signal(signal.SIGTERM, _raise_stop)
        last = time.monotonic()
        try:
            while True:
                timeout = None if self.children else last + self.idle_s - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                watched: list[Any] = [listener, wake_r]
                ready, _, _ = select.select(watched, [], [], timeout)
                if wake_r in ready:
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                self.reap()
                if listener in ready:
                    conn, _ = listener.accept()
                    try:
                        self.handle(conn)
                    finally:
                        last = time.monotonic()
        except Stop:
            pass
        finally:
            self.close()

    def close(self) -> None:
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass
        self.listener.close()
        for pid, conn in list(self.children.items()):  # calls under way end as they would; report them
            try:
                _, status = os.waitpid(pid, 0)
                conn.sendall(wire.reply(wire.STATUS, os.waitstatus_to_exitcode(status)))
            except (ChildProcessError, OSError):
                pass
            conn.close()
        self.children.clear()

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children_cpu_s += usage.ru_utime + usage.ru_stime
            conn = self.children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(wire.reply(wire.STATUS, os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                conn.close()

    def handle(self, conn: _socket.socket) -> None:
        from hpcjobs.warm.client import peer_uid

        fds: list[int] = []
        keep = False
        try:
            conn.settimeout(10.0)
            if peer_uid(conn) != os.geteuid():
                return
            request = wire.recv_value(conn)
            if not isinstance(request, dict):
                return
            op = request.get("op")
            if op == "status":
                conn.sendall(wire.INFO + wire.pack(self.info()))
            elif op == "stop":
                conn.sendall(wire.reply(wire.INFO))
                raise Stop
            elif op == "run":
                if request.get("key") != self.material:
                    conn.sendall(wire.reply(wire.REFUSED))
                elif self.stamp.changed():
                    conn.sendall(wire.reply(wire.STALE))
                    raise Stop
                else:
                    conn.sendall(wire.reply(wire.READY))
                    go, fds = _receive_fds(conn, 1)  # the caller's stdin, stdout, stderr come with GO
                    if go != wire.GO or len(fds) != 3:
                        return  # the client gave up (its timeout) and runs the call itself
                    pid = os.fork()
                    if pid == 0:
                        _child(request, fds, self)
                    self.served += 1
                    self.children[pid] = conn
                    keep = True
                    conn.settimeout(None)
                    conn.sendall(wire.reply(wire.PID, pid))
        except (OSError, EOFError, ValueError, TypeError):
            pass
        finally:
            for fd in fds:
                os.close(fd)
            if not keep:
                conn.close()

    def info(self) -> dict[str, object]:
        return {"pid": os.getpid(), "socket": self.path, "served": self.served, "running": len(self.children),
                "children_cpu_s": self.children_cpu_s, "started": self.started, "idle_s": self.idle_s,
                "modules": len(sys.modules)}  # fmt: skip


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop


def _receive_fds(conn: _socket.socket, size: int) -> tuple[bytes, list[int]]:
    """Up to ``size`` bytes and the file descriptors sent with them (SCM_RIGHTS)."""
    import _socket

    data, ancillary, _, _ = conn.recvmsg(size, _socket.CMSG_SPACE(wire.FDS_BYTES))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += [int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, usable, 4)]
    return data, fds


def _child(request: dict[str, Any], fds: list[int], server: Server) -> NoReturn:
    """Become the caller's process and run ``hpcjobs.cli.main``; never returns."""
    import signal

    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server.listener.close()
        for conn in server.children.values():
            conn.close()
        for fd in (*server.wake, server.lock):
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        if server.cwd_first:
            sys.path[0] = request["cwd"]
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        _streams(request["streams"])
        from hpcjobs.cli import main

        main()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        import traceback

        traceback.print_exc()
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # shown as an uncaught exception would be, status 1
        import traceback

        traceback.print_exc()
    finally:
        _flush()
        try:
            import atexit

            atexit._run_exitfuncs()
        finally:
            os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: S110 - a closed pipe: nothing more can be said
            pass


def _streams(spec: list[tuple[str, str, bool, bool]]) -> None:
    """The caller's stdin, stdout and stderr as a fresh interpreter would have wrapped fds 0, 1 and 2."""
    import io

    (in_enc, in_err, _, _), (out_enc, out_err, out_lb, out_wt), (err_enc, err_err, err_lb, err_wt) = spec
    # newline="\n" as CPython's create_stdio on POSIX: no translation either way
    stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), in_enc, in_err, "\n")
    stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), out_enc, out_err, "\n",
                              line_buffering=out_lb, write_through=out_wt)  # fmt: skip
    stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), err_enc, err_err, "\n",
                              line_buffering=err_lb, write_through=err_wt)  # fmt: skip
    for name, stream in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
