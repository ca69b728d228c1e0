"""A working third-party plugin for the tests: two task wrappers, a site section and a site hook.

- ``test-outside`` runs each task under ``env HPCJOBS_WRAPPED=outside`` on the host, so the
  variable reaches the container (Apptainer passes the host environment on).
- ``test-inside`` runs the program under ``/bin/sh -c 'echo inside-wrapper; exec "$@"'`` inside
  the container (jobs with an entrypoint).
- site section ``testhook`` with ``banner``: the ``hpcjobs_plan`` hook echoes it before the command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from hpcjobs.plugin_api import LaunchPlan, ResolvedJob, ScriptLine, Words, Wrapper, hookimpl

HPCJOBS_PLUGIN_API = "1.0"


class Outside:
    name = "test-outside"

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        plan.wrap_outside(Words(("env", "HPCJOBS_WRAPPED=outside"), "wrapper test-outside", "wrapper", self.name))


class Inside:
    name = "test-inside"

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        words = ("/bin/sh", "-c", 'echo inside-wrapper; exec "$@"', "test-inside")
        plan.wrap_inside(Words(words, "wrapper test-inside", "wrapper", self.name))


class TestHook(BaseModel):
    """Settings of the test site hook."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    banner: str


@hookimpl
def hpcjobs_wrappers() -> Sequence[Wrapper]:
    return [Outside(), Inside()]


@hookimpl
def hpcjobs_site_sections() -> Mapping[str, type[BaseModel]]:
    return {"testhook": TestHook}


@hookimpl
def hpcjobs_plan(job: ResolvedJob, plan: LaunchPlan) -> None:
    settings: Mapping[str, Any] | None = job.plugin_settings.get("testhook")
    if settings:
        banner = TestHook.model_validate(settings).banner
        plan.epilogue.append(ScriptLine(argv=("echo", banner), source="site hook testhook (plugins.testhook)"))
