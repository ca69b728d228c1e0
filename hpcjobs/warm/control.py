"""Ask the user's warm servers what they are doing, or stop them (``hpcjobs warm status|stop``)."""

from __future__ import annotations

import os

from hpcjobs.warm import key as warm_key
from hpcjobs.warm import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Mapping


def sockets(env: Mapping[str, str] | None = None) -> list[str]:
    """The socket files in the user's private warm-server folder (none when it is not private)."""
    folder = warm_key.socket_dir(env)
    if folder is None:
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".sock"))


def _ask(path: str, op: str) -> _socket.socket | None:
    import _socket

    from hpcjobs.warm.client import peer_uid

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(10.0)
    try:
        sock.connect(path)
        if peer_uid(sock) != os.geteuid():
            sock.close()
            return None
        sock.sendall(wire.pack({"op": op}))
    except OSError:
        sock.close()
        return None
    return sock


def status(env: Mapping[str, str] | None = None) -> list[dict[str, object]]:
    """One record per server that answers (``info`` of :class:`hpcjobs.warm.server.Server`)."""
    out: list[dict[str, object]] = []
    for path in sockets(env):
        sock = _ask(path, "status")
        if sock is None:
            continue
        try:
            if wire.recv_exact(sock, 1) == wire.INFO:
                value = wire.recv_value(sock)
                if isinstance(value, dict):
                    out.append(value)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            sock.close()
    return out


def stop(env: Mapping[str, str] | None = None) -> int:
    """Ask every server to end once its running calls have; the number that said yes."""
    n = 0
    for path in sockets(env):
        sock = _ask(path, "stop")
        if sock is None:
            continue
        try:
            if wire.recv_reply(sock) is not None:
                n += 1
        except OSError:
            pass
        finally:
            sock.close()
    return n
