from __future__ import annotations

from pathlib import Path

import pytest

from hpcjobs import plugins
from hpcjobs.api import load_site_arg
from hpcjobs.config.site import SiteConfig

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def k8s_site() -> SiteConfig:
    plugins._reset()
    return load_site_arg(HERE / "site.yaml")
