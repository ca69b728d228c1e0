"""How a point's environment variable reaches the container: as the job's runtime plugin exports
one (name and escaping are the runtime's), computed at submission and stored in the points file."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from hpcjobs.errors import ConfigError

if TYPE_CHECKING:
    from hpcjobs.plugin_api import ResolvedJob, Runtime

Carry = Callable[[str, str], str]
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_carrier(job: ResolvedJob) -> Carry:
    """``carry(NAME, VALUE)`` → ``EXPORTED_NAME=EXPORTED_VALUE``, the variable the task exports.
    Raises ConfigError for a value the runtime cannot carry unchanged."""
    from hpcjobs.plugins import get_runtime
    from hpcjobs.runtimes.apptainer import ApptainerRuntime, container_env_value

    runtime = get_runtime(job.runtime)
    if isinstance(runtime, ApptainerRuntime):  # Apptainer and Singularity: the fast path, same rule
        prefix = runtime.env_prefix
        return lambda name, value: f"{prefix}{name}={container_env_value(value)}"
    return _probe(runtime, job)


def plain_prefix(job: ResolvedJob) -> str | None:
    """The prefix under which a value free of :data:`PLAIN_UNSAFE` travels unchanged
    (``APPTAINERENV_`` for Apptainer and Singularity), or None: ask the carrier for every value."""
    from hpcjobs.plugins import get_runtime
    from hpcjobs.runtimes.apptainer import ApptainerRuntime

    runtime = get_runtime(job.runtime)
    return runtime.env_prefix if isinstance(runtime, ApptainerRuntime) else None


# what container_env_value escapes or refuses (CR only as CR LF, but any CR takes the careful path)
PLAIN_UNSAFE = ("\\", "$", "`", "\r", "\x80", "\x81")


def _probe(runtime: Runtime, job: ResolvedJob) -> Carry:
    """Any other runtime plugin: ask it, as it contributes a job's environment to a plan."""
    from hpcjobs.plugin_api import LaunchPlan

    base = replace(job, env={})

    def exports(j: ResolvedJob) -> list[tuple[str, str]]:
        plan = LaunchPlan()
        runtime.contribute(j, plan)
        return [(e.name, e.value) for e in plan.env]

    before = set(exports(base))
    seen: dict[tuple[str, str], str] = {}

    def carry(name: str, value: str) -> str:
        key = (name, value)
        if key not in seen:
            new = [e for e in exports(replace(base, env={name: value})) if e not in before]
            if len(new) != 1 or not _SHELL_NAME.match(new[0][0]):
                raise ConfigError(
                    f"runtime {runtime.name!r} does not pass the environment as one exported variable per "
                    f"name, so a sweep point's env ({name}) cannot reach its containers: use args instead"
                )
            seen[key] = f"{new[0][0]}={new[0][1]}"
        return seen[key]

    return carry
