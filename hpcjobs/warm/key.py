"""What a warm server must share with a client, and where its socket lives.

Runs in every ``hpcjobs render``/``submit`` before anything heavy is imported, so it imports only
built-in modules: ``socket``, ``json``, ``hashlib`` and ``typing`` would cost more than the call saves.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

FORMAT = "hpcjobs-warm-1"
OFF_VAR = "HPCJOBS_WARM"
DIR_VAR = "HPCJOBS_WARM_DIR"
IDLE_VAR = "HPCJOBS_WARM_IDLE_S"
DEFAULT_IDLE_S = 600.0
SOCKET_MAX_BYTES = 107  # sun_path is 108 bytes with its terminating NUL
# Variables read while the interpreter starts (encodings, locale, hash seed, warnings, paths):
# a forked child cannot take them on, so they are part of the key.
_KEY_VARS = ("LANG", "LANGUAGE", "TZ")
_KEY_PREFIXES = ("PYTHON", "LC_")
_NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
CWD_MARK = "<the working directory>"
MAX_SERVERS = 8
"""Servers one user may have in one socket folder; a call that would start one more runs without."""


def search_path() -> list[str]:
    """``sys.path`` with the working directory that ``python -m``/``-c`` put first named, not spelled:
    one server then serves every folder, and its child puts the caller's folder there."""
    path = list(sys.path)
    try:
        if path and not getattr(sys.flags, "safe_path", False) and path[0] == os.getcwd():
            path[0] = CWD_MARK
    except OSError:
        pass
    return path


def enabled(env: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(OFF_VAR, "")
    return value.strip().lower() not in ("0", "no", "false", "off")


def idle_s(env: Mapping[str, str] | None = None) -> float:
    try:
        value = float((os.environ if env is None else env).get(IDLE_VAR, "") or DEFAULT_IDLE_S)
    except ValueError:
        return DEFAULT_IDLE_S
    return value if value > 0 else DEFAULT_IDLE_S


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", "replace")
    except OSError:
        return "-"


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "-"


def material() -> bytes:
    """Everything a forked child inherits from its server and cannot set to the client's value.

    The working directory, the environment (less :data:`_KEY_VARS` and ``PYTHON*``/``LC_*``), the
    umask, argv and the three standard streams are handed over per call instead.
    """
    import resource

    import hpcjobs

    env = os.environ
    limits = sorted(
        (name, resource.getrlimit(getattr(resource, name))) for name in dir(resource) if name.startswith("RLIMIT_")
    )
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:
        nice = None
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = []
    parts = (
        FORMAT,
        hpcjobs.__file__ or "",
        getattr(hpcjobs, "__version__", ""),
        sys.executable,
        sys.version,
        search_path(),
        tuple(sys.flags),
        list(sys.warnoptions),
        sorted((str(k), str(v)) for k, v in sys._xoptions.items()),
        sorted((k, v) for k, v in env.items() if k in _KEY_VARS or k.startswith(_KEY_PREFIXES)),
        (os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())),
        limits,
        nice,
        cpus,
        os.uname().nodename,
        [_link(f"/proc/self/ns/{ns}") for ns in _NAMESPACES],
        _read("/proc/self/cgroup"),
    )
    return marshal.dumps(parts)


def digest(data: bytes) -> str:
    try:
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - every CPython build has it
        from hashlib import blake2b
    return blake2b(data, digest_size=12).hexdigest()


def socket_dir(env: Mapping[str, str] | None = None) -> str | None:
    """The user's private folder for warm servers' sockets, created if missing; ``None`` when it is
    not a real folder owned by this user that nobody else can enter (then no server is used)."""
    environ = os.environ if env is None else env
    uid = os.geteuid()
    folder = environ.get(DIR_VAR, "")
    if not folder:
        runtime = environ.get("XDG_RUNTIME_DIR", "")
        if os.path.isabs(runtime) and _private(runtime, uid):
            folder = os.path.join(runtime, "hpcjobs-warm")
        else:
            folder = f"/tmp/hpcjobs-warm-{uid}"
    if not os.path.isabs(folder):
        return None
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    return folder if _private(folder, uid) else None


def _private(folder: str, uid: int) -> bool:
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    # S_ISDIR without importing stat; a symlink's lstat is not a directory
    return (st.st_mode & 0o170000) == 0o040000 and st.st_uid == uid and not st.st_mode & 0o077


def socket_path(key: str, env: Mapping[str, str] | None = None) -> str | None:
    folder = socket_dir(env)
    if folder is None:
        return None
    path = os.path.join(folder, f"{key}.sock")
    return path if len(os.fsencode(path)) <= SOCKET_MAX_BYTES else None
