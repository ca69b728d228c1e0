"""The same job specs for ``hpcjobs run --local`` with every runtime (Apptainer in the core's tests,
Podman and Docker in the hpcjobs-podman plugin's): entrypoint/command cases, env, binds, hostile
arguments byte-for-byte, tasks and exit codes. Each case checks the program's own output."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARGV_DUMP = 'for a in "$@"; do printf "ARG:%s\\n" "$(printf %s "$a" | base64 -w0)"; done'
HOSTILE = ["two words", "it's", 'say "hi"', "$HOME", "`id`", "; echo pwned", "a\nb", "*", "", "\\n", "ü €"]
ENV_VALUE = "it's \"$HOME\" `id`; echo x\nline2 \\ end"


def _decoded(out: str, prefix: str) -> list[str]:
    return [base64.b64decode(line[len(prefix):]).decode() for line in out.splitlines() if line.startswith(prefix)]


@dataclass(frozen=True)
class Case:
    spec: Callable[[str, Path], dict[str, Any]]  # (image ref, job dir) -> job spec
    exit_code: int
    check: Callable[[str], bool]  # on the combined output


def _hostile_spec(image: str, job_dir: Path) -> dict[str, Any]:
    weird = job_dir / "dir with 'quote' and $x"
    weird.mkdir(exist_ok=True)
    (weird / "f").write_text("bound\n")
    weird.chmod(0o755)
    return {
        "image": image,
        "entrypoint": ["/bin/sh", "-c", ARGV_DUMP + '; printf "ENV:%s\\n" "$(printf %s "$HOSTILE" | base64 -w0)";'
                       " cat /weird/f", "dump", *HOSTILE],
        "env": {"HOSTILE": ENV_VALUE},
        "binds": [{"src": str(weird), "dst": "/weird", "mode": "ro"}],
    }


CASES: dict[str, Case] = {
    "image_entrypoint_and_cmd": Case(lambda img, d: {"image": img}, 0, lambda out: "entry: default-cmd\n" in out),
    "command_replaces_cmd": Case(
        lambda img, d: {"image": img, "command": ["x y", "$HOME"]}, 0,
        lambda out: "entry-argc: 2\nentry: x y\nentry: $HOME\n" in out,
    ),
    "entrypoint_replaces_both_env_literal": Case(
        lambda img, d: {"image": img, "entrypoint": ["/bin/sh", "-c", 'echo "E $0 X=$X"'], "command": ["a b"],
                        "env": {"X": "`id` $HOME"}},
        0, lambda out: "E a b X=`id` $HOME\n" in out and "entry:" not in out,
    ),
    "exit_code": Case(lambda img, d: {"image": img, "entrypoint": ["/bin/sh", "-c", "exit 4"]}, 4, lambda out: True),
    "hostile_args_env_bind": Case(
        _hostile_spec, 0,
        lambda out: _decoded(out, "ARG:") == HOSTILE and _decoded(out, "ENV:") == [ENV_VALUE] and "bound\n" in out,
    ),
    "two_tasks": Case(
        lambda img, d: {"image": img, "ntasks": 2, "mpi": "none",
                        "entrypoint": ["/bin/sh", "-c", 'echo "rank=$SLURM_PROCID of $SLURM_NTASKS"']},
        0,
        lambda out: sorted(ln for ln in out.splitlines() if ln.startswith("rank=")) == ["rank=0 of 2", "rank=1 of 2"],
    ),
}
