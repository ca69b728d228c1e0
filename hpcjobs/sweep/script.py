"""The lines a sweep task runs before the workload: which point am I, where does my output go,
read my arguments and environment from the points file. Values never pass through a shell parser:
``mapfile -d ''`` reads NUL-delimited fields into an array and ``"${hpcjobs_args[@]}"`` passes them on."""

from __future__ import annotations

from collections.abc import Sequence

from hpcjobs.render import sh_quote
from hpcjobs.sweep.pointfile import GROUP

ARGS_WORD = '"${hpcjobs_args[@]}"'
BAD_RECORD_EXIT = 97


def log_name(point: int, attempt: int) -> str:
    return f"point-{point}.out" if attempt == 0 else f"point-{point}.retry{attempt}.out"


def task_lines(
    directory: str, sweep_id: str, attempt: int, *, start: int | None, points: Sequence[int] | None
) -> list[str]:
    """Bash lines for one array of a sweep. Task ``t`` runs point ``start + t`` or ``points[t]``."""
    if points is not None:
        where = [f"hpcjobs_points=({' '.join(str(p) for p in points)})",
                 "hpcjobs_point=${hpcjobs_points[SLURM_ARRAY_TASK_ID]}"]  # fmt: skip
    else:
        where = [f"hpcjobs_point=$(({start} + SLURM_ARRAY_TASK_ID))"]
    suffix = "" if attempt == 0 else f".retry{attempt}"
    bad = f'{{ echo "hpcjobs: points file has no valid record for point $hpcjobs_point" >&2; exit {BAD_RECORD_EXIT}; }}'
    return [
        f"# sweep {sweep_id}, attempt {attempt}: this task's point (arguments, environment) comes from",
        "# the points file, read as NUL-delimited fields: no value is parsed by a shell. Numbers from",
        "# the file are checked to be digits before arithmetic uses them (it would evaluate anything else).",
        f"hpcjobs_sweep_dir={sh_quote(directory)}",
        *where,
        f'exec >"$hpcjobs_sweep_dir/logs/point-$hpcjobs_point{suffix}.out" 2>&1',
        f"mapfile -d '' -t hpcjobs_f <\"$hpcjobs_sweep_dir/points/$((hpcjobs_point / {GROUP})).rec\"",
        f"hpcjobs_k=$((hpcjobs_point % {GROUP}))",
        "hpcjobs_i=${hpcjobs_f[1 + hpcjobs_k]-}",
        "if ! [[ ${hpcjobs_f[0]-} =~ ^[0-9]+$ && $hpcjobs_i =~ ^[0-9]+$ ]] || ((hpcjobs_k >= hpcjobs_f[0])) \\",
        '  || [ "${hpcjobs_f[hpcjobs_i]-}" != "$hpcjobs_point" ]; then',
        f"  {bad}",
        "fi",
        "hpcjobs_n=${hpcjobs_f[hpcjobs_i + 1]-}",
        f"[[ $hpcjobs_n =~ ^[0-9]+$ ]] || {bad}",
        'hpcjobs_args=("${hpcjobs_f[@]:hpcjobs_i + 2:hpcjobs_n}")',
        "hpcjobs_i=$((hpcjobs_i + 2 + hpcjobs_n))",
        "hpcjobs_n=${hpcjobs_f[hpcjobs_i]-}",
        f"[[ $hpcjobs_n =~ ^[0-9]+$ ]] || {bad}",
        'for hpcjobs_e in "${hpcjobs_f[@]:hpcjobs_i + 1:hpcjobs_n}"; do',
        '  export "${hpcjobs_e?}"  # NAME=VALUE as the runtime exports it (chosen at submission)',
        "done",
        "unset hpcjobs_f hpcjobs_i hpcjobs_k hpcjobs_n hpcjobs_e",
    ]
