"""hpcjobs' Slurm parsers over the recorded output of every supported Slurm version.

``tests/fixtures/slurm-<major>.<minor>/`` holds what the real daemons printed for each command
hpcjobs runs (``scripts/record-slurm-fixtures``; the exact argv in ``commands.json``, a readable
table in ``README.md``) and what each recorded job did by construction (``jobs.json``: a script that
ran ``exit 3`` has exit code 3). The tests compare the parsers' reading with those facts, and the
CLI backend's stdout path with what scontrol says, for each version alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.schedulers.base import parse_squeue_exit
from hpcjobs.schedulers.slurm_cli import (
    SACCT_FIELDS,
    SEP,
    SQUEUE_FORMAT,
    SlurmCli,
    parse_array_limits,
    parse_sacct,
    parse_sbatch_output,
    parse_squeue,
    parse_version,
    scontrol_fields,
)
from hpcjobs.schedulers.states import JobState
from hpcjobs.site import discover as disc

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VERSIONS = sorted(p.name.removeprefix("slurm-") for p in FIXTURES.glob("slurm-*") if (p / "jobs.json").is_file())
FINISHED = ("fx-exit0", "fx-exit3", "fx-exit200", "fx-sigkill", "fx spaced; name")


@dataclass(frozen=True)
class Recording:
    """One Slurm version's recorded outputs."""

    version: str
    path: Path

    def out(self, name: str) -> str:
        return (self.path / f"{name}.out").read_text()

    def err(self, name: str) -> str:
        f = self.path / f"{name}.err"
        return f.read_text() if f.exists() else ""

    @cached_property
    def commands(self) -> dict[str, dict[str, Any]]:
        data: dict[str, dict[str, Any]] = json.loads((self.path / "commands.json").read_text())
        return data

    @cached_property
    def jobs(self) -> dict[str, dict[str, Any]]:
        data: dict[str, dict[str, Any]] = json.loads((self.path / "jobs.json").read_text())
        return data

    def job_id(self, name: str) -> str:
        return str(self.jobs[name]["job_id"])

    def completed(self, name: str) -> Completed:
        return Completed(tuple(self.commands[name]["argv"]), int(self.commands[name]["returncode"]),
                         self.out(name), self.err(name))  # fmt: skip


@pytest.fixture(params=VERSIONS, ids=[f"slurm-{v}" for v in VERSIONS])
def rec(request: pytest.FixtureRequest) -> Recording:
    return Recording(request.param, FIXTURES / f"slurm-{request.param}")


def test_both_supported_versions_are_recorded() -> None:
    assert {"22.05", "24.11"} <= set(VERSIONS)


def test_recorded_with_hpcjobs_commands(rec: Recording) -> None:
    """The recordings are of the commands this hpcjobs runs (re-record when a format changes)."""
    assert rec.commands["squeue"]["argv"][-2:] == ["-O", SQUEUE_FORMAT]
    assert rec.commands["sacct-c"]["argv"][:8] == ["sacct", "-c", "-n", "-P", "-X", f"--delimiter={SEP}",
                                                   "-o", SACCT_FIELDS]  # fmt: skip
    assert parse_version(rec.out("sinfo-version")).startswith(rec.version + ".")


# --------------------------------------------------------------------------- squeue


def by_name(records: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in records:
        out.setdefault(r.name, []).append(r)
    return out


def test_squeue_exit_codes_and_signals(rec: Recording) -> None:
    records = by_name(parse_squeue(rec.out("squeue")))
    for name in FINISHED:
        facts = rec.jobs[name]
        (r,) = records[name]
        assert (r.raw_state, r.exit_code, r.signal) == (facts["state"], facts["exit_code"], facts["signal"]), name
    assert records["fx-cancelled"][0].raw_state == "CANCELLED"
    (running,) = records["fx-running"]
    assert running.raw_state == "RUNNING"


def test_squeue_array_tasks(rec: Recording) -> None:
    records = by_name(parse_squeue(rec.out("squeue")))
    array_id = rec.job_id("fx-array")
    tasks = {r.array_task_id: r for r in records["fx-array"]}
    assert set(tasks) == {"0", "1", "2"}
    for task, code in rec.jobs["fx-array"]["task_exit_codes"].items():
        assert tasks[task].array_job_id == array_id
        assert (tasks[task].exit_code, tasks[task].signal) == (code, None)
        assert tasks[task].stdout_path is not None and tasks[task].stdout_path.endswith(f"/out-{array_id}_{task}.txt")
    held = records["fx-held-array"]
    assert sorted(r.array_task_id for r in held) == ["0", "1", "2"]
    assert {(r.raw_state, r.reason) for r in held} == {("PENDING", "JobHeldUser")}
    assert records["fx-held"][0].reason == "JobHeldUser"


def test_squeue_stdout_path_is_what_scontrol_says(rec: Recording) -> None:
    """expand_stdout (through parse_squeue) against scontrol's own expansion, plain and array."""
    records = {r.display_id: r for r in parse_squeue(rec.out("squeue"))}
    plain = scontrol_fields(rec.out("scontrol-show-job").strip())
    assert plain["JobId"] == rec.job_id("fx-exit3")
    assert plain["ExitCode"] == "3:0"
    assert records[plain["JobId"]].stdout_path == plain["StdOut"]
    task = scontrol_fields(rec.out("scontrol-show-job-array").strip())
    display = f"{task['ArrayJobId']}_{task['ArrayTaskId']}"
    assert display == f"{rec.job_id('fx-array')}_1"
    assert records[display].stdout_path == task["StdOut"]


def test_squeue_time_used(rec: Recording) -> None:
    """TimeUsed ([D-][HH:]MM:SS) reads on every row; jobs that ran for a moment used under a minute."""
    records = parse_squeue(rec.out("squeue"))
    assert records and all(r.elapsed_s is not None for r in records)
    assert all(r.elapsed_s is not None and r.elapsed_s < 60 for r in records if r.name in FINISHED)
    assert all(r.elapsed_s == 0 for r in records if r.raw_state == "PENDING")


def test_array_limits_from_config(rec: Recording) -> None:
    """``scontrol show config`` of a cluster without accounting storage (22.05 says
    accounting_storage/none, 24.11 says (null)): Slurm's default MaxArraySize, the dev cluster's
    MaxJobCount=30000, accounting off."""
    assert parse_array_limits(rec.out("scontrol-show-config")) == (1001, 30000, False)


def test_squeue_name_with_spaces_and_semicolon(rec: Recording) -> None:
    names = {r.name for r in parse_squeue(rec.out("squeue"))}
    assert "fx spaced; name" in names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("768", (3, None)), ("0", (0, None)), ("15", (None, 15)), ("51200", (200, None)),  # 22.05
        ("3:0", (3, None)), ("0:0", (0, None)), ("0:15", (None, 15)), ("200:0", (200, None)),  # 24.11
        ("", (None, None)), ("N/A", (None, None)), ("-1", (None, None)), ("x:y", (None, None)),
    ],
)  # fmt: skip
def test_parse_squeue_exit_both_forms(text: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_squeue_exit(text) == expected


# --------------------------------------------------------------------------- sacct -c, sbatch


def test_sacct_c_exit_codes(rec: Recording) -> None:
    squeue = {r.name: r for r in parse_squeue(rec.out("squeue"))}
    hist = {r.raw_id: r for r in parse_sacct(rec.out("sacct-c"))}
    for name in FINISHED:
        facts = rec.jobs[name]
        r = hist[squeue[name].raw_id]
        assert (r.exit_code, r.signal) == (facts["exit_code"], facts["signal"]), name
        if " " not in name:  # the jobcomp reader (22.05 and 24.11) loses the state of a name with spaces
            assert r.raw_state == facts["state"], name
    array_raw = {r.raw_id: int(r.array_task_id) for r in parse_squeue(rec.out("squeue")) if r.name == "fx-array"}
    for raw_id, task in array_raw.items():
        assert hist[raw_id].exit_code == task


def test_sbatch_parsable_and_comment_token(rec: Recording) -> None:
    assert parse_sbatch_output(rec.out("sbatch-parsable")) == rec.job_id("fx-exit0")
    token = rec.jobs["_comment_token"]["comment"]
    rows = [line.split(SEP) for line in rec.out("squeue-comment").splitlines()]
    assert [r[0].strip() for r in rows if len(r) >= 2 and r[1].strip() == token] == [rec.job_id("fx-exit0")]


# --------------------------------------------------------------------------- the backend, replayed


class Replay(RecordingRunner):
    """Answers a call with the recording of the same command (``-j`` may ask for fewer ids)."""

    def __init__(self, rec: Recording, override: Mapping[str, str] | None = None) -> None:
        super().__init__(answer=self._answer)
        self.rec = rec
        self.override = dict(override or {})

    def _answer(self, call: Call) -> Completed:
        argv = list(call.argv)
        for name, cmd in self.rec.commands.items():
            want = list(cmd["argv"])
            if len(want) != len(argv) or "-j" not in want or "-j" not in argv:
                continue
            i = want.index("-j")
            if argv[: i + 1] == want[: i + 1] and argv[i + 2 :] == want[i + 2 :] \
                    and set(argv[i + 1].split(",")) <= set(want[i + 1].split(",")):  # fmt: skip
                res = self.rec.completed(self.override.get(name, name))
                return Completed(call.argv, res.returncode, res.stdout, res.stderr)
        raise AssertionError(f"no recording of {argv}")


def test_backend_status_from_squeue_then_history(rec: Recording) -> None:
    """SlurmCli.status over the real outputs: first squeue; once squeue has forgotten the jobs
    ("Invalid job id"), sacct says accounting is off and ``sacct -c`` answers."""
    ids = [rec.job_id(n) for n in rec.jobs if not n.startswith("_")]
    cli = SlurmCli(Replay(rec), retries=0, sleep=lambda s: None)
    first = cli.status(ids)
    for name in FINISHED:
        st = first[rec.job_id(name)]
        assert (st.exit_code, st.signal) == (rec.jobs[name]["exit_code"], rec.jobs[name]["signal"]), name
    array = rec.job_id("fx-array")
    assert first[array].state is JobState.FAILED
    assert first[f"{array}_2"].exit_code == 2
    assert first[rec.job_id("fx-running")].state is JobState.RUNNING

    forgotten = Replay(rec, override={"squeue": "squeue-invalid"})
    cli.runner = forgotten
    later = cli.status([rec.job_id(n) for n in FINISHED] + [array])
    assert cli.history == "jobcomp"
    assert any(c.argv[:2] == ("sacct", "-c") for c in forgotten.calls)
    for name in FINISHED:
        st = later[rec.job_id(name)]
        assert st.known, name
        if st.raw_state == "UNREADABLE":  # the jobcomp reader (22.05 and 24.11) loses a spaced name's state
            assert " " in name, name
            continue
        assert (st.exit_code, st.signal) == (rec.jobs[name]["exit_code"], rec.jobs[name]["signal"]), name
    assert later[rec.job_id("fx-exit3")].state is JobState.FAILED
    assert later[rec.job_id("fx-exit0")].state is JobState.COMPLETED
    for task, code in rec.jobs["fx-array"]["task_exit_codes"].items():
        assert later[f"{array}_{task}"].exit_code == code


def test_invalid_job_and_cancel_messages(rec: Recording) -> None:
    assert rec.commands["squeue-invalid"]["returncode"] != 0
    assert "invalid job id" in rec.err("squeue-invalid").lower()
    assert "invalid job id" in rec.err("scontrol-show-job-invalid").lower()
    assert rec.commands["scancel-invalid"]["returncode"] == 0  # hpcjobs relies on this
    assert "accounting storage is disabled" in (rec.err("sacct") + rec.out("sacct")).lower()


# --------------------------------------------------------------------------- site discover


def test_discover_facts(rec: Recording) -> None:
    config = disc.parse_config(rec.out("scontrol-show-config"))
    mpi = disc.parse_mpi_list(rec.out("srun-mpi-list"))
    facts = disc.facts_from_outputs(rec.out("scontrol-show-partition"), rec.out("scontrol-show-node"), config, mpi)
    assert facts.name == "hpcjobs-dev"
    assert facts.slurm_version is not None and facts.slurm_version.startswith(rec.version + ".")
    assert facts.cons_tres
    assert {"pmix", "pmi2", "none"} <= set(mpi)
    parts = {p.name: p for p in facts.partitions}
    assert set(parts) == {"cpu", "gpu"}
    assert parts["cpu"].default and not parts["gpu"].default
    for p in parts.values():
        assert p.max_gpus == 2 and p.total_cpus == 16 and p.max_time_min is None
        assert [n.cpus for n in p.nodes] == [16]
        assert p.nodes[0].memory_mb > 0
    assert config["DefMemPerCPU"] == "100"
    draft = disc.draft_site(facts)
    assert "pmix" in draft and "hpcjobs-dev" in draft


def test_sacct_c_reused_job_id_takes_the_latest_row(rec: Recording) -> None:
    """Job ids come round again after a controller loses its state; the jobcomp file then holds
    an older job under the same id before the newer one. The newer (later) row is the job."""
    rows = rec.out("sacct-c").splitlines()
    exit3 = next(r for r in rows if r.split(SEP)[5] == "fx-exit3")
    exit0 = next(r for r in rows if r.split(SEP)[5] == "fx-exit0")
    reused = exit0.replace(exit0.split(SEP)[0], exit3.split(SEP)[0])  # an older job, same id, exit 0
    (rec3,) = [r for r in parse_sacct(f"{reused}\n{exit3}\n") if r.raw_id == rec.job_id("fx-exit3")]
    assert (rec3.raw_state, rec3.exit_code, rec3.name) == ("FAILED", 3, "fx-exit3")
    (rec0,) = parse_sacct(f"{exit3}\n{reused}\n")
    assert (rec0.raw_state, rec0.exit_code, rec0.name) == ("COMPLETED", 0, "fx-exit0")
