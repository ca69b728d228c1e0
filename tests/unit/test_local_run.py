"""hpcjobs.local without running anything: which parts of a batch job a local run drops or refuses,
the per-task environment, the exit status (at the spawn seam)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcjobs.config import load_site
from hpcjobs.errors import ConfigError
from hpcjobs.local import local_job, run_local
from hpcjobs.plan import build_plan
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

SITE = load_site(Path(__file__).resolve().parents[1] / "golden" / "site.yaml")


class FakeProc:
    def __init__(self, code: int) -> None:
        self.code = code

    def wait(self) -> int:
        return self.code


class Spawn:
    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.calls: list[tuple[list[str], dict[str, Any], str]] = []

    def __call__(self, argv: list[str], **kw: Any) -> FakeProc:
        self.calls.append((argv, kw, Path(argv[1]).read_text()))
        return FakeProc(self.codes[len(self.calls) - 1])


def job(**fields: Any) -> Any:
    return resolve(JobSpec.model_validate({"image": "/images/tool.sif", **fields}), SITE)


def test_tasks_are_local_processes_with_their_rank() -> None:
    j = local_job(job(ntasks=3, entrypoint=["/bin/prog", "a b"]))
    spawn = Spawn([0, 0, 0])
    result = run_local(j, ntasks=3, spawn=spawn, env={"HOME": "/h"})
    assert result.exit_code == 0 and result.task_exit_codes == (0, 0, 0)
    assert [c[1]["env"]["SLURM_PROCID"] for c in spawn.calls] == ["0", "1", "2"]
    assert {c[1]["env"]["SLURM_NTASKS"] for c in spawn.calls} == {"3"}
    assert all(c[0][0] == "bash" for c in spawn.calls)  # an argv list, never a shell string
    script = spawn.calls[0][2]
    assert "srun" not in script and "exec apptainer exec" in script and "/bin/prog 'a b'" in script
    assert build_plan(j).index("launcher") is None


def test_exit_status_first_failing_rank_and_signals() -> None:
    j = local_job(job(ntasks=3))
    assert run_local(j, ntasks=3, spawn=Spawn([0, 5, 7]), env={}).exit_code == 5
    assert run_local(j, ntasks=1, spawn=Spawn([-15]), env={}).exit_code == 128 + 15


@pytest.mark.parametrize(("fields", "message"), [
    ({"array": "0-3"}, "array jobs run only under Slurm"),
])  # fmt: skip
def test_batch_only_parts_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        local_job(job(**fields))
