"""Sweeps without a cluster: points, grids, files, chunking to the limits, the points file as bash
reads it, and submission/status/retry/cancel through a fake Slurm at the process seam."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcjobs.api import ContainerJob
from hpcjobs.config import load_site
from hpcjobs.errors import ConfigError, LimitExceeded, SchedulerError
from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.runtimes.apptainer import UNCARRIABLE_ENV, container_env_value
from hpcjobs.schedulers.base import ArrayLimits
from hpcjobs.schedulers.slurm_cli import (
    SEP,
    SlurmCli,
    parse_array_limits,
    parse_duration_s,
    parse_squeue,
    parse_submit_limit,
)
from hpcjobs.sweep.handle import Sweep
from hpcjobs.sweep.plan import plan_arrays
from hpcjobs.sweep.pointfile import GROUP, encode_points, read_point, write_points
from hpcjobs.sweep.points import Point, grid, load_points_file, to_point, to_points
from hpcjobs.sweep.script import task_lines
from tests.strategies import hostile_args, hostile_text

SITE = load_site(Path(__file__).resolve().parents[2] / "site-configs" / "dev-cluster.yaml")
SIF = "/var/lib/hpcjobs-dev/images/tiny.sif"



@pytest.fixture(autouse=True)
def _own_sweep_index(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process sweeps register in a throwaway index, not the tester's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


# ------------------------------------------------------------------------------------ points


def test_points_from_lists_dicts_and_numbers() -> None:
    pts = to_points([["a", 1, 2.5, True], {"args": ["x"], "env": {"SEED": 3}}, {"env": {"A": "b"}}])
    assert pts == [Point(("a", "1", "2.5", "true"), {}), Point(("x",), {"SEED": "3"}), Point((), {"A": "b"})]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"argz": []}, "unknown key 'argz'"),
        ({"env": {"1BAD": "x"}}, "not an environment variable name"),
        ({"args": "a b"}, "expected a list of arguments"),
        (["a\x00b"], "NUL"),
        ("just a string", "expected a list of arguments or a mapping"),
        ([{"nested": 1}], "expected a string or number"),
    ],
)
def test_bad_points_are_refused(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        to_point(raw)


def test_no_points_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one point"):
        to_points([])


def test_grid_is_the_product_last_axis_fastest() -> None:
    pts = grid(args={"--lr": [0.1, 0.01], "--depth=": [2, 4], "": ["x"]}, env={"SEED": [7]})
    assert [p.args for p in pts] == [
        ("--lr", "0.1", "--depth=2", "x"), ("--lr", "0.1", "--depth=4", "x"),
        ("--lr", "0.01", "--depth=2", "x"), ("--lr", "0.01", "--depth=4", "x"),
    ]  # fmt: skip
    assert all(p.env == {"SEED": "7"} for p in pts)
    with pytest.raises(ConfigError, match="empty list"):
        grid(args={"--lr": []})


def test_points_files_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text('args.1,args.0,SEED\n"b, c",a,1\n"multi\nline",z,2\n')
    assert load_points_file("p.csv", tmp_path) == [
        Point(("a", "b, c"), {"SEED": "1"}), Point(("z", "multi\nline"), {"SEED": "2"}),
    ]  # fmt: skip
    (tmp_path / "p.jsonl").write_text('["a", "b"]\n\n{"args": ["$x"], "env": {"K": "v"}}\n')
    assert load_points_file(tmp_path / "p.jsonl") == [Point(("a", "b"), {}), Point(("$x",), {"K": "v"})]
    (tmp_path / "bad.csv").write_text("args,not a name\n1,2\n")
    with pytest.raises(ConfigError, match="column 'not a name'"):
        load_points_file(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('["a"]\n{oops\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not JSON"):
        load_points_file(tmp_path / "bad.jsonl")


def test_job_file_sweep_section(tmp_path: Path) -> None:
    from hpcjobs.jobfile import load_job_document, load_job_file

    (tmp_path / "pts.jsonl").write_text('["p0"]\n["p1"]\n')
    (tmp_path / "job.yaml").write_text(f"image: {SIF}\nsweep:\n  file: pts.jsonl\n")
    job, sweep = load_job_document(tmp_path / "job.yaml")
    assert sweep is not None and job.image == SIF
    assert sweep.load(tmp_path) == [Point(("p0",)), Point(("p1",))]
    with pytest.raises(ConfigError, match="sweep: section"):
        load_job_file(tmp_path / "job.yaml")
    (tmp_path / "two.yaml").write_text(f"image: {SIF}\nsweep:\n  file: pts.jsonl\n  points: [[a]]\n")
    with pytest.raises(ConfigError, match="exactly one of points, grid, file"):
        load_job_document(tmp_path / "two.yaml")
    (tmp_path / "typo.yaml").write_text(f"image: {SIF}\nsweep:\n  grids: {{}}\n")
    with pytest.raises(ConfigError, match="sweep: grids: unknown key"):
        load_job_document(tmp_path / "typo.yaml")


# ---------------------------------------------------------------------------------- chunking

DEV = ArrayLimits(max_array_size=1001, max_job_count=10000)


def test_chunks_keep_task_ids_below_max_array_size() -> None:
    plans = plan_arrays(range(2500), DEV, contiguous=True)
    assert [(p.start, p.count) for p in plans] == [(0, 1001), (1001, 1001), (2002, 498)]
    assert all(p.count - 1 < DEV.max_array_size for p in plans)
    assert plans[1].point_of(0) == 1001 and plans[2].point_of(497) == 2499
    assert plans[0].array_spec(None) == "0-1000" and plans[2].array_spec(20) == "0-497%20"


def test_retry_arrays_list_their_points() -> None:
    plans = plan_arrays([3, 1500, 9999], DEV, contiguous=False)
    assert [(p.points, p.array_spec(None)) for p in plans] == [((3, 1500, 9999), "0-2")]
    assert plans[0].point_of(2) == 9999
    assert plan_arrays([7], DEV, contiguous=False)[0].array_spec(None) == "0"


@pytest.mark.parametrize(
    ("n", "limits", "message"),
    [
        (10001, DEV, "more than the cluster's MaxJobCount = 10000"),
        (600, ArrayLimits(1001, 10000, 500, "association MaxSubmitJobs"), "association MaxSubmitJobs = 500"),
        (5, ArrayLimits(1, 10000), "does not allow job arrays"),
    ],
)
def test_sweeps_that_can_never_run_are_refused(n: int, limits: ArrayLimits, message: str) -> None:
    with pytest.raises(LimitExceeded, match=message):
        plan_arrays(range(n), limits, contiguous=True)


def test_parse_limits_and_durations() -> None:
    config = "MaxArraySize            = 1001\nMaxJobCount             = 10000\n" \
             "AccountingStorageType   = accounting_storage/none\n"  # fmt: skip
    assert parse_array_limits(config) == (1001, 10000, False)
    assert parse_array_limits(config.replace("accounting_storage/none", "accounting_storage/slurmdbd"))[2]
    with pytest.raises(SchedulerError):
        parse_array_limits("nothing here")
    assert parse_submit_limit("|\n500|\n200\n") == 200 and parse_submit_limit("\n|\n") is None
    assert [parse_duration_s(t) for t in ("0:05", "1:02:03", "2-00:00:01", "", "x")] == [5, 3723, 172801, None, None]


def test_limits_without_accounting_storage_ask_no_sacctmgr() -> None:
    config = "MaxArraySize = 1001\nMaxJobCount = 10000\nAccountingStorageType = accounting_storage/none\n"
    runner = RecordingRunner(answer=lambda c: Completed(c.argv, 0, config, ""))
    assert SlurmCli(runner).array_limits("normal") == ArrayLimits(1001, 10000)
    assert runner.programs() == ["scontrol"]


def test_limits_without_sacctmgr_program() -> None:
    from hpcjobs.errors import RunnerError

    config = "MaxArraySize = 1001\nMaxJobCount = 10000\nAccountingStorageType = accounting_storage/slurmdbd\n"

    def answer(c: Call) -> Completed:
        if c.argv[0] == "sacctmgr":
            raise RunnerError("sacctmgr: program not found on PATH")
        return Completed(c.argv, 0, config, "")

    assert SlurmCli(RecordingRunner(answer=answer)).array_limits() == ArrayLimits(1001, 10000)

    def with_limits(c: Call) -> Completed:
        out = "300|\n" if "assoc" in c.argv else "120|\n" if "qos" in c.argv else config
        return Completed(c.argv, 0, out, "")

    limits = SlurmCli(RecordingRunner(answer=with_limits)).array_limits("long")
    assert (limits.max_submit_jobs, limits.submit_limit_source) == (120, "QoS long MaxSubmitJobsPerUser")


def test_squeue_time_used_is_read_and_optional() -> None:
    row = ["5", "4", "1", "COMPLETED", "768", "None", "u", "/w", "n", "/w/o", "nm"]
    (rec,) = parse_squeue(SEP.join([*row, "1:05"]) + SEP + "\n")
    assert rec.elapsed_s == 65 and rec.exit_code == 3
    (old,) = parse_squeue(SEP.join(row) + SEP + "\n")
    assert old.elapsed_s is None and old.display_id == "4_1"


# ------------------------------------------------------------------- the points file in bash

def APPTAINER(name: str, value: str) -> str:
    return f"APPTAINERENV_{name}={container_env_value(value)}"


CARRIABLE = hostile_text.filter(lambda v: not any(bad in v for bad in UNCARRIABLE_ENV))


def _bash_reads(directory: Path, point: int, start: int) -> tuple[list[str], dict[str, str]]:
    """Run the task lines in bash as Slurm would (SLURM_ARRAY_TASK_ID), print what they set."""
    (directory / "logs").mkdir(exist_ok=True)
    lines = task_lines(str(directory), "s", 0, start=start, points=None)
    dump = (
        'for a in "${hpcjobs_args[@]}"; do printf "%s\\0" "$a"; done >"$OUTF"; '
        'for v in $(compgen -e); do case $v in APPTAINERENV_*) printf "%s=%s\\0" "$v" "${!v}";; esac; '
        'done >"$ENVF"'
    )
    script = "set -eo pipefail\n" + "\n".join(lines) + "\n" + dump + "\n"
    env = {"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": str(point - start), "OUTF": str(directory / "o"),
           "ENVF": str(directory / "e")}  # fmt: skip
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True)
    assert proc.returncode == 0, (proc.stderr, (directory / "logs" / f"point-{point}.out").read_bytes())
    args = [a.decode("utf-8", "surrogateescape") for a in (directory / "o").read_bytes().split(b"\0")[:-1]]
    raw_env = (directory / "e").read_bytes().split(b"\0")[:-1]
    envs = dict(e.decode("utf-8", "surrogateescape").split("=", 1) for e in raw_env)
    return args, envs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.tuples(hostile_args, CARRIABLE), min_size=1, max_size=5), pick=st.integers(0, 4))
def test_property_bash_reads_each_point_exactly(tmp_path_factory: Any, points: list[Any], pick: int) -> None:
    """What a task reads from the points file is the point, byte for byte; env values arrive as
    render writes a single job's (escaped for APPTAINERENV_, which Apptainer unescapes)."""
    d = tmp_path_factory.mktemp("pts")
    # pad so that the picked point lives in the second group file
    pts = [Point(("pad",), {})] * GROUP + [Point(tuple(a), {"HOSTILE": v}) for a, v in points]
    write_points(d, encode_points(pts, APPTAINER))
    index = GROUP + pick % len(points)
    args, envs = _bash_reads(d, index, start=GROUP - 3)
    want_args, want_value = points[index - GROUP]
    assert args == list(want_args)
    assert envs == {"APPTAINERENV_HOSTILE": container_env_value(want_value)}
    assert read_point(d, index) == Point(tuple(want_args), {"APPTAINERENV_HOSTILE": container_env_value(want_value)})


def test_a_task_without_its_record_fails(tmp_path: Path) -> None:
    write_points(tmp_path, encode_points([Point(("a",))], APPTAINER))
    (tmp_path / "logs").mkdir()
    lines = task_lines(str(tmp_path), "s", 0, start=0, points=None)
    proc = subprocess.run(["bash", "-c", "set -eo pipefail\n" + "\n".join(lines)],
                          env={"SLURM_ARRAY_TASK_ID": "5", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 97
    assert "no valid record for point 5" in (tmp_path / "logs" / "point-5.out").read_text()


def test_a_corrupt_points_file_is_never_evaluated(tmp_path: Path) -> None:
    """Bash arithmetic evaluates text (a[$(cmd)] runs cmd): numbers read from the file are checked first."""
    (tmp_path / "points").mkdir()
    (tmp_path / "logs").mkdir()
    pwned = tmp_path / "pwned"
    evil = f"a[$(touch {pwned})]"
    for fields in (["2", "3", evil], ["2", evil, "x"], ["1", "2", "0", evil], ["1", "2", "0", "0", evil]):
        (tmp_path / "points" / "0.rec").write_bytes(b"".join(f.encode() + b"\0" for f in fields))
        lines = task_lines(str(tmp_path), "s", 0, start=0, points=None)
        proc = subprocess.run(["bash", "-c", "set -eo pipefail\n" + "\n".join(lines)],
                              env={"SLURM_ARRAY_TASK_ID": "0", "PATH": "/usr/bin:/bin"})  # fmt: skip
        assert proc.returncode == 97, fields
    assert not pwned.exists()


# -------------------------------------------------------------------- through a fake Slurm


class FakeSlurm:
    """sbatch/squeue/scancel/scontrol at the process seam: arrays with task states we set."""

    CONFIG = "MaxArraySize = 4\nMaxJobCount = 100\nAccountingStorageType = accounting_storage/none\n"

    def __init__(self, refuse_after: int | None = None) -> None:
        self.next_id = 100
        self.scripts: dict[str, str] = {}
        self.tasks: dict[str, dict[int, tuple[str, int]]] = {}  # array → task → (state, exit)
        self.refuse_after = refuse_after
        self.cancelled: list[str] = []
        self.records_now = 0
        self.runner = RecordingRunner(answer=self.answer)

    def answer(self, call: Call) -> Completed:
        argv = call.argv
        if argv[:3] == ("scontrol", "show", "config"):
            return Completed(argv, 0, self.CONFIG, "")
        if argv[0] == "sbatch":
            if self.refuse_after is not None and len(self.scripts) >= self.refuse_after:
                return Completed(argv, 1, "", "sbatch: error: Batch job submission failed: QOSMaxSubmitJobPerUserLimit")
            assert call.input_text is not None
            jid = str(self.next_id)
            self.next_id += 10
            self.scripts[jid] = call.input_text
            spec = next(x for x in call.input_text.splitlines() if x.startswith("#SBATCH --array="))
            last = spec.split("=")[1].split("%")[0].split("-")[-1]
            self.tasks[jid] = {t: ("PENDING", 0) for t in range(int(last) + 1)}
            return Completed(argv, 0, f"{jid}\n", "")
        if argv[0] == "squeue" and "%i" in argv:  # job records now, for the MaxJobCount check
            return Completed(argv, 0, "1\n2\n" * self.records_now, "")
        if argv[0] == "squeue":
            ids = argv[argv.index("-j") + 1].split(",")
            rows = []
            for jid in ids:
                for t, (state, code) in self.tasks.get(jid, {}).items():
                    rows.append(SEP.join([str(int(jid) + t), jid, str(t), state, str(code << 8), "None", "u", "/w",
                                          "n", "/w/o", "tiny", "0:07"]) + SEP)  # fmt: skip
            return Completed(argv, 0, "\n".join(rows) + "\n", "")
        if argv[0] == "scancel":
            self.cancelled += argv[1:]
            return Completed(argv, 0, "", "")
        if argv[0] == "sacct":
            return Completed(argv, 1, "", "sacct: error: Slurm accounting storage is disabled")
        raise AssertionError(f"unexpected {argv}")

    def sched(self) -> SlurmCli:
        return SlurmCli(self.runner, sleep=lambda s: None)


def _job() -> ContainerJob:
    return ContainerJob(image=SIF, command=["prog"])


@pytest.fixture
def sif(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    real = os.stat
    monkeypatch.setattr("hpcjobs.images.refs.os.stat", lambda p, *a, **k: real("/") if p == SIF else real(p, *a, **k))


def test_submit_chunks_renders_and_records(tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = FakeSlurm()
    sw = _job().map([[f"p{i}"] for i in range(10)], SITE, {"array_throttle": 2}, scheduler=fake.sched(),
                    cwd=tmp_path)  # fmt: skip
    assert sw.job_ids == ["100", "110", "120"]
    specs = [next(x for x in s.splitlines() if x.startswith("#SBATCH --array=")) for s in fake.scripts.values()]
    assert specs == ["#SBATCH --array=0-3%2", "#SBATCH --array=0-3%2", "#SBATCH --array=0-1%2"]
    assert "hpcjobs_point=$((4 + SLURM_ARRAY_TASK_ID))" in fake.scripts["110"]
    assert fake.scripts["100"].rstrip().endswith(' prog "${hpcjobs_args[@]}"')
    pointer = tmp_path / "cache" / "hpcjobs" / "sweeps" / f"{sw.id}.json"
    assert json.loads(pointer.read_text())["directory"] == str(sw.directory)
    again = Sweep.load(sw.id, scheduler=fake.sched())
    assert again.job_ids == sw.job_ids and len(again) == 10
    before = len(fake.runner.calls)
    st = again.status()
    assert st.counts == {"PENDING": 10} and not st.done
    assert [a[0] for a in fake.runner.argvs()[before:]] == ["squeue"]  # all arrays, one query


def test_status_wait_failed_retry_and_cancel(tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = FakeSlurm()
    sw = _job().map([[str(i)] for i in range(6)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    for arr in fake.tasks.values():
        for t in arr:
            arr[t] = ("COMPLETED", 0)
    fake.tasks["100"][1] = ("FAILED", 3)
    fake.tasks["110"][1] = ("FAILED", 1)  # point 5
    seen: list[dict[str, int]] = []
    st = sw.wait(poll_s=0.01, progress=lambda counts, total: seen.append(dict(counts)))
    assert st.done and not st.ok and st.failed() == [1, 5] and seen[-1] == {"COMPLETED": 4, "FAILED": 2}
    assert (st.points[1].exit_code, st.points[1].elapsed_s, st.points[1].job_id) == (3, 7, "100_1")
    assert "     1  FAILED           3     0:07  100_1" in st.table()
    new = sw.retry()
    assert new == ["120"]
    script = fake.scripts["120"]
    assert "hpcjobs_points=(1 5)" in script and "point-$hpcjobs_point.retry1.out" in script
    assert sw.log_path(5).name == "point-5.retry1.out" and sw.log_path(0).name == "point-0.out"
    st = sw.status()
    assert st.points[5].job_id == "120_1" and st.points[5].state.name == "PENDING"
    assert st.points[0].state.name == "COMPLETED"  # kept from the record: its array is not asked again
    last_squeue = [a for a in fake.runner.argvs() if a[0] == "squeue"][-1]
    assert last_squeue[last_squeue.index("-j") + 1] == "120"
    sw.cancel()
    assert fake.cancelled == ["100", "110", "120"]


def test_refusal_part_way_cancels_what_was_submitted(tmp_path: Path, sif: None) -> None:
    fake = FakeSlurm(refuse_after=1)
    with pytest.raises(SchedulerError, match=r"array 2 of 2 refused: .*QOSMaxSubmitJobPerUserLimit.*cancelled the 1"):
        _job().map([[str(i)] for i in range(6)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert fake.cancelled == ["100"]


def test_nothing_is_submitted_when_a_check_fails(tmp_path: Path, sif: None) -> None:
    fake = FakeSlurm()
    with pytest.raises(LimitExceeded, match="MaxJobCount = 100"):
        _job().map([[str(i)] for i in range(101)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    fake.records_now = 25  # 50 job records: 50 more would reach MaxJobCount = 100
    with pytest.raises(LimitExceeded, match="not now: the controller holds 50 jobs"):
        _job().map([[str(i)] for i in range(50)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    with pytest.raises(ConfigError, match="array: a sweep makes its own job arrays"):
        ContainerJob(image=SIF, array="0-3").map([["a"]], SITE, scheduler=fake.sched(), cwd=tmp_path)
    with pytest.raises(ConfigError, match="output: a sweep writes one log per point"):
        _job().map([["a"]], SITE, {"output": "x.out"}, scheduler=fake.sched(), cwd=tmp_path)
    with pytest.raises(ConfigError, match="U\\+0080"):
        _job().map([{"env": {"K": "a\x80"}}], SITE, scheduler=fake.sched(), cwd=tmp_path)
    with pytest.raises(ConfigError, match="may not contain '%'"):
        _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=tmp_path, directory=tmp_path / "100%")
    assert "sbatch" not in fake.runner.programs()


@pytest.mark.parametrize("name", ["new\nline", "tab\there", "esc\x1b[31m", "unit\x1fsep", "del\x7f"])
def test_job_directory_slurm_cannot_carry_is_refused_as_for_a_single_job(tmp_path: Path, sif: None, name: str
                                                                          ) -> None:  # fmt: skip
    """The directory the tasks start in (cwd=, the CLI's working directory) gets the rule a single
    job's gets (hpcjobs.outputs.check_job_dir): a control character is refused before Slurm is asked
    anything, wherever the sweep's own directory is."""
    fake = FakeSlurm()
    d = tmp_path / name
    d.mkdir()
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(ConfigError, match=r"the job directory .* contains the control character .*, which Slurm's "
                                          r"job records \(squeue, scontrol\) print raw"):  # fmt: skip
        _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=d, directory=elsewhere)
    with pytest.raises(ConfigError, match="the job directory"):
        _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=d)  # its default sweep directory inside it too
    with pytest.raises(ConfigError, match=r"sweep directory .* contains the control character"):
        _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=tmp_path, directory=d / "sweep")
    assert fake.runner.calls == [] and not elsewhere.exists() and list(d.iterdir()) == []


def test_percent_in_the_job_directory_is_harmless_with_the_sweeps_absolute_log(
    tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a single job with an absolute log: Slurm expands patterns only in the log's own path,
    which for a sweep is its directory's (absolute). So '%' or '\\' in the job directory is refused
    only where the sweep directory lies inside it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = FakeSlurm()
    d = tmp_path / "p%j back\\slash"
    d.mkdir()
    sw = _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=d, directory=tmp_path / "sweep")
    assert sw.record.cwd == str(d) and f"--chdir={d}" in fake.runner.calls[-1].argv
    with pytest.raises(ConfigError, match="may not contain '%'"):
        _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=d)


def test_array_throttle_precedence() -> None:
    from hpcjobs.config.site import SiteConfig
    from hpcjobs.resolve import resolve

    data = SITE.model_dump(mode="json", exclude_unset=True)
    data["defaults"]["array_throttle"] = 8  # (model_copy would keep SITE's worked-out partitions)
    site = SiteConfig.model_validate(data)
    spec = ContainerJob(image=SIF, array="0-9")
    assert resolve(spec, site).array == "0-9%8"
    assert resolve(spec.model_copy(update={"array_throttle": 3}), site).array == "0-9%3"
    assert resolve(spec, site, {"array_throttle": 2}).array == "0-9%2"
    assert resolve(ContainerJob(image=SIF, array="0-9%5"), site).array == "0-9%5"  # written out: kept
    assert resolve(ContainerJob(image=SIF, array="0-9"), SITE).array == "0-9"


def test_plain_progress_prints_when_counts_change(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from hpcjobs.sweep.progress import plain, use_rich

    show = plain()
    show({"PENDING": 3}, 3)
    show({"PENDING": 3}, 3)
    show({"COMPLETED": 2, "FAILED": 1}, 3)
    assert capsys.readouterr().err == "0/3 ended: 3 pending\n3/3 ended: 2 completed, 1 failed\n"
    assert not use_rich(io.StringIO())  # not a terminal: plain lines


def test_sweep_ids_are_plain_names() -> None:
    from hpcjobs.sweep.record import new_id

    sid = new_id("my job #1 50% 'x'")
    assert sid.startswith("my-job--1-50---x-") and all(c.isalnum() or c in "_.+-" for c in sid)
    assert new_id("%%%").startswith("sweep-")


def test_other_runtime_plugins_are_asked_how_they_carry_env() -> None:
    """A runtime that is not Apptainer's family: the carrier asks its contribute() (probe), and
    refuses a runtime that passes the environment some other way."""
    from hpcjobs.plugin_api import EnvVar, LaunchPlan, ResolvedJob, Words
    from hpcjobs.resolve import resolve
    from hpcjobs.sweep.envcarry import _probe

    class Exports:
        name = "exports"

        def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
            plan.env.append(EnvVar("ALWAYS", "1"))
            plan.env += [EnvVar(f"CTR_{k}", v.upper()) for k, v in job.env.items()]
            plan.add(Words(("ctr", "run", job.image), "x", "runtime"))

    class Flags(Exports):
        name = "flags"

        def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
            plan.add(Words(("ctr", *[f"--env={k}={v}" for k, v in job.env.items()], job.image), "x", "runtime"))

    job = resolve(ContainerJob(image=SIF, env={"JOBVAR": "x"}), SITE)
    carry = _probe(Exports(), job)  # type: ignore[arg-type]
    assert carry("SEED", "a b") == "CTR_SEED=A B"
    with pytest.raises(ConfigError, match="runtime 'flags' does not pass the environment as one exported variable"):
        _probe(Flags(), job)("SEED", "1")  # type: ignore[arg-type]


def test_two_handles_on_one_sweep_keep_each_others_arrays(tmp_path: Path, sif: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """`sweep wait` in one terminal, `sweep retry` in another: the waiting handle's next save must
    not drop the retry's array."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = FakeSlurm()
    waiting = _job().map([[str(i)] for i in range(3)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    other = Sweep.load(waiting.id, scheduler=fake.sched())
    fake.tasks["100"] = {0: ("COMPLETED", 0), 1: ("FAILED", 2), 2: ("RUNNING", 0)}
    assert other.status().failed() == [1]
    assert other.retry() == ["110"]
    fake.tasks["100"][2] = ("COMPLETED", 0)
    st = waiting.status()  # sees point 2 end: saves, merged
    assert waiting.job_ids == ["100", "110"] and st.points[1].job_id == "110_0"
    again = Sweep.load(waiting.id, scheduler=fake.sched())
    assert again.job_ids == ["100", "110"] and again.record.final[2][1] == "COMPLETED"


def test_cli_render_shows_the_first_array(
    tmp_path: Path, sif: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpcjobs.cli import main
    from hpcjobs.schedulers.slurm_cli import SlurmCli as Cli

    monkeypatch.setattr(Cli, "array_limits", lambda self, qos=None: ArrayLimits(4, 100))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yaml").write_text(f"image: {SIF}\ncommand: [fit]\nsweep:\n  points: [[a], [b], [c], [d], [e]]\n")
    site = str(Path(__file__).resolve().parents[2] / "site-configs" / "dev-cluster.yaml")
    main(["--site", site, "render", "job.yaml", "--image-as-written"])  # returns: exit status 0
    out, err = capsys.readouterr()
    assert out.startswith("#!/bin/bash\n") and "#SBATCH --array=0-3\n" in out
    assert out.rstrip().endswith('fit "${hpcjobs_args[@]}"') and "5 points in 2 array(s)" in err
    # other targets: test_plugin_api (a target without render_sweep refuses), plugins/hpcjobs-k8s (runs them)


def test_sweep_list_skips_sweeps_whose_directory_is_gone(tmp_path: Path, sif: None) -> None:
    import shutil

    from hpcjobs.sweep.record import list_ids

    fake = FakeSlurm()
    kept = _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=tmp_path, directory=tmp_path / "kept")
    gone = _job().map([["a"]], SITE, scheduler=fake.sched(), cwd=tmp_path, directory=tmp_path / "gone")
    shutil.rmtree(gone.directory)
    assert list_ids() == [kept.id]
