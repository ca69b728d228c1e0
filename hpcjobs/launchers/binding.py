"""Whether srun can do the binding a job asks for: ``--cpu-bind``, ``--hint`` and ``--mem-bind`` take
effect only through Slurm's ``task/affinity`` plugin. With ``TaskPlugin=task/none`` (or
``task/cgroup`` alone, which confines a job to its CPUs but binds no task) srun accepts the options
and binds nothing, silently. mpirun's own binding (``--bind-to``) does not depend on it.

The cluster's TaskPlugin is read from ``scontrol show config`` once per slurm.conf (kept like
MaxArraySize: :func:`hpcjobs.sweep.limitcache.cached_config_value`), so a submission adds no
Slurm call while slurm.conf is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcjobs.launchers import srun_options

if TYPE_CHECKING:
    from hpcjobs.plugin_api import ResolvedJob
    from hpcjobs.runner import Runner

BINDING = ("cpu-bind", "hint", "mem-bind")


def binding_options(job: ResolvedJob) -> list[str]:
    """The job's srun options that ask srun to bind tasks (``--cpu-bind=none`` does not)."""
    from hpcjobs.launchers.options import launcher_for

    if not job.multi_task or launcher_for(job.mpi) != "srun":
        return []
    out = []
    for entry in job.launcher_options:
        parsed = srun_options.parse(entry)
        if isinstance(parsed, str):
            continue
        for full, value in parsed:
            if full in BINDING and (value or "").split(",")[0].lower() not in ("none", "no", "quiet", "verbose"):
                out.append(entry)
    return out


def binding_warning(job: ResolvedJob, task_plugin: str) -> str | None:
    """A line saying the binding asked for will not happen, or None."""
    asked = binding_options(job)
    if not asked or "affinity" in task_plugin:
        return None
    shown = ", ".join(repr(a) for a in asked)
    return (f"srun binds no task on this cluster (TaskPlugin={task_plugin}): {shown} is accepted and has "
            "no effect; ask the admins for task/affinity, or bind with mpi: mpirun (--bind-to core)")


def cluster_task_plugin(scheduler: Any = None, runner: Runner | None = None) -> str | None:
    """The cluster's TaskPlugin, or None when it cannot be read (no Slurm here)."""
    from hpcjobs.errors import HpcjobsError
    from hpcjobs.sweep.limitcache import cached_config_value

    try:
        backend = scheduler
        if backend is None:
            from hpcjobs.schedulers.slurm_cli import SlurmCli

            backend = SlurmCli(runner)
        elif getattr(backend, "task_plugin", None) is None:
            return None  # a backend that cannot say (a test's fake, a third-party one)
        asks = getattr(backend, "runner", None) or getattr(getattr(backend, "_cli", None), "runner", None)
        return cached_config_value("TaskPlugin", backend.task_plugin, asks) if asks is not None else str(
            backend.task_plugin())
    except (HpcjobsError, OSError):
        return None


def check_binding(job: ResolvedJob, scheduler: Any = None, runner: Runner | None = None) -> str | None:
    """:func:`binding_warning` for the cluster the job goes to; asks Slurm only when binding is asked."""
    if not binding_options(job):
        return None
    plugin = cluster_task_plugin(scheduler, runner)
    return None if plugin is None else binding_warning(job, plugin)


def warn_binding(job: ResolvedJob, scheduler: Any = None, runner: Runner | None = None) -> None:
    """Warn (:class:`~hpcjobs.errors.HpcjobsWarning`) when the job asks srun to bind and the cluster's
    TaskPlugin cannot; the CLI prints it as ``hpcjobs: warning: …``."""
    note = check_binding(job, scheduler, runner)
    if note is not None:
        import warnings

        from hpcjobs.errors import HpcjobsWarning

        warnings.warn(note, HpcjobsWarning, stacklevel=3)
