"""hpcjobs-k8s: the ``k8s`` target (``hpcjobs render|submit|status|logs --target k8s``) and the
``kubernetes`` site section. The manifest is built in :mod:`hpcjobs_k8s.manifest` (pure), the
kubectl command lines in :mod:`hpcjobs_k8s.kubectl` (run only through the injected Runner)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpcjobs.plugin_api import SweepTarget, hookimpl

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hpcjobs_k8s.settings import KubernetesSettings
    from hpcjobs_k8s.target import KubernetesTarget

HPCJOBS_PLUGIN_API = "1.1"

__all__ = ["HPCJOBS_PLUGIN_API", "KubernetesSettings", "KubernetesTarget"]

# hpcjobs loads every plugin on each render and submit; the target and the settings' model classes
# are imported when a hook or a caller asks for them (most calls run on Slurm and ask for neither).
_LAZY = {"KubernetesSettings": "hpcjobs_k8s.settings", "KubernetesTarget": "hpcjobs_k8s.target"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def hpcjobs_targets() -> Sequence[SweepTarget]:
    from hpcjobs_k8s.target import KubernetesTarget

    return [KubernetesTarget()]  # typed SweepTarget: mypy checks render_sweep against the contract


@hookimpl
def hpcjobs_site_sections() -> Mapping[str, type[BaseModel]]:
    from hpcjobs_k8s.settings import SECTION, KubernetesSettings

    return {SECTION: KubernetesSettings}
