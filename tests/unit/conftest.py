"""The core's unit tests see the core's own plugins (and the test distributions they put on the
path), not the separately installable distributions under plugins/, which have their own tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from hpcjobs import plugins


def _core_entry_points(original: Any) -> Any:
    def entry_points() -> Sequence[Any]:
        keep = []
        for ep in original():
            name = ep.dist or "hpcjobs"  # plugin_index rows carry the distribution's name
            if name == "hpcjobs" or name.startswith("hpcjobs-test-"):
                keep.append(ep)
        return keep

    return entry_points


@pytest.fixture(scope="package", autouse=True)
def _core_plugins_only() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugins, "_entry_points", _core_entry_points(plugins._entry_points))
        plugins._reset()
        yield
    plugins._reset()
