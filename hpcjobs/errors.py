"""The one exception root. The CLI prints any HpcjobsError as one line and exits 2."""

from __future__ import annotations


class HpcjobsError(Exception):
    """Root of every error hpcjobs raises on purpose (user or site mistakes, refused requests)."""


class ConfigError(HpcjobsError):
    """A site config or job spec is invalid; the message names the file and key path."""

    def __init__(self, message: str, problems: list[str] | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]
        self.source = source


class LimitExceeded(HpcjobsError):
    """A request goes beyond a partition limit; refused before submission."""


class PolicyViolation(HpcjobsError):
    """A request breaks a rule the site admin set (denied bind, locked flag, required account)."""


class BindError(HpcjobsError):
    """A bind is malformed, duplicated, or its source does not exist."""


class SchedulerError(HpcjobsError):
    """The scheduler refused a request or could not be reached."""


class ControllerUnreachable(SchedulerError):
    """slurmctld could not be contacted, even after retries."""


class JobNotFound(SchedulerError):
    """The scheduler does not know the job id."""


class ImageError(HpcjobsError):
    """An image reference could not be resolved, converted or found."""


class PluginError(HpcjobsError):
    """A plugin failed; the message names the plugin."""


class RunnerError(HpcjobsError):
    """A program that hpcjobs needs could not be started."""


class ImageLockTimeout(ImageError):
    """Waiting for another process's conversion of the same image took longer than allowed."""


class ImageConversionError(ImageError):
    """Converting an image to SIF failed, or the result did not verify; nothing was published."""


class WaitTimeout(SchedulerError):
    """Jobs did not finish within the time a caller was willing to wait; ``statuses`` holds the
    last answer (job id → JobStatus)."""

    def __init__(self, message: str, statuses: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.statuses: dict[str, object] = dict(statuses or {})


class BackendUnavailable(SchedulerError):
    """A scheduler backend was asked for (HPCJOBS_SCHEDULER, prefer=) but cannot be used here."""


class HpcjobsWarning(UserWarning):
    """Something hpcjobs submits as asked but that will not do what was asked (the CLI prints it as
    ``hpcjobs: warning: …``): srun binding on a cluster whose TaskPlugin cannot bind."""
