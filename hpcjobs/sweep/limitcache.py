"""MaxArraySize and MaxJobCount (and single settings such as TaskPlugin, see
:func:`cached_config_value`), kept per Slurm configuration key, so that a sweep does not ask
slurmctld (``scontrol show config``, 4-10 ms on the dev VM, more on a busy controller) every time.

Both are set in ``slurm.conf`` and change only with it (MaxJobCount even needs a restart of
slurmctld), so the key of :func:`hpcjobs.config.discovered.config_key` (a hash of ``slurm.conf``
and ``gres.conf``, well under a millisecond) says when the kept values are stale. Where the files
cannot be read (a configless client) that key is itself ``scontrol show config``, so nothing is
kept and Slurm is asked as before. The file, ``<cache>/limits/<cluster>.json``, is trusted under
the same rules as the discovered site config (owned by the user, nobody else can write it or its
folder, younger than :data:`~hpcjobs.config.discovered.MAX_AGE_S`). Per-user and QoS limits
(``sacctmgr``) are never kept: they change without slurm.conf changing.

The key describes *this host's* Slurm, so values are kept only when Slurm is asked on this host:
through the default runner (or a :class:`~hpcjobs.runner.RecordingRunner` that only passes calls
on to it). A runner that answers itself (a fake) or could run elsewhere neither reads nor writes
the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcjobs.runner import Runner

Limits = tuple[int, int, bool]  # MaxArraySize, MaxJobCount, accounting storage enabled


def cached_config_limits(
    fetch: Callable[[], Limits], runner: Runner | None = None, env: Mapping[str, str] | None = None
) -> Limits:
    """``fetch()`` (which asks Slurm through ``runner``), or what it returned earlier for the same
    configuration key."""
    from hpcjobs.config.discovered import DEFAULT_SLURM_CONF, config_key
    from hpcjobs.errors import HpcjobsError
    from hpcjobs.user_cache import cache_root

    environ = os.environ if env is None else env
    if not asks_this_host(runner):
        return fetch()
    if not os.access(environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF, os.R_OK):
        return fetch()  # configless: the key would be one more scontrol show config
    try:
        key = config_key(runner, environ)
    except HpcjobsError:
        return fetch()
    if key.basis == "scontrol show config":  # no readable slurm.conf: no cheap key to trust
        return fetch()
    path = cache_root(environ) / "limits" / f"{key.cluster}.json"
    kept = _read(path, key.digest)
    if kept is not None:
        return kept
    value = fetch()
    _write(path, key.digest, value)
    return value


def cached_config_value(
    name: str, fetch: Callable[[], str], runner: Runner | None = None, env: Mapping[str, str] | None = None
) -> str:
    """``fetch()``, a value read from ``scontrol show config`` (``TaskPlugin``), or what it returned
    earlier for the same configuration key: kept in ``<cache>/limits/<cluster>/<name>.json`` (beside
    the limits file, not next to it) under the rules of :func:`cached_config_limits`."""
    from hpcjobs.config.discovered import DEFAULT_SLURM_CONF, config_key
    from hpcjobs.errors import HpcjobsError
    from hpcjobs.user_cache import cache_root, read_keyed, write_keyed

    environ = os.environ if env is None else env
    if not asks_this_host(runner) or not os.access(environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF, os.R_OK):
        return fetch()
    try:
        key = config_key(runner, environ)
    except HpcjobsError:
        return fetch()
    if key.basis == "scontrol show config":
        return fetch()
    from hpcjobs.config.discovered import MAX_AGE_S

    path = cache_root(environ) / "limits" / key.cluster / f"{name}.json"
    kept = read_keyed(path, key.digest, "value", 4096, MAX_AGE_S)
    if isinstance(kept, str):
        return kept
    value = fetch()
    write_keyed(path, key.digest, "value", value)
    return value


def asks_this_host(runner: Runner | None) -> bool:
    from hpcjobs.runner import RecordingRunner, SubprocessRunner

    if runner is None or type(runner) is SubprocessRunner:
        return True
    return type(runner) is RecordingRunner and runner.answer is None and asks_this_host(runner.inner)


def _read(path: Path, digest: str) -> Limits | None:
    from hpcjobs.config.discovered import MAX_AGE_S
    from hpcjobs.user_cache import read_private

    raw = read_private(path, 4096, MAX_AGE_S)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        if data.get("key") != digest:
            return None
        max_array, max_jobs, accounting = data["max_array_size"], data["max_job_count"], data["accounting"]
        if type(max_array) is not int or type(max_jobs) is not int or type(accounting) is not bool:
            return None
        return max_array, max_jobs, accounting
    except (ValueError, KeyError, AttributeError):
        return None


def _write(path: Path, digest: str, value: Limits) -> None:
    from hpcjobs.user_cache import write_private

    text = json.dumps({"key": digest, "max_array_size": value[0], "max_job_count": value[1], "accounting": value[2]})
    write_private(path.parent, path, text + "\n")  # when it cannot be written, Slurm is asked next time
