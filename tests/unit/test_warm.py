"""The warm start (hpcjobs.warm): a served call behaves as a fresh process would, byte for byte, and
anything the server cannot take on gives another server or a call run in the client itself.

Real processes and a real server throughout (the server is the thing under test); each test has its
own socket folder and stops its server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcjobs.warm import client, wire
from hpcjobs.warm import key as warm_key

HOSTILE = ["a b", "it's", 'say "hi"', "$HOME", "; echo pwned", "x\ny", "tab\there", "back\\slash", "ünï"]


class Warm:
    """``python -m hpcjobs`` with the warm start on, in its own socket folder."""

    def __init__(self, folder: Path, work: Path) -> None:
        self.folder = folder
        self.work = work
        self.env = {**os.environ, "HPCJOBS_WARM": "1", "HPCJOBS_WARM_DIR": str(folder), "HPCJOBS_WARM_IDLE_S": "120",
                    "XDG_CACHE_HOME": str(work / "cache")}  # fmt: skip

    def run(self, *args: str, warm: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "HPCJOBS_WARM": "1" if warm else "0", **kw.pop("env", {})}  # type: ignore[dict-item]
        return subprocess.run([sys.executable, "-m", "hpcjobs", *args], capture_output=True, text=True, env=env,
                              cwd=kw.pop("cwd", self.work), timeout=120, **kw)  # type: ignore[call-overload]  # fmt: skip

    def status(self) -> list[dict[str, object]]:
        r = self.run("warm", "status", "--json")
        assert r.returncode == 0, r.stderr
        rows: list[dict[str, object]] = json.loads(r.stdout)
        return rows

    def wait_up(self) -> dict[str, object]:
        """The server a first call started, once it serves."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = self.status()
            if rows:
                return rows[0]
            time.sleep(0.1)
        logs = {p.name: p.read_text() for p in self.folder.glob("*.log")}
        pytest.fail(f"no warm server came up in 60 s; its log: {logs}")

    def served(self) -> int:
        rows = self.status()
        return sum(int(r["served"]) for r in rows)  # type: ignore[call-overload]


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[Warm]:
    folder = Path(tempfile.mkdtemp(prefix="hw-", dir="/tmp"))  # short: a socket path has 107 bytes
    os.chmod(folder, 0o700)
    (tmp_path / "site.yaml").write_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    (tmp_path / "job.yaml").write_text("image: /i/x.sif\ncommand: [x]\n")
    w = Warm(folder, tmp_path)
    try:
        yield w
    finally:
        w.run("warm", "stop")
        deadline = time.monotonic() + 30
        while list(folder.glob("*.sock")) and time.monotonic() < deadline:
            time.sleep(0.1)
        leftover = list(folder.glob("*.sock"))
        shutil.rmtree(folder, ignore_errors=True)
        assert not leftover, "the warm server did not stop"


def started(w: Warm, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a first call (it runs in the client and starts the server) and wait for the server."""
    r = w.run(*args, **kw)
    w.wait_up()
    return r


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["hpcjobs", "render", "j.yaml"], "render"),
        (["hpcjobs", "-v", "submit", "j.yaml"], "submit"),
        (["hpcjobs", "-vv", "--verbose", "render"], "render"),
        (["hpcjobs", "--site", "render", "submit"], "submit"),  # --site takes the next word
        (["hpcjobs", "--site=s.yaml", "render"], "render"),
        (["hpcjobs", "images", "list"], "images"),
        (["hpcjobs", "--help"], None),
        (["hpcjobs", "--version"], None),
        (["hpcjobs", "-vx", "render"], None),
        (["hpcjobs", "--site"], None),
        (["hpcjobs"], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert client.command_of(argv) == command


def _digest(env_extra: dict[str, str], *py_opts: str, code: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(env_extra)
    probe = f"{code}\nfrom hpcjobs.warm import key\nprint(key.digest(key.material()))"
    return subprocess.run([sys.executable, *py_opts, "-c", probe], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()  # fmt: skip


def test_the_key_holds_what_a_fork_cannot_take_on() -> None:
    base = _digest({})
    assert _digest({}) == base
    assert _digest({"SOME_JOB_VARIABLE": "x", "HPCJOBS_SITE": "/s.yaml"}) == base  # handed over per call
    assert _digest({"PYTHONHASHSEED": "7"}) != base
    assert _digest({"LC_ALL": "C"}) != base
    assert _digest({"TZ": "UTC"}) != base
    assert _digest({}, "-X", "dev") != base
    assert _digest({}, "-W", "error") != base
    lower = "import resource\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))"
    assert _digest({}, code=lower) != base
    assert _digest({}, code="import os\nos.nice(1)") != base


def test_the_socket_folder_must_be_private(tmp_path: Path) -> None:
    made = tmp_path / "made"
    assert warm_key.socket_dir({warm_key.DIR_VAR: str(made)}) == str(made)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    assert warm_key.socket_dir({warm_key.DIR_VAR: str(open_dir)}) is None
    link = tmp_path / "link"
    link.symlink_to(made)
    assert warm_key.socket_dir({warm_key.DIR_VAR: str(link)}) is None
    assert warm_key.socket_dir({warm_key.DIR_VAR: "relative/dir"}) is None
    if os.geteuid() == 0:  # a folder another user made for us: never used
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        assert warm_key.socket_dir({warm_key.DIR_VAR: str(theirs)}) is None
    long_dir = tmp_path / ("d" * 120)
    assert warm_key.socket_path("k" * 24, {warm_key.DIR_VAR: str(long_dir)}) is None


def test_off_and_idle_settings() -> None:
    assert warm_key.enabled({}) and warm_key.enabled({"HPCJOBS_WARM": "1"})
    assert not any(warm_key.enabled({"HPCJOBS_WARM": v}) for v in ("0", "off", "no", "false", " OFF "))
    assert warm_key.idle_s({"HPCJOBS_WARM_IDLE_S": "5"}) == 5.0
    assert warm_key.idle_s({"HPCJOBS_WARM_IDLE_S": "soon"}) == warm_key.DEFAULT_IDLE_S


def test_a_served_render_is_the_fresh_render_byte_for_byte(warm: Warm) -> None:
    odd = warm.work / "dir with 'quotes' $and; spaces"
    odd.mkdir()
    (odd / "job.yaml").write_text("image: /i/x.sif\ncommand: [x]\n")
    args = ("render", "--explain", "--site", str(warm.work / "site.yaml"), "--set", f"command={json.dumps(HOSTILE)}",
            "job.yaml")  # fmt: skip
    cold = warm.run(*args, warm=False, cwd=odd)
    assert cold.returncode == 0, cold.stderr
    first = started(warm, *args, cwd=odd)
    assert (first.returncode, first.stdout, first.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    before = warm.served()
    for _ in range(2):
        r = warm.run(*args, cwd=odd)
        assert (r.returncode, r.stdout, r.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert warm.served() == before + 2  # the server ran them, not the client
    assert str(odd) in cold.stdout  # the job directory is the caller's working directory


@pytest.mark.parametrize(
    "args",
    [
        ("render", "--site", "nope.yaml", "job.yaml"),  # HpcjobsError: one line, exit 2
        ("render", "--bogus", "job.yaml"),  # usage error, exit 2
        ("render", "--site", "site.yaml", "--set", "gpus=lots", "job.yaml"),  # validation error
        ("render", "--help"),
    ],
)
def test_errors_and_help_are_the_fresh_ones(warm: Warm, args: tuple[str, ...]) -> None:
    started(warm, "render", "--site", "site.yaml", "job.yaml")
    cold = warm.run(*args, warm=False)
    before = warm.served()
    r = warm.run(*args)
    assert (r.returncode, r.stdout, r.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert warm.served() == before + 1


def test_environment_is_the_callers_per_call(warm: Warm) -> None:
    """$HPCJOBS_SITE names the site config: each call's own value counts, not the server's."""
    other = warm.work / "other.yaml"
    other.write_text("name: other\ndefault_partition: big\npartitions: {big: {}}\n")
    started(warm, "render", "job.yaml", env={"HPCJOBS_SITE": str(warm.work / "site.yaml")})
    for site, partition in ((other, "big"), (warm.work / "site.yaml", "cpu")):
        r = warm.run("render", "job.yaml", env={"HPCJOBS_SITE": str(site)})
        assert r.returncode == 0, r.stderr
        assert f"#SBATCH --partition={partition}\n" in r.stdout
    assert warm.served() == 2


def test_a_changed_installation_ends_the_server_and_the_call_runs_here(warm: Warm) -> None:
    args = ("render", "--site", "site.yaml", "job.yaml")
    cold = warm.run(*args, warm=False)
    started(warm, *args)
    module = Path(wire.__file__)
    st = module.stat()
    try:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # as an upgrade would
        r = warm.run(*args)
        assert (r.returncode, r.stdout, r.stderr) == (cold.returncode, cold.stdout, cold.stderr)
        deadline = time.monotonic() + 30
        while list(warm.folder.glob("*.sock")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(warm.folder.glob("*.sock")), "the stale server did not end"
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))


def _blocked_render(w: Warm, fifo: Path, warm: bool) -> tuple[subprocess.Popen[str], int]:
    """A render blocked reading its job file, a FIFO; and the FIFO's write end, open once it reads."""
    proc = subprocess.Popen([sys.executable, "-m", "hpcjobs", "render", "--site", "site.yaml", str(fifo)],
                            cwd=w.work, env={**w.env, "HPCJOBS_WARM": "1" if warm else "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:  # succeeds once a reader has the FIFO open: the call is then blocked in read()
            return proc, os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("the render never opened its job file")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_reach_the_call_and_its_end_is_the_clients(warm: Warm, signum: int) -> None:
    fifo = warm.work / "job fifo.yaml"
    os.mkfifo(fifo)
    ends = []
    for served in (False, True):
        if served:
            started(warm, "render", "--site", "site.yaml", "job.yaml")
        proc, writer = _blocked_render(warm, fifo, served)
        try:
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(writer)
        ends.append((proc.returncode, out, err.splitlines()[-1:]))
    assert ends[0] == ends[1]
    assert ends[0][0] == (1 if signum == signal.SIGINT else -signum)
    assert warm.served() == 1


def test_a_request_for_another_key_is_refused(warm: Warm) -> None:
    import socket

    started(warm, "render", "--site", "site.yaml", "job.yaml")
    path = next(warm.folder.glob("*.sock"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        request = wire.pack({"op": "run", "key": b"another interpreter", "argv": ["hpcjobs", "render"], "cwd": "/",
                             "env": {}, "umask": 0o22, "streams": []})  # fmt: skip
        sock.sendall(request)
        assert wire.recv_reply(sock) == (wire.REFUSED, 0)
    assert warm.served() == 0


def test_a_served_call_imports_nothing_the_server_has_not(tmp_path: Path) -> None:
    """PRELOAD covers render: run the server's preload, then a render in the same process."""
    (tmp_path / "site.yaml").write_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    (tmp_path / "job.yaml").write_text("image: /i/x.sif\ncommand: [x]\n")
    probe = (
        "import sys, json\nfrom hpcjobs.warm.server import preload\npreload()\nbefore = set(sys.modules)\n"
        "from hpcjobs.cli import main\n"
        f"sys.argv = ['hpcjobs', 'render', '--site', {str(tmp_path / 'site.yaml')!r}, {str(tmp_path / 'job.yaml')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    new = json.loads(out.splitlines()[-1])
    ours = [m for m in new if m.split(".")[0] in ("hpcjobs", "click", "yaml", "pydantic", "pydantic_core", "pluggy")]
    assert ours == [], f"render imported what the warm server did not: add them to PRELOAD: {ours}"


def test_the_client_imports_builtins_only(tmp_path: Path) -> None:
    """The client runs before anything else: typing, enum, re, socket or json would cost a served
    call more than it saves (they are each a few ms of a bare interpreter's ~15)."""
    folder = Path(tempfile.mkdtemp(prefix="hw-", dir="/tmp"))
    try:
        probe = (
            "import sys\nbefore = set(sys.modules)\nfrom hpcjobs.warm import client\n"
            "assert client.run(['hpcjobs', 'render', 'job.yaml']) is None\n"  # no server: the call runs here
            "assert client.server_wanted\n"
            "print(' '.join(sorted(set(sys.modules) - before)))"
        )
        env = {**os.environ, "HPCJOBS_WARM": "1", "HPCJOBS_WARM_DIR": str(folder)}
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env,
                             cwd=tmp_path).stdout.split()  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    heavy = [m for m in out if m.split(".")[0] in ("typing", "enum", "re", "socket", "json", "subprocess", "hashlib",
                                                   "signal", "pathlib", "click", "pydantic", "yaml")]  # fmt: skip
    assert heavy == [], out
    assert "hpcjobs.warm.client" in out


def test_a_server_that_does_not_answer_never_runs_the_call(warm: Warm) -> None:
    """A stopped server: the call runs in the client after the timeout, and the server, once it goes
    on, does not run it too (the client never said GO)."""
    args = ("render", "--site", "site.yaml", "job.yaml")
    cold = warm.run(*args, warm=False)
    started(warm, *args)
    pid = int(warm.status()[0]["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = warm.run(*args)
        waited_s = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (r.returncode, r.stdout, r.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert waited_s >= client.READY_TIMEOUT_S
    assert warm.served() == 0
