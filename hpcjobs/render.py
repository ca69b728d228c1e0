"""LaunchPlan → sbatch script text. Pure, and the only place in hpcjobs that quotes for a shell.

Every value that reaches the script goes through :func:`sh_quote`, so an argument with spaces,
quotes, ``$``, ``;`` or newlines arrives in the container byte-for-byte.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from hpcjobs.directives import checked_directive, slurm_input_vars
from hpcjobs.plugin_api import LaunchPlan, ResolvedJob, ScriptLine

PRECEDENCE = "CLI (--set) > job spec > partition > site defaults > built-in default"


def sh_quote(value: str) -> str:
    """Quote one word for bash; the result reads back as exactly ``value``."""
    if value == "":
        return "''"
    return shlex.quote(value)


def sh_join(argv: Sequence[str]) -> str:
    return " ".join(sh_quote(a) for a in argv)


def render(
    job: ResolvedJob,
    *,
    explain: bool = False,
    environ: Iterable[str] = (),
    task_lines: Sequence[str] = (),
    task_args: str | None = None,
    job_dir: str | None = None,
) -> str:
    """The sbatch script for ``job``: its launch plan (:func:`hpcjobs.plan.build_plan`), serialized.

    A sweep's per-task part: ``task_lines`` (bash its maker quoted with :func:`sh_quote`) run after
    the environment, and ``task_args`` (one bash word list, ``"${arr[@]}"``) ends the command.
    ``job_dir``: the directory the job will start in, for --explain's "Where output goes".
    """
    from hpcjobs.plan import build_plan

    plan = build_plan(job)
    plan.epilogue += [ScriptLine(code=line) for line in task_lines]
    notes = output_notes(job, job_dir) if explain else ()
    return render_plan(plan, explain=explain, environ=environ, task_args=task_args, notes=notes)


def output_notes(job: ResolvedJob, job_dir: str | None) -> list[str]:
    """--explain's "Where output goes" lines (:mod:`hpcjobs.outputs`) for ``job``."""
    from hpcjobs.outputs import where_output_goes
    from hpcjobs.plan import starts_in_job_dir

    return where_output_goes(job, job_dir, starts_in_job_dir=starts_in_job_dir(job))


def render_plan(
    plan: LaunchPlan,
    *,
    explain: bool = False,
    environ: Iterable[str] = (),
    task_args: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The script for ``plan``. With ``explain``, each line and command word says where it came from,
    which of the variable names in ``environ`` (the submitting environment) sbatch will not see,
    and the ``notes`` (comment text) after the directives.

    Every directive, the core's and a plugin's, is written as one option that sbatch reads back
    exactly (:func:`hpcjobs.directives.checked_directive`), or refused."""

    def note(source: str | None) -> str:
        return f"  # <- {source}" if explain and source else ""

    lines = ["#!/bin/bash"]
    lines += [f"# {comment_text(c)}" for c in plan.comments]
    if explain:
        lines.append("# --explain: '<- SOURCE' after a line says where its value came from;")
        lines.append(f"# precedence: {PRECEDENCE}.")
        lines += _explain_input_env(environ)
    for d in plan.directives:
        lines.append(f"#SBATCH {checked_directive(d.option, d.value)}{note(d.source)}")
    if explain:
        lines += [f"# {comment_text(n)}" for n in notes]
    lines.append(f"set {plan.shell_options}")
    lines += _script_lines(plan.prologue, explain)
    lines += [f"export {e.name}={sh_quote(e.value)}{note(e.source)}" for e in plan.env]
    lines += _script_lines(plan.epilogue, explain)
    if explain and plan.command:
        rows = [(list(g.argv), g.source) for g in plan.command]
        if task_args:
            rows.append(([task_args], "sweep: this task's point's arguments, from the points file"))
        width = min(max(len(_words(w)) for w, _ in rows), 48)
        lines.append("# The command, word by word (<- where each part came from):")
        lines += [f"#   {_words(w):<{width}}  <- {why}" for w, why in rows]
    tail = f" {task_args}" if task_args else ""
    lines.append("exec " + sh_join(plan.argv()) + tail)
    return "\n".join(lines) + "\n"


def _explain_input_env(environ: Iterable[str]) -> list[str]:
    lines = [
        "# sbatch is run without Slurm's input variables (SBATCH_*, SRUN_*, SLURM_* but SLURM_CONF):",
        "# the #SBATCH lines below are all it reads, and the job does not inherit them.",
    ]
    cleared = slurm_input_vars(environ)
    if cleared:
        shown = ", ".join(cleared[:12]) + (f" and {len(cleared) - 12} more" if len(cleared) > 12 else "")
        lines.append(f"# Set here and cleared for sbatch: {comment_text(shown)}.")
    return lines


def _script_lines(items: list[ScriptLine], explain: bool) -> list[str]:
    out = []
    for item in items:
        if item.explain_only and not explain:
            continue
        text = sh_join(item.argv) if item.argv else item.code
        out.append(f"{text}  # <- {item.source}" if explain and item.source else text)
    return out


def _words(argv: list[str]) -> str:
    return comment_text(sh_join(argv))


def comment_text(text: str) -> str:
    """Text for a '# …' line: a newline would end the comment and start code."""
    return text.replace("\n", "\\n")
