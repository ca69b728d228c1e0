"""The sbatch options hpcjobs writes itself, which a site's ``sbatch`` or a job's ``extra_sbatch``
may not set (it would silently win or lose). Used by the site config and by resolve.

The rules (one option per entry, every spelling and abbreviation sbatch accepts) are in
:mod:`hpcjobs.directives`; these names stay for the modules and plugins that use them.
"""

from __future__ import annotations

from hpcjobs.directives import MANAGED_LONG, MANAGED_SHORT, managed_option, option_problem

MANAGED_SBATCH = tuple(f"--{name}" for name in MANAGED_LONG) + tuple(f"-{c}" for c in MANAGED_SHORT)


def managed_sbatch_flag(opt: str) -> str | None:
    """The managed option that ``opt`` sets (``--time=5``, ``-t5``, the abbreviation ``--ti=5``), or None."""
    return managed_option(opt)


def managed_sbatch_problem(opt: str, instead: str = "") -> str | None:
    """Why ``opt`` may not be an sbatch entry (managed, or not exactly one option), or None."""
    return option_problem(opt)
