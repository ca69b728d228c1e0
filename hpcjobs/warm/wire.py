"""The warm server's messages: a 4-byte length and a ``marshal``-ed value (client and server are the
same interpreter, its version is in the key), and one-letter replies with a signed 32-bit number.

``marshal`` keeps ``str`` with lone surrogates, so an argv or environment value that is not UTF-8
(``os.fsdecode``'s surrogate escapes) reaches the child byte-for-byte.
"""

from __future__ import annotations

import marshal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any

MAX_REQUEST_BYTES = 16 << 20
FDS_BYTES = 3 * 4  # three C ints of SCM_RIGHTS

READY = b"A"  # the server will run the call once the client says GO (the client may still give up)
GO = b"G"  # from the client: run it; from here on the call is the server's
PID = b"P"  # the child's process id: the call runs
STATUS = b"X"  # the child ended: os.waitstatus_to_exitcode (negative: killed by that signal)
STALE = b"S"  # the installation changed since the server started: run locally, the server ends
REFUSED = b"R"  # not for this server (another key or user): run locally
INFO = b"I"  # a status answer follows as a request-framed value


def pack(value: Any) -> bytes:
    data = marshal.dumps(value)
    return len(data).to_bytes(4, "big") + data


def reply(code: bytes, number: int = 0) -> bytes:
    return code + number.to_bytes(4, "big", signed=True)


def recv_exact(sock: _socket.socket, n: int) -> bytes:
    """``n`` bytes, or fewer when the peer closed first."""
    chunks: list[bytes] = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_reply(sock: _socket.socket) -> tuple[bytes, int] | None:
    data = recv_exact(sock, 5)
    if len(data) != 5:
        return None
    return data[:1], int.from_bytes(data[1:], "big", signed=True)


def recv_value(sock: _socket.socket, first: bytes = b"") -> object:
    head = first[:4]
    if len(head) < 4:
        head += recv_exact(sock, 4 - len(head))
    if len(head) != 4:
        raise EOFError("connection closed")
    size = int.from_bytes(head, "big")
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"message of {size} bytes")
    body = first[4:]
    if len(body) < size:
        body += recv_exact(sock, size - len(body))
    if len(body) != size:
        raise EOFError("connection closed")
    return marshal.loads(body)  # noqa: S302 - the peer is this user (SO_PEERCRED), checked before reading
