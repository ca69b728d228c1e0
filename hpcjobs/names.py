"""Names that plugins declare, as pydantic field types: validation accepts what the installed
plugins provide and the error lists it (``hpcjobs plugins`` shows who provides what).

Kept apart from :mod:`hpcjobs.models` because checking a name loads the plugins, and the plugin
contract itself builds on models.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator


def _declared(kind: str) -> AfterValidator:
    """Accept a name some installed plugin declares (launchers: mpi kinds, runtimes: GPU flags)."""

    def check(value: str) -> str:
        from hpcjobs.plugins import check_name

        return check_name(kind, value)

    return AfterValidator(check)


class _DeclaredSchema:
    """JSON Schema ``enum`` of the names the installed plugins declare, computed when asked for."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Any:
        from hpcjobs.plugins import declared_names

        schema = handler(core_schema)
        schema["enum"] = declared_names(self.kind)
        return schema


MpiKind = Annotated[str, _declared("mpi"), _DeclaredSchema("mpi")]
"""An ``mpi`` value: one a launcher plugin serves (built-in: pmix, pmi2, none (srun), mpirun)."""
GpuFlag = Annotated[str, _declared("gpu_flag"), _DeclaredSchema("gpu_flag")]
"""A GPU flag one runtime plugin understands (built-in Apptainer: nv, nvccli, rocm, none)."""
WrapperName = Annotated[str, _declared("wrapper")]
"""A task wrapper (profiler …) a plugin provides."""
