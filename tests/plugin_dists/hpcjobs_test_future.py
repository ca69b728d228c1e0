"""A plugin written for a plugin API this hpcjobs does not provide: refused at load."""

from __future__ import annotations

from typing import Any

from hpcjobs.plugin_api import hookimpl

HPCJOBS_PLUGIN_API = "2.0"


@hookimpl
def hpcjobs_runtimes() -> list[Any]:
    raise AssertionError("never asked: the plugin is refused before registration")
