"""The sbatch options hpcjobs writes itself, which a site's ``sbatch`` or a job's ``extra_sbatch``
may not set (it would silently win or lose). Used by the site config and by resolve."""

from __future__ import annotations

MANAGED_SBATCH = (
    "--job-name", "-J", "--partition", "-p", "--nodes", "-N", "--ntasks", "-n", "--cpus-per-task", "-c",
    "--gpus", "-G", "--gpus-per-node", "--gres", "--mem", "--time", "-t", "--array", "-a",
    "--account", "-A", "--qos", "-q", "--output", "-o", "--error", "-e",
    "--dependency", "-d", "--kill-on-invalid-dep", "--comment",
)  # fmt: skip
_WHY_MANAGED = {
    "--comment": "hpcjobs sets itself: it tags each submission so that a retry never submits twice",
    "--kill-on-invalid-dep": "hpcjobs sets itself with every dependency",
}


def managed_sbatch_flag(opt: str) -> str | None:
    """The managed option that ``opt`` sets (``--time=5``, ``-t 5``, ``-t5``), or None."""
    word = opt.split("=", 1)[0].split(None, 1)[0] if opt.strip() else opt
    if word in MANAGED_SBATCH:
        return word
    if len(word) > 2 and not word.startswith("--") and word[:2] in MANAGED_SBATCH:
        return word[:2]  # a short option with its value glued on: -t5
    return None


def managed_sbatch_problem(opt: str, instead: str) -> str | None:
    flag = managed_sbatch_flag(opt)
    if flag is None:
        return None
    return f"{opt!r} sets {flag}, which {_WHY_MANAGED.get(flag, 'hpcjobs writes itself: ' + instead)}"
