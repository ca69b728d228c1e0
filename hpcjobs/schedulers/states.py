"""Job states: one enum, built from one table of the strings Slurm prints.

``squeue -O State`` / ``scontrol`` / ``sacct`` print long names (``PENDING``), ``squeue -t``/``%t``
prints short codes (``PD``), ``sacct`` appends details (``CANCELLED by 0``) or truncates with ``+``.
:meth:`JobState.from_slurm` reads all of them; anything it does not know is ``UNKNOWN``.
"""

from __future__ import annotations

import enum
from types import MappingProxyType


class JobState(enum.Enum):
    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    SUSPENDED = "SUSPENDED"
    REQUEUED = "REQUEUED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def from_slurm(cls, text: str | None) -> JobState:
        """Map any Slurm state string (long name, short code, ``CANCELLED by 0``, ``RUNNING+``,
        ``COMPLETING,RUNNING`` flag lists) to a JobState; unknown or empty text gives UNKNOWN."""
        if not text:
            return cls.UNKNOWN
        word = text.strip().split(None, 1)[0] if text.strip() else ""
        word = word.split(",", 1)[0].rstrip("+").upper()
        return SLURM_STATES.get(word, cls.UNKNOWN)

    @property
    def is_terminal(self) -> bool:
        """The job has ended and will not run again by itself."""
        return self in _TERMINAL

    @property
    def is_success(self) -> bool:
        return self is JobState.COMPLETED

    @property
    def is_active(self) -> bool:
        """Queued or running (not ended, not unknown)."""
        return not self.is_terminal and self is not JobState.UNKNOWN


_S = JobState

# The one mapping table: every Slurm spelling (long name, squeue short code) → JobState.
# Slurm states without an enum member of their own are mapped to the closest meaning.
SLURM_STATES: MappingProxyType[str, JobState] = MappingProxyType({
    "PENDING": _S.PENDING, "PD": _S.PENDING,
    "CONFIGURING": _S.CONFIGURING, "CF": _S.CONFIGURING,
    "RUNNING": _S.RUNNING, "R": _S.RUNNING,
    "COMPLETING": _S.COMPLETING, "CG": _S.COMPLETING,
    "COMPLETED": _S.COMPLETED, "CD": _S.COMPLETED,
    "FAILED": _S.FAILED, "F": _S.FAILED,
    "CANCELLED": _S.CANCELLED, "CA": _S.CANCELLED,
    "TIMEOUT": _S.TIMEOUT, "TO": _S.TIMEOUT,
    "OUT_OF_MEMORY": _S.OUT_OF_MEMORY, "OOM": _S.OUT_OF_MEMORY,
    "NODE_FAIL": _S.NODE_FAIL, "NF": _S.NODE_FAIL,
    "PREEMPTED": _S.PREEMPTED, "PR": _S.PREEMPTED,
    "BOOT_FAIL": _S.BOOT_FAIL, "BF": _S.BOOT_FAIL,
    "DEADLINE": _S.DEADLINE, "DL": _S.DEADLINE,
    "SUSPENDED": _S.SUSPENDED, "S": _S.SUSPENDED,
    "STOPPED": _S.SUSPENDED, "ST": _S.SUSPENDED,            # stopped by SIGSTOP, holds its resources
    "REQUEUED": _S.REQUEUED, "RQ": _S.REQUEUED,
    "REQUEUE_FED": _S.REQUEUED, "RF": _S.REQUEUED,
    "REQUEUE_HOLD": _S.REQUEUED, "RH": _S.REQUEUED,
    "SPECIAL_EXIT": _S.REQUEUED, "SE": _S.REQUEUED,         # requeued in a held special state
    "RESV_DEL_HOLD": _S.PENDING, "RD": _S.PENDING,          # held: its reservation was deleted
    "RESIZING": _S.RUNNING, "RS": _S.RUNNING,
    "SIGNALING": _S.RUNNING, "SI": _S.RUNNING,
    "STAGE_OUT": _S.COMPLETING, "SO": _S.COMPLETING,        # burst buffer stage-out after the run
    "REVOKED": _S.CANCELLED, "RV": _S.CANCELLED,            # federation: a sibling ran it instead
})  # fmt: skip

_TERMINAL = frozenset({
    _S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.TIMEOUT, _S.OUT_OF_MEMORY, _S.NODE_FAIL,
    _S.PREEMPTED, _S.BOOT_FAIL, _S.DEADLINE,
})  # fmt: skip

__all__ = ["SLURM_STATES", "JobState"]
