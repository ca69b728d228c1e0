"""JobState: one mapping table for every spelling of a Slurm job state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcjobs.schedulers.states import SLURM_STATES, JobState

NAMES = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
    "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SUSPENDED", "REQUEUED", "UNKNOWN",
}  # fmt: skip


def test_members_are_exactly_the_agreed_names() -> None:
    assert {s.name for s in JobState} == NAMES


@pytest.mark.parametrize("state", [s for s in JobState if s is not JobState.UNKNOWN])
def test_every_long_name_maps_to_itself(state: JobState) -> None:
    assert JobState.from_slurm(state.name) is state
    assert JobState.from_slurm(state.name.lower()) is state


@pytest.mark.parametrize(
    ("code", "state"),
    [
        ("PD", JobState.PENDING), ("CF", JobState.CONFIGURING), ("R", JobState.RUNNING),
        ("CG", JobState.COMPLETING), ("CD", JobState.COMPLETED), ("F", JobState.FAILED),
        ("CA", JobState.CANCELLED), ("TO", JobState.TIMEOUT), ("OOM", JobState.OUT_OF_MEMORY),
        ("NF", JobState.NODE_FAIL), ("PR", JobState.PREEMPTED), ("BF", JobState.BOOT_FAIL),
        ("DL", JobState.DEADLINE), ("S", JobState.SUSPENDED), ("RQ", JobState.REQUEUED),
    ],
)  # fmt: skip
def test_squeue_short_codes(code: str, state: JobState) -> None:
    assert JobState.from_slurm(code) is state


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("CANCELLED by 0", JobState.CANCELLED),  # sacct
        ("CANCELLED by 1000", JobState.CANCELLED),
        ("  RUNNING \n", JobState.RUNNING),
        ("CANCELLED+", JobState.CANCELLED),  # sacct truncates long values with '+'
        ("COMPLETING,RUNNING", JobState.COMPLETING),
        ("REQUEUE_HOLD", JobState.REQUEUED),
        ("SPECIAL_EXIT", JobState.REQUEUED),
        ("STOPPED", JobState.SUSPENDED),
        ("RESIZING", JobState.RUNNING),
        ("STAGE_OUT", JobState.COMPLETING),
        ("REVOKED", JobState.CANCELLED),
    ],
)
def test_slurm_variants(text: str, state: JobState) -> None:
    assert JobState.from_slurm(text) is state


@pytest.mark.parametrize("text", ["", "   ", None, "WIBBLE", "UNREADABLE", "12", "PENDINGX"])
def test_unknown_states_map_to_unknown(text: str | None) -> None:
    assert JobState.from_slurm(text) is JobState.UNKNOWN


def test_terminal_and_success() -> None:
    terminal = {s for s in JobState if s.is_terminal}
    assert terminal == {
        JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT, JobState.OUT_OF_MEMORY,
        JobState.NODE_FAIL, JobState.PREEMPTED, JobState.BOOT_FAIL, JobState.DEADLINE,
    }  # fmt: skip
    assert {s for s in JobState if s.is_success} == {JobState.COMPLETED}
    assert not JobState.UNKNOWN.is_terminal
    assert not JobState.UNKNOWN.is_active
    assert JobState.PENDING.is_active and JobState.RUNNING.is_active


def test_table_is_the_single_source() -> None:
    assert all(isinstance(v, JobState) for v in SLURM_STATES.values())
    assert JobState.UNKNOWN not in SLURM_STATES.values()
    with pytest.raises(TypeError):
        SLURM_STATES["NEW"] = JobState.FAILED  # type: ignore[index]


@given(st.text(max_size=40))
def test_from_slurm_never_raises(text: str) -> None:
    assert isinstance(JobState.from_slurm(text), JobState)
