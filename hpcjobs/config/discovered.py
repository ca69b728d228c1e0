"""The site config hpcjobs uses when nobody published one: discovered from the cluster, cached.

A researcher's first ``hpcjobs submit`` usually happens on a cluster whose admins have not adopted
hpcjobs. Then hpcjobs asks Slurm what ``hpcjobs site discover`` asks (partitions, nodes, CPUs,
memory, GPUs, time limits), keeps the result as YAML in the user's cache,
``$XDG_CACHE_HOME/hpcjobs/discovered/<cluster>.yaml`` (default ``~/.cache``), and loads it through
the same validation as any site config. A published one always wins (see
:func:`hpcjobs.config.sources.find_site`).

The cached file's first line holds the *configuration key*: a hash over the Slurm configuration
files (``slurm.conf`` and ``gres.conf`` from ``$SLURM_CONF``'s folder, default ``/etc/slurm``),
or, where they cannot be read (a configless client), over ``scontrol show config``. Reading two
small files costs well under a millisecond; ``scontrol`` asks slurmctld (about 15 ms). When the key
no longer matches, the file is older than :data:`MAX_AGE_S` (a partition changed with ``scontrol
update`` leaves the files alone), or the hpcjobs version changed, the cluster is asked again.

The profile describes what Slurm and the hardware allow, nothing more: no binds, no deny lists,
no locked fields, and a GPU flag only on partitions whose nodes have GPUs (the draft's rules in
:mod:`hpcjobs.site.discover`).

Like the validated-config cache, a cached file is used only when it and its folder belong to the
user and nobody else can write them; otherwise the cluster is asked again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcjobs.config.cache import cache_root
from hpcjobs.user_cache import read_private, write_private

if TYPE_CHECKING:
    from hpcjobs.runner import Runner

KEY_PREFIX = "# hpcjobs-discovery-key: "
MAX_AGE_S = 24 * 3600.0
DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"
ORIGIN = "discovered from the cluster"
_CONF_FILES = ("gres.conf",)
_CLUSTER_LINE = re.compile(r"^\s*ClusterName\s*=\s*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class ConfigKey:
    """Which cluster, and a hash of its Slurm configuration (see the module docstring)."""

    cluster: str
    digest: str
    basis: str  # what was hashed, for messages: "slurm.conf" or "scontrol show config"


@dataclass(frozen=True)
class Discovered:
    path: Path
    key: ConfigKey
    rediscovered: bool  # False: the cached file was reused
    text: str | None = None  # set when the file could not be written: use this text instead

    @property
    def origin(self) -> str:
        if self.text is not None:
            return f"{ORIGIN} {self.key.cluster} (not cached: {self.path} cannot be written)"
        return f"{ORIGIN} {self.key.cluster}, cached in {self.path}"


def config_key(runner: Runner | None = None, env: Mapping[str, str] | None = None) -> ConfigKey:
    """The cluster's name and configuration hash; files where readable, else ``scontrol show config``."""
    from hpcjobs._version import __version__

    environ = os.environ if env is None else env
    conf = Path(environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF)
    h = hashlib.sha256(f"hpcjobs {__version__}\0".encode())
    try:
        text = conf.read_bytes()
    except OSError:
        return _key_from_scontrol(runner, h)
    h.update(b"slurm.conf\0" + text)
    for name in _CONF_FILES:
        try:
            h.update(f"\0{name}\0".encode() + (conf.parent / name).read_bytes())
        except OSError:
            h.update(f"\0{name} missing".encode())
    m = _CLUSTER_LINE.search(text.decode("utf-8", "replace"))
    cluster = m.group(1) if m else "cluster"
    return ConfigKey(_safe_name(cluster), h.hexdigest(), str(conf))


def _key_from_scontrol(runner: Runner | None, h: Any) -> ConfigKey:
    from hpcjobs.errors import RunnerError, SchedulerError
    from hpcjobs.runner import default_runner

    try:
        done = (runner or default_runner())(["scontrol", "show", "config"], timeout_s=30.0)
    except RunnerError as exc:  # no scontrol here at all
        raise SchedulerError(f"no site config, and Slurm cannot be asked (scontrol show config: {exc})") from exc
    if not done.ok:
        detail = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise SchedulerError(f"no site config, and Slurm cannot be asked (scontrol show config: {detail})")
    h.update(b"scontrol show config\0" + done.stdout.encode())
    m = _CLUSTER_LINE.search(done.stdout)
    cluster = m.group(1) if m else "cluster"
    return ConfigKey(_safe_name(cluster), h.hexdigest(), "scontrol show config")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "cluster"


def discovered_site(
    runner: Runner | None = None, env: Mapping[str, str] | None = None, *, now_s: float | None = None
) -> Discovered:
    """The cached discovered config, asking the cluster again when the key or age says so."""
    key = config_key(runner, env)
    folder = cache_root(env) / "discovered"
    path = folder / f"{key.cluster}.yaml"
    if _cached_key(path, now_s) == key.digest:
        return Discovered(path, key, rediscovered=False)
    text = _discover_text(runner, key)
    problem = write_private(folder, path, text)
    found = Discovered(path, key, rediscovered=True, text=text if problem else None)
    from hpcjobs.log import std_logger

    std_logger("hpcjobs.site").warning(
        "note: no site config is published here; using the one %s "
        "(hpcjobs site show explains it; a published site config takes precedence)%s",
        found.origin, f"; {problem}" if problem else "",
    )
    return found


def _discover_text(runner: Runner | None, key: ConfigKey) -> str:
    from hpcjobs.config.loader import ENV_VAR, SYSTEM_PATH, USER_PATH
    from hpcjobs.errors import ConfigError, HpcjobsError
    from hpcjobs.site.discover import discover

    try:
        draft = discover(runner)
    except HpcjobsError as exc:
        raise ConfigError(
            f"no site config (pass --site PATH, set ${ENV_VAR}, or install {USER_PATH} or {SYSTEM_PATH}), "
            f"and discovering one from the cluster failed: {exc}"
        ) from exc
    header = [
        f"{KEY_PREFIX}{key.digest}",
        f"# hpcjobs: {ORIGIN} {key.cluster} because no site config is published (key from {key.basis}).",
        "# Rewritten when the Slurm configuration changes; delete this file to ask the cluster again.",
        "# To publish a site config for everyone, see `hpcjobs site discover` in the admin guide.",
    ]
    return "\n".join(header) + "\n" + draft


def _cached_key(path: Path, now_s: float | None) -> str | None:
    """The key on the cached file's first line, when the file can be trusted and is young enough."""
    head = read_private(path, 256, MAX_AGE_S, now_s)
    if head is None:
        return None
    first = head.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    return first[len(KEY_PREFIX) :].strip() if first.startswith(KEY_PREFIX.strip()) else None
