"""hpcjobs-k8s: the ``k8s`` target (``hpcjobs render|submit|status|logs --target k8s``) and the
``kubernetes`` site section. The manifest is built in :mod:`hpcjobs_k8s.manifest` (pure), the
kubectl command lines in :mod:`hpcjobs_k8s.kubectl` (run only through the injected Runner)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hpcjobs.plugin_api import SweepTarget, hookimpl
from hpcjobs_k8s.settings import SECTION, KubernetesSettings
from hpcjobs_k8s.target import KubernetesTarget

if TYPE_CHECKING:
    from pydantic import BaseModel

HPCJOBS_PLUGIN_API = "1.1"

__all__ = ["HPCJOBS_PLUGIN_API", "KubernetesSettings", "KubernetesTarget"]


@hookimpl
def hpcjobs_targets() -> Sequence[SweepTarget]:
    return [KubernetesTarget()]  # typed SweepTarget: mypy checks render_sweep against the contract


@hookimpl
def hpcjobs_site_sections() -> Mapping[str, type[BaseModel]]:
    return {SECTION: KubernetesSettings}
