"""What the submitting host's launcher offers: ``srun --mpi=list`` (Slurm's MPI plugins and the
PMIx major version its pmix plugin was built for) and ``mpirun --version`` for ``mpi: mpirun``.

Both are kept in the per-user cache (``~/.cache/hpcjobs/mpi/``), so that a submit asks nothing
when nothing changed. ``srun --mpi=list`` is kept under the key of
:func:`hpcjobs.config.discovered.config_key` (a hash of slurm.conf and its companions) plus the
identity of the ``srun`` binary (an upgrade of Slurm's packages replaces it), as the sweep's limits
are (:mod:`hpcjobs.sweep.limitcache`); ``mpirun --version`` under the identity of the resolved
binary. Files are trusted under the same rules (owned by the user, nobody else can write them or
their folder, younger than a day), and only when the runner asks this host.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpcjobs.runner import Runner

HOST_TIMEOUT_S = 30.0
_PLUGIN = re.compile(r"^[A-Za-z0-9_]+$")
_PMIX_V = re.compile(r"\bpmix_v(\d+)\b")


@dataclass(frozen=True)
class SrunOffer:
    """``srun --mpi=list``: the plugin types, and the pmix plugin's versions (``pmix_v4`` → 4)."""

    plugins: tuple[str, ...] = ()
    pmix_majors: tuple[int, ...] = ()
    error: str | None = None

    def offers(self, kind: str) -> bool | None:
        if self.error is not None:
            return None
        return kind in self.plugins or (kind == "pmix" and bool(self.pmix_majors))

    @property
    def pmix_major(self) -> int | None:
        """The PMIx major version ``--mpi=pmix`` uses (Slurm's default pmix plugin is the newest one)."""
        return max(self.pmix_majors) if self.pmix_majors else None

    def describe(self) -> str:
        if self.error is not None:
            return f"srun --mpi=list failed ({self.error})"
        kinds = [p for p in self.plugins if not p.startswith("pmix_v") and p != "cray_shasta"]
        text = "srun offers --mpi=" + ",".join(kinds)
        if self.pmix_majors:
            text += f" (pmix plugin for PMIx v{self.pmix_major})"
        return text

    def to_record(self) -> dict[str, Any]:
        return {"plugins": list(self.plugins), "pmix_majors": list(self.pmix_majors)}


@dataclass(frozen=True)
class MpirunInfo:
    """``mpirun --version`` of the host: implementation and version (``impl`` None: not found)."""

    binary: str
    impl: str | None = None
    version: str | None = None
    error: str | None = None

    def describe(self) -> str:
        from hpcjobs.mpi.probe import IMPL_NAMES

        if self.error is not None:
            return f"host mpirun ({self.binary}): {self.error}"
        name = IMPL_NAMES.get(self.impl or "unknown", self.impl or "an unknown MPI")
        return f"host mpirun is {name} {self.version or '(version not known)'}"


def parse_mpi_list(text: str) -> SrunOffer:
    """``srun --mpi=list`` (22.05 and 24.11 print the same shape)::

        MPI plugin types are...
                pmix
                none
                pmi2
        specific pmix plugin versions available: pmix_v4
    """
    plugins: list[str] = []
    majors = sorted({int(m) for m in _PMIX_V.findall(text)})
    listing = False
    for line in text.splitlines():
        if line.startswith("MPI plugin types"):
            listing = True
            continue
        if line.startswith("specific"):
            listing = False
            continue
        word = line.strip()
        if listing and _PLUGIN.match(word) and word not in plugins:
            plugins.append(word)
    if not plugins:
        return SrunOffer(error="no plugin types in its output")
    return SrunOffer(tuple(plugins), tuple(majors))


def parse_mpirun_version(binary: str, text: str) -> MpirunInfo:
    m = re.search(r"\(Open MPI\)\s+(\S+)", text)
    if m:
        return MpirunInfo(binary, "openmpi", m.group(1))
    m = re.search(r"Intel\(R\) MPI Library.*?Version\s+([^\s,]+)", text)
    if m:
        return MpirunInfo(binary, "intel-mpi", m.group(1))
    if "HYDRA" in text:
        m = re.search(r"Version:\s+(\S+)", text)
        impl = "mvapich" if "MVAPICH" in text.upper() else "mpich"
        return MpirunInfo(binary, impl, m.group(1) if m else None)
    return MpirunInfo(binary, "unknown", None)


def srun_offer(runner: Runner | None = None, env: Mapping[str, str] | None = None) -> SrunOffer:
    """``srun --mpi=list`` on this host, kept per Slurm configuration."""

    def ask() -> SrunOffer:
        done = _run(runner, ["srun", "--mpi=list"])
        if isinstance(done, str):
            return SrunOffer(error=done)
        # 22.05 and 24.11 print the list on stderr
        return parse_mpi_list(done.stdout + "\n" + done.stderr)

    key = _srun_key(runner, env)
    if key is None:
        return ask()
    cluster, digest = key
    path = _folder(env) / f"srun-{cluster}.json"
    kept = _read(path, digest)
    if kept is not None:
        try:
            return SrunOffer(tuple(str(p) for p in kept["plugins"]), tuple(int(m) for m in kept["pmix_majors"]))
        except (KeyError, TypeError, ValueError):
            pass
    offer = ask()
    if offer.error is None:
        _write(path, digest, offer.to_record())
    return offer


def mpirun_info(binary: str, runner: Runner | None = None, env: Mapping[str, str] | None = None) -> MpirunInfo:
    """``mpirun --version`` of the binary the job would run (``mpi.mpirun``), kept per binary."""
    path_var = (os.environ if env is None else env).get("PATH")
    found = shutil.which(binary, path=path_var)
    if found is None:
        return MpirunInfo(binary, error="not found on this host's PATH")
    ident = _identity(found)
    cache = _folder(env) / f"mpirun-{hashlib.sha256(found.encode()).hexdigest()[:16]}.json"
    use_cache = ident is not None and _asks_this_host(runner)
    if use_cache:
        kept = _read(cache, ident or "")
        if kept is not None and isinstance(kept.get("impl"), str):
            version = kept.get("version")
            return MpirunInfo(binary, kept["impl"], version if isinstance(version, str) else None)
    done = _run(runner, [found, "--version"])
    if isinstance(done, str):
        return MpirunInfo(binary, error=done)
    info = parse_mpirun_version(binary, done.stdout + "\n" + done.stderr)
    if use_cache:
        _write(cache, ident or "", {"impl": info.impl, "version": info.version})
    return info


# ------------------------------------------------------------------------------------ helpers
def _run(runner: Runner | None, argv: list[str]) -> Any:
    from hpcjobs.errors import RunnerError
    from hpcjobs.runner import default_runner

    try:
        done = (runner or default_runner())(argv, timeout_s=HOST_TIMEOUT_S)
    except RunnerError as exc:
        return str(exc)
    if not done.ok:
        return " ".join((done.stderr or done.stdout).split())[:200] or f"exit status {done.returncode}"
    return done


def _asks_this_host(runner: Runner | None) -> bool:
    from hpcjobs.sweep.limitcache import asks_this_host

    return asks_this_host(runner)


def _identity(path: str) -> str | None:
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return f"{real}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"


def _srun_key(runner: Runner | None, env: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(cluster, digest) to keep ``srun --mpi=list`` under, or None: ask every time."""
    from hpcjobs.config.discovered import DEFAULT_SLURM_CONF, config_key
    from hpcjobs.errors import HpcjobsError

    environ = os.environ if env is None else env
    if not _asks_this_host(runner) or not os.access(environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF, os.R_OK):
        return None  # a configless client's key would itself be a call to Slurm
    srun = shutil.which("srun", path=environ.get("PATH"))
    ident = _identity(srun) if srun else None
    if ident is None:
        return None
    try:
        key = config_key(runner, environ)
    except HpcjobsError:
        return None
    if key.basis == "scontrol show config":
        return None
    return key.cluster, hashlib.sha256(f"{key.digest}\0{ident}".encode()).hexdigest()


def _folder(env: Mapping[str, str] | None) -> Path:
    from hpcjobs.user_cache import cache_root

    return cache_root(env) / "mpi"


def _read(path: Path, key: str) -> dict[str, Any] | None:
    from hpcjobs.config.discovered import MAX_AGE_S
    from hpcjobs.user_cache import read_keyed

    value = read_keyed(path, key, "value", 65536, MAX_AGE_S)
    return value if isinstance(value, dict) else None


def _write(path: Path, key: str, value: Mapping[str, Any]) -> None:
    from hpcjobs.user_cache import write_keyed

    write_keyed(path, key, "value", dict(value))
