"""A per-user cache of validated site configs, keyed by the file's content.

A site config changes rarely and was validated on every CLI call; building its validators costs
more than the ``sbatch`` call it precedes. The validated model is pickled under
``$XDG_CACHE_HOME/hpcjobs/site-validated/<key>.pickle`` (default ``~/.cache``), where the key
hashes the file's bytes, the hpcjobs and pydantic versions, the model modules' files and the
installed plugins (a site config may name what they provide: mpi kinds, GPU flags, wrappers), so
any change there means a fresh validation. Validation itself is unchanged: a miss goes through
:func:`hpcjobs.config.loader.validate_site`, exactly as without the cache.

Unpickling runs code named in the file, so a cache file is read only when it and its folder are
owned by the current user and writable by nobody else; anything else (another user's file, a
symlink, a corrupt or truncated file, a foreign object) is ignored and re-validated. A config
with a ``plugins`` section is never cached: whether it is valid depends on the installed plugins.
Set ``HPCJOBS_NO_SITE_CACHE=1`` to bypass the cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hpcjobs.user_cache import DISABLE_VAR, cache_root, enabled, read_private
from hpcjobs.user_cache import private_dir as _private_dir

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig

__all__ = ["DISABLE_VAR", "cache_root", "enabled", "load_cached", "plugins_fingerprint", "site_key", "store"]

_FORMAT = b"hpcjobs-site-cache-1"


def site_key(content: bytes) -> str:
    """What a cached model depends on: the file's bytes, the versions and the model sources."""
    import pydantic

    import hpcjobs.config.site as site_module
    import hpcjobs.models as models_module
    import hpcjobs.names as names_module
    from hpcjobs._version import __version__

    h = hashlib.sha256(_FORMAT)
    for part in (__version__, pydantic.VERSION):
        h.update(b"\0" + part.encode())
    for module in (site_module, models_module, names_module):
        st = os.stat(str(module.__file__))
        h.update(f"\0{st.st_mtime_ns}:{st.st_size}".encode())
    h.update(b"\0" + plugins_fingerprint().encode())
    h.update(b"\0" + content)
    return h.hexdigest()


def plugins_fingerprint() -> str:
    """The installed hpcjobs plugins (entry points and their distributions' versions): what a site
    config may name (mpi kinds, GPU flags, wrappers) depends on them, so they are part of the key."""
    from hpcjobs.plugin_index import entry_points

    items = []
    for ep in entry_points("hpcjobs"):  # plugin_api.GROUP, whose import would pull in pluggy
        version = f"{ep.dist}=={ep.version}" if ep.dist is not None else "?"
        items.append(f"{ep.name}={ep.value}@{version}")
    # plugins turned off by HPCJOBS_DISABLE_PLUGINS declare nothing: a different set of valid names
    disabled = os.environ.get("HPCJOBS_DISABLE_PLUGINS", "")
    return "\n".join([*sorted(items), f"disabled:{disabled}"])


def load_cached(key: str, env: Mapping[str, str] | None = None) -> SiteConfig | None:
    """The cached model for ``key``, or None when there is none that can be trusted."""
    from hpcjobs.config.site import SiteConfig

    data = read_private(cache_root(env) / "site-validated" / f"{key}.pickle", -1, math.inf)
    if data is None:
        return None
    if not data.startswith(_FORMAT + b"\n"):
        return None
    try:
        obj = pickle.loads(data[len(_FORMAT) + 1 :])  # noqa: S301 (our own file: owner and mode checked)
    except Exception:  # a truncated or corrupt file is a miss, whatever unpickling raised
        return None
    return obj if type(obj) is SiteConfig else None


def store(key: str, site: SiteConfig, env: Mapping[str, str] | None = None) -> None:
    """Publish ``site`` under ``key`` atomically (rename); a cache that cannot be written is skipped."""
    folder = cache_root(env) / "site-validated"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private_dir(folder):
            return
        for name in site.partitions:  # pickled along: a hit then builds no Partition validators
            site.effective(name)
        payload = _FORMAT + b"\n" + pickle.dumps(site, protocol=pickle.HIGHEST_PROTOCOL)
        import tempfile  # only on a miss: it pulls in shutil, bz2, lzma

        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pickle")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, folder / f"{key}.pickle")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return
