"""The client side of the warm start: hand this call to the user's warm server, or say it must run here.

Imports built-in modules only (``_socket``, ``_signal``, ``fcntl``, ``marshal``): the point is to
start no more than a bare interpreter. ``None`` from :func:`run` means "run the call in this
process": warm start off, not a ``render``/``submit`` call, no private socket folder, no server yet
(one is started in the background for the next call), a server of another user or key, a changed
installation, or the server ending before the call started. Once the server has said the call
started, its outcome is the child's: the client passes on signals and exits with its status.
"""

from __future__ import annotations

import os
import sys

from hpcjobs.warm import key as warm_key
from hpcjobs.warm import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Sequence
    from typing import Any

WARM_COMMANDS = ("render", "submit")
# The group's options that take a value (hpcjobs.cli.main_group); the others are flags.
_GROUP_VALUE_OPTIONS = ("--site",)
READY_TIMEOUT_S = 5.0
"""How long a server may take to accept a call before it runs in the client instead."""
server_wanted: str | None = None
"""The socket of a server :func:`run` found missing; the entry point starts it after the call."""
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
SERVER_CODE = (
    "import os, sys, marshal\n"
    "os.closerange(3, 1 << 16)\n"  # nothing the spawning shell left open is kept alive by the server
    "sys.path[:] = marshal.loads(bytes.fromhex(sys.argv[2]))\n"
    "from hpcjobs.warm.server import main\n"
    "main(sys.argv[1], float(sys.argv[3]))\n"
)


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command word of ``hpcjobs [GROUP OPTIONS] COMMAND ...``."""
    args = list(argv[1:])
    while args:
        word = args.pop(0)
        if word in _GROUP_VALUE_OPTIONS:
            if not args:
                return None
            args.pop(0)
        elif word.startswith("--site="):
            continue
        elif word == "--" or not word.startswith("-"):
            return args[0] if word == "--" and args else (None if word == "--" else word)
        elif word.startswith("--"):
            if word != "--verbose":
                return None  # --help, --version: cheap in process
        elif set(word[1:]) != {"v"}:
            return None
    return None


def run(argv: Sequence[str]) -> int | None:
    """The exit status of the call as the warm server ran it (negative: killed by that signal), or
    ``None`` when the call must run in this process."""
    if not warm_key.enabled() or command_of(argv) not in WARM_COMMANDS:
        return None
    material = warm_key.material()
    path = warm_key.socket_path(warm_key.digest(material))
    if path is None:
        return None
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError:
            global server_wanted
            server_wanted = path  # started once this call is done: it would compete with it for the CPU
            return None
        if peer_uid(sock) != os.geteuid():
            return None
        return _call(sock, argv, material)
    finally:
        sock.close()


def peer_uid(sock: _socket.socket) -> int | None:
    import _socket

    try:
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    except OSError:
        return None
    return int.from_bytes(cred[4:8], sys.byteorder)


def _streams() -> list[tuple[str, str, bool, bool]] | None:
    out = []
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        if stream is None or not hasattr(stream, "encoding"):
            return None
        out.append((stream.encoding, stream.errors or "strict", bool(getattr(stream, "line_buffering", False)),
                    bool(getattr(stream, "write_through", False))))  # fmt: skip
    return out


def _call(sock: _socket.socket, argv: Sequence[str], material: bytes) -> int | None:
    import _socket

    streams = _streams()
    try:
        cwd = os.getcwd()
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:  # a deleted working directory or a closed standard stream: as a fresh process
        return None
    if streams is None:
        return None
    umask = os.umask(0o022)
    os.umask(umask)
    request = wire.pack({
        "op": "run", "key": material, "argv": list(argv), "cwd": cwd, "env": dict(os.environ),
        "umask": umask, "streams": streams,
    })  # fmt: skip
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    forwarder = _Forwarder()  # before the request: a Ctrl-C from now on reaches the call, once it runs
    try:
        # Until GO is sent the call is ours: a server that does not answer in time (stopped, swamped)
        # never runs it, and it runs here. After GO it is the server's, however long it takes.
        # The standard streams go with GO: a message in a stopped server's queue would hold them open
        # (a caller reading this process's output would wait for that server).
        sock.settimeout(READY_TIMEOUT_S)
        sock.sendall(request)
        answer = wire.recv_reply(sock)
    except OSError:
        answer = None
    if answer is None or answer[0] != wire.READY:
        forwarder.restore()
        return None  # refused, stale, gone or too slow before GO: nothing ran
    try:
        sock.sendmsg([wire.GO], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        sock.settimeout(None)
        answer = wire.recv_reply(sock)
    except OSError:
        answer = None
    if answer is None or answer[0] != wire.PID:
        return _unknown()  # GO was sent: whether the call ran is the server's to say, and it did not
    forwarder.started(answer[1])
    return _wait(sock)


def _unknown() -> int:
    os.write(2, b"hpcjobs: error: the warm server ended before the call did; its outcome is unknown "
                b"(HPCJOBS_WARM=0 runs without it)\n")  # fmt: skip
    return 2


class _Forwarder:
    """Pass the signals a terminal or a workflow tool sends this process on to the served call;
    those that arrive before the call has started are passed on when it starts."""

    def __init__(self) -> None:
        import _signal  # type: ignore[import-not-found]  # `signal` imports enum: a few ms the call would pay

        self.pid: int | None = None
        self.pending: list[int] = []
        self.saved = {}
        for name in FORWARDED_SIGNALS:
            signum = getattr(_signal, name)
            self.saved[signum] = _signal.signal(signum, self.forward)

    def forward(self, signum: int, frame: object) -> None:
        if self.pid is None:
            self.pending.append(signum)
            return
        try:
            os.kill(self.pid, signum)
        except OSError:
            pass

    def started(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self.forward(signum, None)

    def restore(self) -> None:
        """The call runs here after all: the signals that came meanwhile are this process's own."""
        import _signal

        for signum, handler in self.saved.items():
            _signal.signal(signum, handler)
        for signum in self.pending:
            os.kill(os.getpid(), signum)


def _wait(sock: _socket.socket) -> int:
    try:
        answer = wire.recv_reply(sock)
    except OSError:
        answer = None
    if answer is None or answer[0] != wire.STATUS:
        return _unknown()
    return answer[1]


def exit_as(code: int) -> None:
    """End this process as the child ended: its exit status, or killed by the same signal."""
    if code < 0:
        import _signal

        sys.stdout.flush()
        sys.stderr.flush()
        _signal.signal(-code, _signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    raise SystemExit(code)


def start_server(path: str) -> None:
    """Start a server for this key in the background, unless one is starting (it holds the lock)."""
    import fcntl

    if _live_servers(os.path.dirname(path), fcntl) >= warm_key.MAX_SERVERS:
        return
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # a server is starting or serving: this call runs here
    finally:
        os.close(fd)
    import marshal

    argv = [sys.executable, *interpreter_options(), "-c", SERVER_CODE, path, marshal.dumps(list(sys.path)).hex(),
            str(warm_key.idle_s())]  # fmt: skip
    # its stderr (a traceback, should it fail) goes to <key>.log beside the socket, in the private folder
    log = (os.POSIX_SPAWN_OPEN, 2, path[: -len(".sock")] + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1)] + [log]
    try:
        os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions, setsid=True)
    except OSError:
        pass


def _live_servers(folder: str, fcntl: Any) -> int:
    """Servers in ``folder`` (each holds its socket's lock); the files of one that was killed go."""
    live = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if not name.endswith(".sock"):
            continue
        sock = os.path.join(folder, name)
        try:
            fd = os.open(sock + ".lock", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            live += 1  # starting (the lock comes first) or not ours to judge
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            live += 1
        else:
            for leftover in (sock, sock[: -len(".sock")] + ".log"):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
        finally:
            os.close(fd)
    return live


def interpreter_options() -> list[str]:
    """Options that give the server this interpreter's ``sys.flags``, ``-W`` and ``-X``; the server
    checks the result (the key), so a flag missed here costs the warm start, not correctness."""
    f = sys.flags
    opts = ["-I"] if f.isolated else [*(["-E"] if f.ignore_environment else []), *(["-s"] if f.no_user_site else [])]
    opts += ["-O"] * f.optimize + ["-b"] * f.bytes_warning + ["-v"] * f.verbose
    opts += [flag for flag, on in (("-B", f.dont_write_bytecode), ("-S", f.no_site), ("-q", f.quiet)) if on]
    if getattr(f, "safe_path", False) and not f.isolated:
        opts.append("-P")
    for w in sys.warnoptions:
        opts += ["-W", w]
    for k, v in sys._xoptions.items():
        opts += ["-X", k if v is True else f"{k}={v}"]
    return opts
