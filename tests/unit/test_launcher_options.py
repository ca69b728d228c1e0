"""Launcher options (issue 14): srun's and mpirun's option rules, the layers and their precedence,
what does not apply, hostile values, the TaskPlugin warning. The real srun's option table is
compared with ours in tests/cluster/test_launcher_options_cluster.py."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcjobs.config import load_site_text
from hpcjobs.errors import ConfigError, HpcjobsError
from hpcjobs.launchers import mpirun_options, srun_options
from hpcjobs.launchers.binding import binding_options, binding_warning, check_binding
from hpcjobs.plan import build_plan
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec
from tests.strategies import hostile_text

SITE = load_site_text(textwrap.dedent("""
    name: t
    default_partition: cpu
    defaults:
      mpi: {default: pmix}
      launcher_options:
        srun: [--distribution=block, --hint=nomultithread]
        mpirun: [--map-by core]
    partitions:
      cpu:
        launcher_options:
          srun: [--cpu-bind=cores, -l]
          mpirun: [--bind-to core, --mca btl self]
      plain: {}
"""))


def job(**fields: Any) -> JobSpec:
    return JobSpec.model_validate({"image": "/i.sif", "command": ["run"], **fields})


def launcher_words(resolved: Any) -> list[str]:
    return [w for g in build_plan(resolved).command if g.role == "launcher" for w in g.argv]


# ------------------------------------------------------------------ srun's option rules


@pytest.mark.parametrize("entry", [
    "--cpu-bind=cores", "--cpu-bind=map_cpu:1,0", "--cpu_bind=none", "--cpu-b=cores", "--hint=nomultithread",
    "--distribution=block:cyclic", "-mblock", "-l", "--label", "--exact", "--kill-on-bad-exit", "-K",
    "--kill-on-bad-exit=1", "--mem-bind=local", "--overlap", "-u", "--comment=a b; echo $HOME\nx",
    "--gpu-bind=closest", "--network=x", "--propagate", "--propagate=STACK",
])  # fmt: skip
def test_srun_accepts(entry: str) -> None:
    assert srun_options.option_problem(entry) is None


@pytest.mark.parametrize(("entry", "needle"), [
    ("--ntasks=3", "sets --ntasks"), ("--nta=3", "ambiguous"), ("--ntasks-per-n=2", "sets --ntasks-per-node"),
    ("-n3", "sets --ntasks"),
    ("-ln3", "sets --ntasks"), ("-n", "sets --ntasks"), ("--tasks-per-node=2", "sets --ntasks-per-node"),
    ("--nodes=2", "sets --nodes"), ("-N2", "sets --nodes"), ("--mpi=pmi2", "sets --mpi"), ("--mp=pmi2", "sets --mpi"),
    ("--export=ALL", "sets --export"), ("--exp=NONE", "sets --export"), ("--jobid=5", "sets --jobid"),
    ("--job-name=x", "sets --job-name"), ("-Jx", "sets --job-name"), ("--partition=gpu", "sets --partition"),
    ("-pgpu", "sets --partition"), ("--part=gpu", "sets --partition"), ("--chdir=/x", "sets --chdir"),
    ("-D/x", "sets --chdir"), ("--output=o", "sets --output"), ("-oo", "sets --output"),
    ("-c2", "sets --cpus-per-task"),
    ("--cpus-per-task=2", "sets --cpus-per-task"), ("--gpus=1", "sets --gpus"), ("--mem=1G", "sets --mem"),
    ("--account=a", "sets --account"), ("-Aa", "sets --account"), ("--cluster=c", "sets --clusters"),
    ("--multi-prog", "sets --multi-prog"), ("--container=/b", "sets --container"), ("-w", "sets --nodelist"),
    ("--time=5", "sets --time"), ("-t5", "sets --time"), ("--help", "sets --help"),
    ("--bogus", "srun has no option --bogus"), ("-y", "srun has no option -y"), ("--c=1", "ambiguous"),
    ("--job=x", "ambiguous"), ("--cpu-bind", "needs a value"), ("-m", "needs a value"),
    ("--exact=1", "takes no value"), ("--cpu-bind cores", "not an option name"), ("cores", "must start with '-'"),
    ("-lu", "2 options"), ("--", "not an option name"), ("-", "must start with '-'"),
])  # fmt: skip
def test_srun_refuses(entry: str, needle: str) -> None:
    problem = srun_options.option_problem(entry)
    assert problem is not None and needle in problem, problem


def test_srun_keys_see_through_aliases_prefixes_and_short_options() -> None:
    assert {srun_options.option_key(e) for e in ("--cpu-bind=none", "--cpu_bind=cores", "--cpu-b=rank")} == {
        "cpu-bind"
    }
    assert srun_options.option_key("-mcyclic") == srun_options.option_key("--distribution=block") == "distribution"


def test_every_short_option_names_a_long_one() -> None:
    assert set(srun_options.SHORT.values()) <= set(srun_options.LONG)
    assert set(srun_options.MANAGED) <= {srun_options.ALIASES.get(n, n) for n in srun_options.LONG}


# ------------------------------------------------------------------ mpirun's option rules


@pytest.mark.parametrize(("entry", "words"), [
    ("--bind-to core", ("--bind-to", "core")), ("--bind-to=core", ("--bind-to", "core")),
    ("-bind-to core", ("-bind-to", "core")), ("--map-by ppr:1:node:PE=2", ("--map-by", "ppr:1:node:PE=2")),
    ("--report-bindings", ("--report-bindings",)), ("--mca btl self,vader", ("--mca", "btl", "self,vader")),
    ("--tag-output", ("--tag-output",)), ("--display-map", ("--display-map",)),
    ("--map-by a b; c", ("--map-by", "a b; c")), ("-nooversubscribe", ("-nooversubscribe",)),
])  # fmt: skip
def test_mpirun_accepts_as_separate_words(entry: str, words: tuple[str, ...]) -> None:
    assert mpirun_options.option_problem(entry) is None
    assert mpirun_options.option_words(entry) == words


@pytest.mark.parametrize("entry", [
    "-np 4", "--np 4", "--np=4", "-n 4", "-c 4", "-np4", "-n4", "-N 1", "--npernode 1", "-H a,b", "--host a",
    "--hostfile f", "-hostfile f", "--machinefile f", "-x FOO", "-xFOO=1", "--x FOO", "-wdir /x", "--wdir=/x",
    "--app f", "--mca btl", "bind-to core", "--", "--bind-to", "-map-by",
])  # fmt: skip
def test_mpirun_refuses(entry: str) -> None:
    assert mpirun_options.option_problem(entry) is not None


def test_mpirun_keys() -> None:
    assert mpirun_options.option_key("-bind-to none") == mpirun_options.option_key("--bind-to=core") == "bind-to"
    assert mpirun_options.option_key("--mca btl self") == "mca:btl" != mpirun_options.option_key("--mca pml ucx")


# ------------------------------------------------------------------ layers and precedence


def test_layers_cli_over_job_over_partition_over_site_per_option() -> None:
    spec = job(ntasks=2, launcher_options={"srun": ["--cpu_bind=none", "--exact"]})
    r = resolve(spec, SITE, {"launcher_options": {"srun": ["-mcyclic"]}})
    # the partition's --cpu-bind and the site's --distribution are replaced, not kept beside
    assert r.launcher_options == ("--hint=nomultithread", "-l", "--cpu_bind=none", "--exact", "-mcyclic")
    assert [r.source(f"launcher_options[{i}]") for i in range(5)] == [
        "site defaults", "partition cpu", "job spec", "job spec", "CLI override (--set)"]
    assert launcher_words(r) == ["srun", "--mpi=pmix", *r.launcher_options]
    notes = "\n".join(r.launcher_notes)
    assert "'--cpu-bind=cores' (partition cpu) is replaced by '--cpu_bind=none' (job spec)" in notes
    assert "'--distribution=block' (site defaults) is replaced by '-mcyclic' (CLI override (--set))" in notes


def test_cli_options_replace_the_jobs_per_option_not_the_whole_field() -> None:
    spec = job(ntasks=2, launcher_options={"srun": ["--cpu-bind=rank", "--exact"]})
    r = resolve(spec, SITE, {"launcher_options": {"srun": ["--cpu-bind=none"]}})
    assert "--exact" in r.launcher_options and "--cpu-bind=rank" not in r.launcher_options


def test_partition_replaces_site_in_the_effective_partition() -> None:
    eff = SITE.effective("cpu")
    assert eff.launcher_options["srun"] == ["--distribution=block", "--hint=nomultithread", "--cpu-bind=cores", "-l"]
    assert eff.launcher_options["mpirun"] == ["--map-by core", "--bind-to core", "--mca btl self"]


def test_mpirun_job_gets_mpirun_options_as_words() -> None:
    r = resolve(job(ntasks=2, mpi="mpirun", launcher_options={"mpirun": ["-bind-to none"]}), SITE)
    assert launcher_words(r) == ["mpirun", "-np", "2", "--map-by", "core", "--mca", "btl", "self", "-bind-to", "none"]
    assert any("'--bind-to core' (partition cpu) is replaced by '-bind-to none'" in n for n in r.launcher_notes)
    assert any("launcher_options.srun '--cpu-bind=cores' (partition cpu) does not apply" in n
               for n in r.launcher_notes)  # fmt: skip


def test_single_task_refuses_job_options_and_notes_site_ones() -> None:
    with pytest.raises(ConfigError, match=r"launcher_options.srun '--exact' from the job does not apply: this job "
                       r"runs a single task, with no launcher"):  # fmt: skip
        resolve(job(launcher_options={"srun": ["--exact"]}), SITE)
    with pytest.raises(ConfigError, match="from --set does not apply"):
        resolve(job(), SITE, {"launcher_options": {"srun": ["--exact"]}})
    r = resolve(job(), SITE)
    assert r.launcher_options == ()
    explained, plain = render(r, explain=True), render(r)
    note = "# launcher_options.srun '--cpu-bind=cores' (partition cpu) does not apply: this job runs a single task"
    assert note in explained
    assert "does not apply" not in plain and "cpu-bind" not in plain


def test_options_for_the_other_launcher_are_refused_from_the_job() -> None:
    with pytest.raises(ConfigError, match=r"tasks are started by mpirun \(mpi: mpirun\); give it as "
                       r"launcher_options.mpirun"):  # fmt: skip
        resolve(job(ntasks=2, mpi="mpirun", launcher_options={"srun": ["--exact"]}), SITE)


def test_no_options_anywhere_changes_nothing() -> None:
    r = resolve(job(ntasks=2, partition="plain"), SITE.model_copy(update={"defaults": SITE.partitions["plain"]}))
    assert r.launcher_options == () and r.launcher_notes == ()


def test_site_config_names_the_key_path_of_a_bad_option() -> None:
    with pytest.raises(HpcjobsError) as err:
        load_site_text("name: t\ndefault_partition: cpu\npartitions:\n  cpu:\n    launcher_options:\n"
                       "      srun: [--exact, --ntasks-per-n=2]\n      nosuch: [-x]\n")  # fmt: skip
    text = str(err.value)
    assert "partitions.cpu.launcher_options.srun.1" in text and "sets --ntasks" in text, text
    assert "partitions.cpu.launcher_options.nosuch" in text and "no launcher is named 'nosuch'" in text, text


def test_job_spec_refuses_bad_options_with_their_place() -> None:
    with pytest.raises(Exception, match=r"srun.0: '-n2' sets --ntasks"):
        job(launcher_options={"srun": ["-n2"]})
    with pytest.raises(Exception, match=r"mpirun.0: '-np 2' sets -np"):
        job(launcher_options={"mpirun": ["-np 2"]})


def test_policy_can_lock_launcher_options() -> None:
    site = SITE.model_copy(update={"policy": SITE.policy.model_copy(update={"locked": ["launcher_options"]})})
    with pytest.raises(HpcjobsError, match="launcher_options"):
        resolve(job(ntasks=2, launcher_options={"srun": ["--exact"]}), site)


def test_a_hand_built_job_is_checked_again_in_the_plan() -> None:
    import dataclasses

    r = resolve(job(ntasks=2), SITE)
    with pytest.raises(ConfigError, match="sets --ntasks"):
        build_plan(dataclasses.replace(r, launcher_options=("--ntasks=9",)))
    with pytest.raises(ConfigError, match="single task has no launcher"):
        build_plan(dataclasses.replace(r, ntasks=1, launcher_options=("--exact",)))


# ------------------------------------------------------------------ hostile values arrive literally


def _argv_of(script: str, tmp: Path) -> list[str]:
    """Run the script with srun and mpirun replaced by a stub that prints its argv."""
    stub = tmp / "bin"
    stub.mkdir(exist_ok=True)
    for name in ("srun", "mpirun"):
        (stub / name).write_text('#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n')
        (stub / name).chmod(0o755)
    done = subprocess.run(["bash", "-c", script], env={"PATH": f"{stub}:/usr/bin:/bin"}, capture_output=True,
                          text=True, check=True)  # fmt: skip
    argv: list[str] = json.loads(done.stdout)
    return argv


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=hostile_text)
def test_property_hostile_option_values_arrive_literally(tmp_path: Path, value: str) -> None:
    r = resolve(job(ntasks=2, launcher_options={"srun": [f"--comment={value}"]}), SITE)
    argv = _argv_of(render(r), tmp_path)
    assert argv[argv.index("-l") + 1] == f"--comment={value}"
    m = resolve(job(ntasks=2, mpi="mpirun", launcher_options={"mpirun": [f"--map-by {value}"]}), SITE)
    argv = _argv_of(render(m), tmp_path)
    assert argv[argv.index("--map-by", argv.index("btl")) + 1] == value
    # --explain shows the value in comments (its row, its notes): none of it may become code
    assert _argv_of(render(m, explain=True), tmp_path) == argv


@given(st.text(max_size=12))
def test_property_srun_parse_never_crashes_and_never_passes_a_managed_option(text: str) -> None:
    entry = "-" + text
    problem = srun_options.option_problem(entry)
    if problem is None:
        parsed = srun_options.parse(entry)
        assert isinstance(parsed, list) and len(parsed) == 1
        assert parsed[0][0] not in srun_options.MANAGED


# ------------------------------------------------------------------ binding and TaskPlugin


def test_binding_warning_only_where_srun_cannot_bind() -> None:
    bound = resolve(job(ntasks=2), SITE)  # the partition's --cpu-bind=cores, the site's --hint
    assert binding_options(bound) == ["--hint=nomultithread", "--cpu-bind=cores"]
    note = binding_warning(bound, "task/none")
    assert note is not None and "TaskPlugin=task/none" in note and "'--cpu-bind=cores'" in note
    assert binding_warning(bound, "task/cgroup") is not None
    assert binding_warning(bound, "task/affinity,task/cgroup") is None
    unbound = resolve(job(ntasks=2, launcher_options={"srun": ["--cpu-bind=none", "--hint=multithread"]}), SITE)
    assert binding_options(unbound) == ["--hint=multithread"]
    mpirun = resolve(job(ntasks=2, mpi="mpirun"), SITE)
    assert binding_options(mpirun) == []  # mpirun binds itself, whatever Slurm's TaskPlugin


class _Sched:
    def __init__(self, plugin: str) -> None:
        self.plugin, self.asked = plugin, 0

    def task_plugin(self) -> str:
        self.asked += 1
        return self.plugin


def test_check_binding_asks_the_backend_only_when_binding_is_asked() -> None:
    sched = _Sched("task/none")
    assert check_binding(resolve(job(ntasks=2, partition="plain"), SITE.model_copy(
        update={"defaults": SITE.partitions["plain"]})), sched) is None  # fmt: skip
    assert sched.asked == 0
    note = check_binding(resolve(job(ntasks=2), SITE), sched)
    assert note is not None and sched.asked == 1
    assert check_binding(resolve(job(ntasks=2), SITE), object()) is None  # a backend that cannot say


def test_submit_warns_when_the_cluster_cannot_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcjobs.errors import HpcjobsWarning
    from hpcjobs.launchers.binding import warn_binding

    with pytest.warns(HpcjobsWarning, match="TaskPlugin=task/none"):
        warn_binding(resolve(job(ntasks=2), SITE), _Sched("task/none"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_binding(resolve(job(ntasks=2), SITE), _Sched("task/affinity"))


def test_task_plugin_is_parsed_from_scontrol_show_config() -> None:
    from hpcjobs.schedulers.slurm_cli import parse_config_value

    text = "Configuration data\nTaskPlugin              = task/affinity,task/cgroup\nTaskPluginParam = (null type)\n"
    assert parse_config_value(text, "TaskPlugin") == "task/affinity,task/cgroup"
    with pytest.raises(HpcjobsError, match="no TaskPlugin"):
        parse_config_value("MaxArraySize = 1\n", "TaskPlugin")


def test_task_plugin_is_not_kept_for_a_runner_that_answers_itself() -> None:
    from hpcjobs.runner import RecordingRunner
    from hpcjobs.sweep.limitcache import cached_config_value

    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        return "task/none"

    fake = RecordingRunner(answer=lambda call: None)
    assert cached_config_value("TaskPlugin", fetch, fake) == "task/none"
    assert cached_config_value("TaskPlugin", fetch, fake) == "task/none"
    assert len(calls) == 2


# ------------------------------------------------------------------ a launcher plugin written for API 1.1


class OldLauncher:
    """A launcher from before launcher options: no option_problem, so it would drop them."""

    name = "oldrun"
    mpi_kinds = ("old",)

    def handles(self, job: Any) -> bool:
        return bool(job.multi_task)

    def contribute(self, job: Any, plan: Any) -> None:
        from hpcjobs.plugin_api import Words

        plan.add(Words(("oldrun",), "old launcher (test)", "launcher", self.name))


@pytest.fixture
def old_launcher() -> Any:
    from hpcjobs import plugins
    from hpcjobs.plugin_api import hookimpl

    class Plugin:
        HPCJOBS_PLUGIN_API = "1.1"

        @hookimpl
        def hpcjobs_launchers(self) -> list[Any]:
            return [OldLauncher()]

    pm = plugins.plugin_manager()
    pm.register(Plugin(), name="old-launcher-plugin")
    yield
    pm.unregister(name="old-launcher-plugin")


def test_options_for_a_launcher_without_option_problem_are_refused_not_dropped(old_launcher: None) -> None:
    with pytest.raises(Exception, match="launcher 'oldrun' takes no options"):
        job(ntasks=2, mpi="old", launcher_options={"oldrun": ["--fast"]})
    with pytest.raises(HpcjobsError, match="launcher 'oldrun' takes no options"):
        load_site_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {launcher_options: {oldrun: [-x]}}}\n")
    # srun's defaults do not apply to its jobs, and it still works as before
    r = resolve(job(ntasks=2, mpi="old"), SITE)
    assert launcher_words(r) == ["oldrun"] and r.launcher_options == ()
    assert any("launcher_options.srun '--cpu-bind=cores' (partition cpu) does not apply: this job's tasks are "
               "started by oldrun (mpi: old)" in n for n in r.launcher_notes)  # fmt: skip


def test_task_plugin_is_asked_once_per_slurm_conf(tmp_path: Path) -> None:
    import os

    from hpcjobs.sweep.limitcache import cached_config_value

    conf = tmp_path / "etc" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text("ClusterName=lab\nTaskPlugin=task/none\n")
    env = {"SLURM_CONF": str(conf), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    answers = ["task/none"]
    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        return answers[-1]

    assert [cached_config_value("TaskPlugin", fetch, None, env) for _ in range(3)] == ["task/none"] * 3
    assert len(calls) == 1  # no Slurm call per submission while slurm.conf is unchanged
    kept = tmp_path / "cache" / "hpcjobs" / "limits" / "lab" / "TaskPlugin.json"
    assert json.loads(kept.read_text())["value"] == "task/none"
    conf.write_text("ClusterName=lab\nTaskPlugin=task/affinity\n")  # the admin changed it
    answers.append("task/affinity")
    assert cached_config_value("TaskPlugin", fetch, None, env) == "task/affinity" and len(calls) == 2
    kept.write_text(kept.read_text().replace("task/affinity", "task/planted"))
    os.chmod(kept, 0o666)  # writable by others: not trusted
    assert cached_config_value("TaskPlugin", fetch, None, env) == "task/affinity" and len(calls) == 3


def test_cli_prints_hpcjobs_warnings_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from hpcjobs.cli import _warnings_to_stderr
    from hpcjobs.errors import HpcjobsWarning

    with _warnings_to_stderr():
        warnings.warn("srun binds no task on this cluster (TaskPlugin=task/none)", HpcjobsWarning, stacklevel=1)
    assert capsys.readouterr().err == "hpcjobs: warning: srun binds no task on this cluster (TaskPlugin=task/none)\n"
