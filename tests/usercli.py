"""Run the hpcjobs CLI as the dev cluster's test user, with the plugin distributions of plugins/
installed (the plugins' cluster tests use it). Does not import hpcjobs itself."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UserCli = Callable[..., subprocess.CompletedProcess[str]]
# what hpcjobs and the plugins need at run time, copied when the test user can't read the venv
RUNTIME_PACKAGES = ("pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
                    "yaml", "_yaml", "click", "pluggy", "structlog", "spython", "hpcjobs_podman",
                    "hpcjobs_profile")  # fmt: skip


def _ok(user: str, python: str, env: dict[str, str]) -> bool:
    argv = ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
            python, "-c", "import hpcjobs_podman, hpcjobs"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, cwd="/").returncode == 0


def _on_pty(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    import pty

    main_fd, term_fd = pty.openpty()
    os.chown(os.ttyname(term_fd), pwd.getpwnam(argv[2]).pw_uid, -1)  # the user's own terminal
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=term_fd, stderr=term_fd)
    os.close(term_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    rc = proc.wait(timeout=300)
    return subprocess.CompletedProcess(argv, rc, b"".join(chunks).decode(errors="replace"), "")


def user_cli_fixture(user: str) -> Iterator[UserCli]:
    home = pwd.getpwnam(user).pw_dir
    env = {"HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
           "HPCJOBS_WARM": os.environ.get("HPCJOBS_WARM", "0")}  # fmt: skip
    python, tmp = sys.executable, None
    if not _ok(user, python, env):
        # a venv the user can't read (a clone under /root): copy what runs, with the dist-info's entry points
        tmp = tempfile.mkdtemp(prefix="hpcjobs-podman-user-", dir="/tmp")
        for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
            if entry.name.split("-")[0].split(".")[0] in RUNTIME_PACKAGES:
                src = entry.resolve() if entry.is_symlink() else entry
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, Path(tmp) / entry.name)
        for pkg in (REPO / "hpcjobs", *REPO.glob("plugins/*/hpcjobs_*")):
            if pkg.is_dir() and not (Path(tmp) / pkg.name).exists():
                shutil.copytree(pkg, Path(tmp) / pkg.name)
        subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
        python = os.path.realpath(sys._base_executable)  # type: ignore[attr-defined]
        env["PYTHONPATH"] = tmp
        if not _ok(user, python, env):
            pytest.fail(f"{user} cannot import hpcjobs and hpcjobs_podman with {python} (PYTHONPATH={tmp})")

    def run(*args: str, cwd: Path, extra_env: dict[str, str] | None = None, umask: str | None = None,
            tty: bool = False) -> subprocess.CompletedProcess[str]:
        """``hpcjobs ARGS`` as the user; ``tty``: stdout and stderr on one pseudo-terminal (its text
        in ``stdout``), stdin /dev/null, as from an interactive shell."""
        full = {**env, **(extra_env or {})}
        # umask: the caller's, as a login shell would have set it (a fixed script; the value is its argument)
        with_umask = ["sh", "-c", 'umask "$1" && shift && exec "$@"', "sh", umask] if umask else []
        argv = ["runuser", "-u", user, "--", *with_umask, "env", "-i", *[f"{k}={v}" for k, v in full.items()],
                python, "-m", "hpcjobs", *args]  # fmt: skip
        if tty:
            return _on_pty(argv, cwd)
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)

    yield run
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
