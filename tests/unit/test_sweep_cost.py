"""What a sweep submission costs, structurally: how many Slurm calls it makes, the
per-configuration-key cache of MaxArraySize / MaxJobCount (hpcjobs.sweep.limitcache), and the fast
paths that must give exactly what the careful ones give (points encoded per group, arrays of one
sweep rendered once). Timings are in benchmarks/sweep_submit.py, never here."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcjobs.errors import ConfigError, HpcjobsError, LimitExceeded, SchedulerError
from hpcjobs.runner import Call, Completed, RecordingRunner, SubprocessRunner
from hpcjobs.schedulers.base import ArrayLimits
from hpcjobs.sweep.arrays import array_script, same_but_range
from hpcjobs.sweep.envcarry import env_carrier, plain_prefix
from hpcjobs.sweep.handle import Sweep
from hpcjobs.sweep.limitcache import asks_this_host, cached_config_limits
from hpcjobs.sweep.plan import plan_arrays
from hpcjobs.sweep.pointfile import GROUP, encode_plain, encode_points
from hpcjobs.sweep.points import to_points
from tests.strategies import hostile_text
from tests.unit import test_sweep as _sweep
from tests.unit.test_sweep import SITE, FakeSlurm, _job

sif = _sweep.sif  # the fixture: the dev image path stats as a file

CONF = "ClusterName=lab\nMaxArraySize=1001\nMaxJobCount=10000\n"


class Fetch:
    def __init__(self, value: tuple[int, int, bool] = (1001, 10000, False)) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> tuple[int, int, bool]:
        self.calls += 1
        return self.value


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    conf = tmp_path / "etc" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text(CONF)
    return {"SLURM_CONF": str(conf), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_limits_are_asked_once_per_configuration_key(env: dict[str, str]) -> None:
    fetch = Fetch()
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)
    assert fetch.calls == 1
    kept = Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "limits" / "lab.json"
    assert json.loads(kept.read_text())["max_job_count"] == 10000
    Path(env["SLURM_CONF"]).write_text(CONF.replace("10000", "20000"))  # the admin changed slurm.conf
    fetch.value = (1001, 20000, False)
    assert cached_config_limits(fetch, None, env) == (1001, 20000, False)
    assert fetch.calls == 2
    assert cached_config_limits(fetch, SubprocessRunner(), env) == (1001, 20000, False)
    assert fetch.calls == 2


def test_a_configless_client_asks_once_and_keeps_nothing(env: dict[str, str], monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:  # fmt: skip
    import hpcjobs.config.discovered as discovered

    keyed: list[object] = []  # a key from scontrol show config would be a second query
    monkeypatch.setattr(discovered, "_key_from_scontrol", lambda *a: keyed.append(a) or discovered.ConfigKey(
        "lab", "d", "scontrol show config"))  # fmt: skip
    fetch = Fetch()
    configless = {**env, "SLURM_CONF": env["SLURM_CONF"] + ".absent"}
    for _ in range(2):
        assert cached_config_limits(fetch, None, configless) == (1001, 10000, False)
    assert fetch.calls == 2 and keyed == []
    assert not (Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "limits").exists()


def test_kept_limits_are_not_trusted_when_others_could_write_them(env: dict[str, str]) -> None:
    fetch = Fetch()
    cached_config_limits(fetch, None, env)
    kept = Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "limits" / "lab.json"
    kept.write_text(kept.read_text().replace("10000", "99999"))
    os.chmod(kept, 0o666)
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)  # asked again, not the planted value
    assert fetch.calls == 2
    kept.write_text("{not json")
    os.chmod(kept, 0o644)
    assert cached_config_limits(fetch, None, env) == (1001, 10000, False)
    assert fetch.calls == 3


def test_a_runner_that_answers_itself_never_reads_or_writes_kept_limits(env: dict[str, str]) -> None:
    fake = RecordingRunner(answer=lambda c: Completed(c.argv, 0, "", ""))
    assert not asks_this_host(fake)
    assert asks_this_host(RecordingRunner())  # records, but every call goes to this host's Slurm
    assert not asks_this_host(RecordingRunner(inner=fake))
    fetch = Fetch((4, 100, False))
    for _ in range(2):
        assert cached_config_limits(fetch, fake, env) == (4, 100, False)
    assert fetch.calls == 2
    assert not (Path(env["XDG_CACHE_HOME"]) / "hpcjobs" / "limits").exists()


def test_slurm_calls_per_sweep_submission(tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """One limits query, one job-record count, then one sbatch per array and nothing else; the
    count is made before the first sbatch."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = FakeSlurm()
    _job().map([[f"p{i}"] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    programs = fake.runner.programs()
    assert sorted(programs) == ["sbatch", "sbatch", "sbatch", "scontrol", "squeue"]
    assert programs[-3:] == ["sbatch", "sbatch", "sbatch"]  # nothing between the arrays
    assert not (tmp_path / "cache" / "hpcjobs" / "limits").exists()  # a fake's answers are never kept


def test_not_now_refusal_comes_before_any_file_or_sbatch(tmp_path: Path, sif: None) -> None:
    fake = FakeSlurm()
    fake.records_now = 25  # 50 job records: 50 more would reach MaxJobCount = 100
    with pytest.raises(LimitExceeded, match="not now: the controller holds 50 jobs"):
        _job().map([[str(i)] for i in range(50)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert "sbatch" not in fake.runner.programs()
    assert not (tmp_path / "hpcjobs-sweeps").exists()


def test_scripts_are_made_while_the_count_runs_and_nothing_written_before_it_answers(
    tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job-record count is begun first and collected only after everything that needs neither
    Slurm nor a file (the record, every array's script) is made, so after its answer only the
    writes and the sbatch calls are left; no file exists before it is collected."""
    import hpcjobs.render

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seen: dict[str, bool] = {}
    real = hpcjobs.render.render
    monkeypatch.setattr(hpcjobs.render, "render", lambda *a, **k: (real(*a, **k), seen.setdefault("rendered", True))[0])
    fake = FakeSlurm()
    plain = fake.answer

    class Count:
        """The count's squeue as a process that answers when its answer is collected."""

        def start(self, argv: Sequence[str], **kw: object) -> Count:
            self.argv = tuple(argv)
            seen["rendered when the count began"] = seen.get("rendered", False)
            return self

        def wait(self) -> Completed:
            seen["rendered when the count was collected"] = seen.get("rendered", False)
            seen["a file when the count was collected"] = (tmp_path / "hpcjobs-sweeps").exists()
            return plain(Call(self.argv))

        def discard(self) -> None:
            raise AssertionError("the count is collected, not given up")

        def __call__(self, argv: Sequence[str], **kw: object) -> Completed:
            raise AssertionError(f"unexpected {argv}")

    fake.runner.inner = Count()
    fake.runner.answer = lambda call: None if call.argv[0] == "squeue" and "%i" in call.argv else plain(call)
    sw = _job().map([[f"p{i}"] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert seen == {"rendered when the count began": False, "rendered": True,
                    "rendered when the count was collected": True, "a file when the count was collected": False}
    assert len(sw.job_ids) == 3 and (sw.directory / "array-2.sh").read_text() == fake.scripts[sw.job_ids[2]]


def test_each_array_finds_its_points_and_script_written_when_its_sbatch_starts(
    tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Array k's group files and script are written before its sbatch starts, array k+1's while
    it runs (a fake answers sbatch as it starts, seeing what exists then); every point reads back."""
    import hpcjobs.sweep.pointfile as pointfile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(pointfile, "GROUP", 3)  # arrays of 4 points (MaxArraySize 4), files of 3
    fake = FakeSlurm()
    plain = fake.answer
    seen: list[tuple[list[str], list[str]]] = []

    def answer(call: Call) -> Completed:
        if call.argv[0] == "sbatch":
            d = next((tmp_path / "hpcjobs-sweeps").iterdir())
            seen.append((sorted(p.name for p in (d / "points").iterdir()), sorted(p.name for p in d.glob("*.sh"))))
        return plain(call)

    fake.runner.answer = answer
    raw: list[Any] = [{"args": [f"it's {i}", "a b"], "env": {"SEED": f"s {i}"}} for i in range(10)]
    sw = _job().map(raw, SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert seen == [
        (["0.rec", "1.rec"], ["array-0.sh"]),  # points 0-3
        (["0.rec", "1.rec", "2.rec"], ["array-0.sh", "array-1.sh"]),  # points 4-7
        (["0.rec", "1.rec", "2.rec", "3.rec"], ["array-0.sh", "array-1.sh", "array-2.sh"]),  # points 8-9
    ]
    assert [pointfile.read_point(sw.directory, i).args for i in range(10)] == [(f"it's {i}", "a b") for i in range(10)]
    assert not list((sw.directory / "points").glob(".*"))  # no temporary file left


def _disk_full_at_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, k: int) -> None:
    """Points files of 3 points each; writing file ``k`` fails as a full disk would."""
    import hpcjobs.sweep.pointfile as pointfile
    import hpcjobs.sweep.submit as submit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(pointfile, "GROUP", 3)
    real = pointfile.encode_plain_group

    def encode(raw: list[object], group: int, prefix: str) -> bytes:
        if group == k:
            raise OSError(28, "No space left on device")
        return real(raw, group, prefix)

    monkeypatch.setattr(submit, "encode_plain_group", encode)


def test_a_write_failing_part_way_cancels_what_was_submitted(
    tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Array 2's points fail to write while sbatch runs for array 1: that sbatch is collected, the
    array it submitted cancelled, and the error says so; nothing is recorded as a sweep."""
    _disk_full_at_file(monkeypatch, tmp_path, 2)
    fake = FakeSlurm()
    with pytest.raises(HpcjobsError, match=r"writing the files of array 2 of 3 failed: .*No space left on device.* "
                                            r"\(cancelled the 1 array\(s\) already submitted\)$"):  # fmt: skip
        _job().map([[str(i)] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert fake.runner.programs().count("sbatch") == 1 and fake.cancelled == ["100"]
    assert not list(tmp_path.glob("hpcjobs-sweeps/*/sweep.json"))
    assert not (tmp_path / "cache" / "hpcjobs" / "sweeps").exists()  # not registered either

    # array 1's files failing: nothing is submitted, the error is the write's own
    _disk_full_at_file(monkeypatch, tmp_path, 0)
    fake = FakeSlurm()
    with pytest.raises(OSError, match="No space left"):
        _job().map([[str(i)] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert "sbatch" not in fake.runner.programs() and fake.cancelled == []


def _careful(raw: list[object]) -> list[bytes]:
    return encode_points(to_points(raw), env_carrier(_job().resolve(SITE)))  # type: ignore[arg-type]


names = st.sampled_from(["SEED", "A_B", "x1", "_"])
values = st.one_of(hostile_text, st.sampled_from(["$HOME", "a\\b", "`id`", "\r\n", "\x80", "a\x00b", ""]))
plain_points = st.one_of(
    st.lists(values, max_size=4),
    st.fixed_dictionaries({}, optional={"args": st.lists(values, max_size=3), "env": st.dictionaries(names, values,
                                                                                                  max_size=3)}),
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(plain_points, min_size=1, max_size=8))
def test_property_points_encoded_per_group_are_the_careful_bytes(raw: list[object]) -> None:
    """Where the one-pass encoding answers, its bytes are the checked path's; where a value cannot
    travel (NUL, CR LF, U+0080) it does not answer, and the checked path refuses it."""
    prefix = plain_prefix(_job().resolve(SITE))
    assert prefix == "APPTAINERENV_"
    fast = encode_plain(raw, prefix)
    try:
        as_points = to_points(raw)
    except ConfigError:
        as_points = None
    if as_points is not None:
        assert encode_plain(as_points, prefix) == fast
    try:
        careful = _careful(raw)
    except ConfigError:
        assert fast is None
        return
    assert fast is None or fast == careful


uniform_points = st.one_of(
    st.lists(st.lists(st.one_of(values, st.integers()), max_size=3), min_size=1, max_size=6),
    st.lists(st.fixed_dictionaries({}, optional={
        "args": st.one_of(st.lists(values, max_size=3), st.none(), st.just(""), st.tuples(values)),
        "env": st.one_of(st.dictionaries(st.one_of(names, st.just("1BAD")), values, max_size=2), st.none(),
                         st.just(0))}), min_size=1, max_size=6),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(uniform_points)
def test_property_uniform_groups_read_as_point_by_point(chunk: list[Any]) -> None:
    """The C-loop reading of a group of all-list or all-dict points gives the point-by-point
    reading's values, or defers to it; so plain_ok answers the same either way."""
    from hpcjobs.sweep.pointfile import _uniform_values, _values

    fast, slow = _uniform_values(chunk), _values(chunk)
    if fast is not None:
        assert slow is not None
        assert (fast[0], set(fast[1]), fast[2]) == (slow[0], set(slow[1]), slow[2])


def test_points_encoded_per_group_across_group_files() -> None:
    raw: list[object] = [{"args": ["--lr", f"{i}", "it's $x"], "env": {"SEED": f"s {i}"}} for i in range(GROUP + 5)]
    fast = encode_plain(raw, "APPTAINERENV_")
    assert fast is not None and len(fast) == 2 and fast == _careful(raw)
    assert encode_plain([*raw, ["a\x00b"]], "APPTAINERENV_") is None  # a NUL: the checked path says where
    assert encode_plain([*raw, {"env": {"K": "$HOME"}}], "APPTAINERENV_") is None  # escaped by the runtime
    assert encode_plain([*raw, [1, 2]], "APPTAINERENV_") is None  # numbers: written by the checked path
    assert encode_plain([{"env": {"1BAD": "v"}}], "APPTAINERENV_") is None
    assert encode_plain(raw, None) is None  # a runtime that is asked value by value
    from_file = to_points(raw)  # Points, as a job file's sweep: section gives them
    assert encode_plain(from_file, "APPTAINERENV_") == fast


@pytest.mark.parametrize("throttle", [None, 7])
def test_arrays_of_one_sweep_are_rendered_once_and_equal_to_rendering_each(tmp_path: Path, throttle: int | None
                                                                          ) -> None:  # fmt: skip
    job = _job().resolve(SITE)
    where = tmp_path / "a dir with $HOME and 'quotes'"
    plans = plan_arrays(range(2500), ArrayLimits(1001, 10000), contiguous=True)
    first = array_script(job, where, "sw-1", plans[0], attempt=0, throttle=throttle)
    for plan in plans[1:]:
        derived = same_but_range(plans[0], first, plan, throttle)
        assert derived == array_script(job, where, "sw-1", plan, attempt=0, throttle=throttle)
    retry = plan_arrays([3, 9], ArrayLimits(1001, 10000), contiguous=False)[0]
    assert same_but_range(plans[0], first, retry, throttle) is None  # a list of points: rendered
    assert same_but_range(plans[0], first.replace("#SBATCH --array=", "#SBATCH --arr="), plans[1], throttle) is None


def test_a_sweep_renders_its_script_once(tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import hpcjobs.render

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls: list[int] = []
    real = hpcjobs.render.render
    monkeypatch.setattr(hpcjobs.render, "render", lambda *a, **k: calls.append(1) or real(*a, **k))
    fake = FakeSlurm()
    sw = _job().map([[f"p{i}"] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert len(sw.job_ids) == 3 and len(calls) == 1
    assert "hpcjobs_point=$((8 + SLURM_ARRAY_TASK_ID))" in fake.scripts[sw.job_ids[2]]
    assert (sw.directory / "array-2.sh").read_text() == fake.scripts[sw.job_ids[2]]


def test_job_records_count_a_pending_array_by_its_tasks() -> None:
    from hpcjobs.schedulers.slurm_cli import count_job_records

    listed = "15089_[0-6,8-1000%50]\n15084_[0-2]\n15090_7\n15091\n15092+0\n\n15093_[4]\n"
    assert count_job_records(listed) == 7 + 993 + 3 + 1 + 1 + 1 + 1
    assert count_job_records("") == 0
    for unreadable in ("15089_[0-3,5,...]", "15089_[5-2]", "15089_[0x1F]", "JOBID", "15089_[0-3"):
        assert count_job_records(unreadable) is None, unreadable


def test_job_records_ask_squeue_r_when_a_line_cannot_be_read() -> None:
    from hpcjobs.schedulers import SlurmCli

    def answer(call: Completed | object) -> Completed:
        argv = call.argv  # type: ignore[attr-defined]
        text = "7_[0-3,5,...]\n8\n" if "-r" not in argv else "7_0\n7_1\n7_2\n7_3\n7_5\n7_9\n8\n"
        return Completed(argv, 0, text, "")

    runner = RecordingRunner(answer=answer)
    assert SlurmCli(runner).job_records() == 7
    first, second = runner.calls
    assert "-r" not in first.argv and first.env == {"SLURM_BITSTR_LEN": "0"}  # the task list printed whole
    assert "-r" in second.argv
    runner = RecordingRunner(answer=lambda c: Completed(c.argv, 0, "7_[0-3,5]\n8\n", ""))
    assert SlurmCli(runner).job_records() == 6 and len(runner.calls) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=6,
)
# lines that are JSON, almost JSON, or neither: values with padding (JSON's own whitespace and
# other Unicode whitespace), two values on a line, a value cut in two, a BOM, a stray character
jsonl_lines = st.one_of(
    json_values.map(json.dumps),
    st.tuples(st.sampled_from(["", " ", "\t", "\r", "\xa0", "\u2028", "\ufeff", "\x0b"]), json_values,
              st.sampled_from(["", " ", "\t", "\r", "\xa0", ",", " 1", "]", "}", "\x0c"])).map(
        lambda t: t[0] + json.dumps(t[1]) + t[2]),
    json_values.map(lambda v: json.dumps(v)[: max(1, len(json.dumps(v)) // 2)]),
    hostile_text,
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(jsonl_lines, min_size=1, max_size=6))
def test_property_jsonl_points_read_as_json_loads_reads_each_line(lines: list[str]) -> None:
    """The points file's fast reading (raw_decode of each stripped line) accepts exactly the lines
    json.loads accepts, with the same values, and names the same first bad line."""
    from hpcjobs.sweep.points import _jsonl_rows

    text = "\n".join(lines) + "\n"
    expected: list[object] = []
    bad_line = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            expected.append(json.loads(line))
        except ValueError:
            bad_line = n
            break
    if bad_line is None:
        assert _jsonl_rows(text, Path("p.jsonl")) == expected
    else:
        with pytest.raises(ConfigError, match=rf"^p\.jsonl:{bad_line}: not JSON"):
            _jsonl_rows(text, Path("p.jsonl"))


def test_recording_runner_times_every_call_even_one_that_raises() -> None:
    """RecordingRunner.spans (what the benchmark reads to see where a submission waits on Slurm):
    each call once, with its start and end, in the order the calls ended, across threads."""
    import threading

    from hpcjobs.errors import RunnerError

    entered, release = threading.Event(), threading.Event()

    def answer(call: object) -> Completed:
        argv = call.argv  # type: ignore[attr-defined]
        if argv[0] == "fail":
            raise RunnerError("no")
        if argv[0] == "slow":
            entered.set()
            release.wait()  # ends only after the calls made meanwhile in the main thread
        return Completed(argv, 0, "", "")

    runner = RecordingRunner(answer=answer)
    slow = threading.Thread(target=runner, args=(["slow"],))
    slow.start()
    entered.wait()
    runner(["quick"])
    with pytest.raises(RunnerError):
        runner(["fail"])
    release.set()
    slow.join()
    assert [c.argv[0] for c, _, _ in runner.spans] == ["quick", "fail", "slow"]
    assert sorted(c.argv[0] for c in runner.calls) == ["fail", "quick", "slow"]
    assert all(c in runner.calls and started <= ended for c, started, ended in runner.spans)
    (_, slow_started, slow_ended), = [s for s in runner.spans if s[0].argv == ("slow",)]
    quick_ended = runner.spans[0][2]
    assert slow_started <= quick_ended <= slow_ended  # the slow call's span covers what ran meanwhile


class _Flight:
    """sbatch as processes that answer when collected (the fake's answer, made then), with ids
    that decrease (a later array's job id smaller than an earlier one's); counts how many run at
    once and what each array's sbatch found on disk when it started."""

    def __init__(self, fake: FakeSlurm, root: Path) -> None:
        self.fake, self.root = fake, root
        self.running = 0
        self.most = 0
        self.seen: list[tuple[list[str], list[str]]] = []
        fake.next_id = 900
        plain = fake.answer
        fake.runner.answer = lambda call: None if call.argv[0] == "sbatch" else plain(call)
        fake.runner.inner = self  # type: ignore[assignment]

    def start(self, argv: Sequence[str], **kw: Any) -> _Flight.Run:
        d = next((self.root / "hpcjobs-sweeps").iterdir())
        self.seen.append((sorted(p.name for p in (d / "points").iterdir()), sorted(p.name for p in d.glob("*.sh"))))
        self.running += 1
        self.most = max(self.most, self.running)
        return _Flight.Run(self, Call(tuple(argv), kw.get("input_text")))

    def __call__(self, argv: Sequence[str], **kw: object) -> Completed:
        raise AssertionError(f"unexpected {argv}")

    class Run:
        def __init__(self, flight: _Flight, call: Call) -> None:
            self.flight, self.call = flight, call

        def wait(self) -> Completed:
            self.flight.running -= 1
            answer = self.flight.fake.answer(self.call)
            self.flight.fake.next_id -= 20  # the next array's id: 10 below this one's
            return answer

        def discard(self) -> None:
            raise AssertionError("a submission is collected, not given up")


def test_two_sbatch_in_flight_each_array_its_own_id(tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to SBATCH_IN_FLIGHT sbatch run at once, never more; each array's files are whole on disk
    when its sbatch starts; job ids that come back decreasing map each array to its own id, and
    status, logs and retry follow them."""
    import hpcjobs.sweep.pointfile as pointfile
    from hpcjobs.sweep.arrays import SBATCH_IN_FLIGHT

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(pointfile, "GROUP", 3)  # arrays of 4 points (MaxArraySize 4), files of 3
    fake = FakeSlurm()
    flight = _Flight(fake, tmp_path)
    raw: list[Any] = [[f"it's {i}"] for i in range(14)]  # 4 arrays
    sw = _job().map(raw, SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert SBATCH_IN_FLIGHT == 2 and flight.most == 2 and flight.running == 0
    assert flight.seen == [
        (["0.rec", "1.rec"], ["array-0.sh"]),  # points 0-3
        (["0.rec", "1.rec", "2.rec"], ["array-0.sh", "array-1.sh"]),  # points 4-7
        (["0.rec", "1.rec", "2.rec", "3.rec"], ["array-0.sh", "array-1.sh", "array-2.sh"]),  # points 8-11
        (["0.rec", "1.rec", "2.rec", "3.rec", "4.rec"], ["array-0.sh", "array-1.sh", "array-2.sh", "array-3.sh"]),
    ]
    assert sw.job_ids == ["900", "890", "880", "870"]
    for k, jid in enumerate(sw.job_ids):
        assert fake.scripts[jid] == (sw.directory / f"array-{k}.sh").read_text()
        assert f"#SBATCH --array=0-{3 if k < 3 else 1}" in fake.scripts[jid]
    fake.tasks["880"][1] = ("FAILED", 3)  # point 9
    fake.tasks["900"][2] = ("COMPLETED", 0)  # point 2
    st = sw.status()
    assert [p.job_id for p in st.points][:5] == ["900_0", "900_1", "900_2", "900_3", "890_0"]
    assert st.points[9].job_id == "880_1" and st.points[9].state.name == "FAILED" and st.points[9].exit_code == 3
    assert st.points[13].job_id == "870_1" and st.points[2].state.name == "COMPLETED"
    assert [pointfile.read_point(sw.directory, i).args for i in range(14)] == [(f"it's {i}",) for i in range(14)]
    assert sw.log_path(9).name == "point-9.out"
    new = sw.retry()
    assert new == ["860"] and sw.status().points[9].job_id == "860_0"
    assert sw.log_path(9).name == "point-9.retry1.out"
    sw.record.refresh(force=True)  # as another process reads it: the arrays in the order of their points
    assert sw.job_ids == ["900", "890", "880", "870", "860"]
    again = Sweep.load(str(sw.directory), scheduler=fake.sched())
    assert again.job_ids == sw.job_ids and again.status().points[9].job_id == "860_0"
    assert again.status().points[13].job_id == "870_1"


def test_a_refusal_with_two_in_flight_cancels_the_one_accepted_after_it(
    tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Array 1's sbatch is refused while array 2's runs: array 2's sbatch is collected, and the
    arrays it and array 1 submitted are cancelled; the error says how many; nothing recorded."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = FakeSlurm()
    flight = _Flight(fake, tmp_path)
    plain = fake.answer
    n_sbatch = [0]

    def answer(call: Call) -> Completed:
        if call.argv[0] == "sbatch":
            n_sbatch[0] += 1
            if n_sbatch[0] == 2:  # array 2 of 3 (the second collected)
                return Completed(call.argv, 1, "", "sbatch: error: Batch job submission failed: Invalid qos")
        return plain(call)

    fake.answer = answer  # type: ignore[method-assign]
    with pytest.raises(SchedulerError, match=r"array 2 of 3 refused: .*Invalid qos.*"
                                             r"\(cancelled the 2 array\(s\) already submitted\)$"):  # fmt: skip
        _job().map([[str(i)] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert fake.runner.programs().count("sbatch") == 3 and flight.running == 0
    assert sorted(fake.cancelled) == ["870", "900"]  # array 1's and array 3's, not the refused one
    assert not list(tmp_path.glob("hpcjobs-sweeps/*/sweep.json"))
    assert not (tmp_path / "cache" / "hpcjobs" / "sweeps").exists()

    # the first refused while the second runs: the second is collected and cancelled
    fake = FakeSlurm()
    flight = _Flight(fake, tmp_path / "b")
    (tmp_path / "b").mkdir()
    fake.refuse_after = None
    plain2 = fake.answer
    first = [True]

    def answer2(call: Call) -> Completed:
        if call.argv[0] == "sbatch" and first[0]:
            first[0] = False
            return Completed(call.argv, 1, "", "sbatch: error: Batch job submission failed: Invalid qos")
        return plain2(call)

    fake.answer = answer2  # type: ignore[method-assign]
    with pytest.raises(SchedulerError, match=r"array 1 of 3 refused: .*cancelled the 1 array"):
        _job().map([[str(i)] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path / "b")
    assert fake.runner.programs().count("sbatch") == 2 and fake.cancelled == ["880"] and flight.running == 0


def test_a_write_failing_with_two_in_flight_cancels_both(
    tmp_path: Path, sif: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Array 3's points fail to write while the sbatch calls of arrays 1 and 2 run: both are
    collected and both arrays cancelled; nothing recorded."""
    _disk_full_at_file(monkeypatch, tmp_path, 3)  # arrays of 4 points, files of 3: array 3 needs file 3
    fake = FakeSlurm()
    flight = _Flight(fake, tmp_path)
    with pytest.raises(HpcjobsError, match=r"writing the files of array 3 of 3 failed: .*No space left on device.* "
                                            r"\(cancelled the 2 array\(s\) already submitted\)$"):  # fmt: skip
        _job().map([[str(i)] for i in range(10)], SITE, scheduler=fake.sched(), cwd=tmp_path)
    assert fake.runner.programs().count("sbatch") == 2 and flight.most == 2 and flight.running == 0
    assert fake.cancelled == ["900", "890"]
    assert not list(tmp_path.glob("hpcjobs-sweeps/*/sweep.json"))
