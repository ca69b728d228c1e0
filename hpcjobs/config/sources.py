"""Which site config is in effect: a published one, else the one discovered from the cluster.

Kept apart from :mod:`hpcjobs.config.loader` (find, read and validate a file) because discovery
validates its draft with the loader: the loader must not depend on discovery in turn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hpcjobs.config.loader import DISCOVERED, SiteSource, load_site_source, published_site

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.runner import Runner


def find_site(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    runner: Runner | None = None,
) -> SiteSource:
    """The site config in effect: a published one (:func:`~hpcjobs.config.loader.find_site_file`'s
    order), else the one discovered from the cluster and cached per user
    (:mod:`hpcjobs.config.discovered`)."""
    found = published_site(explicit, env)
    if found is not None:
        return found
    from hpcjobs.config.discovered import discovered_site

    disc = discovered_site(runner, env)
    return SiteSource(disc.path, DISCOVERED, disc.origin, disc.text)


def load_site(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> SiteConfig:
    """Load the site config in effect (see :func:`find_site`), validated or from the validated cache."""
    return load_site_source(find_site(explicit, env), env)
