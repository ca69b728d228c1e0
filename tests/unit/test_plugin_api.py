"""Plugin API 1.0: load failures reported only when asked for, API version checked at load,
`hpcjobs plugins`, the plan chain (launcher -> runtime -> wrappers -> site hooks) and provenance.

The third-party plugins are real distributions (dist-info with entry points) in
tests/plugin_dists, put on sys.path for the test: one that fails to import, one written for
plugin API 2.0, and a working one with two wrappers, a site section and an ``hpcjobs_plan`` hook.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from hpcjobs import plugins
from hpcjobs.cli import main_group
from hpcjobs.config import load_site_text
from hpcjobs.errors import ConfigError, PluginError, PolicyViolation
from hpcjobs.plan import build_plan
from hpcjobs.plugin_api import (
    HPCJOBS_PLUGIN_API,
    ImageContext,
    LaunchPlan,
    ResolvedJob,
    Words,
    check_api_version,
    hookimpl,
)
from hpcjobs.render import render, render_plan
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

DISTS = Path(__file__).resolve().parents[1] / "plugin_dists"
SITE = "name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n"


@pytest.fixture
def dists(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(DISTS))
    plugins._reset()
    yield
    plugins._reset()


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    yield
    plugins._reset()


def test_broken_plugins_break_nothing_else(dists: None) -> None:
    site = load_site_text(SITE)
    script = render(resolve(JobSpec(image="/i/x.sif", command=["a b"]), site))
    assert script.splitlines()[-1] == "exec apptainer run --no-eval /i/x.sif 'a b'"
    assert {"apptainer", "singularity"} <= set(plugins.runtimes())
    failed = {f.name: f for f in plugins.failures()}
    assert set(failed) == {"broken", "future"}
    assert failed["broken"].dist == "hpcjobs-test-broken" and failed["broken"].version == "0.1"
    assert failed["broken"].error == "ImportError: hpcjobs-test-broken needs the module 'not_installed_anywhere'"
    assert failed["future"].error == "written for plugin API 2.0, this hpcjobs provides 1.3"


def test_no_failures_without_the_broken_distributions() -> None:
    assert plugins.failures() == []


def test_a_failed_plugin_is_named_when_asked_for(dists: None) -> None:
    with pytest.raises(ConfigError) as exc:
        plugins.get_runtime("enroot")
    text = str(exc.value)
    assert text.startswith("container runtime 'enroot' is not provided by any plugin (have: apptainer, singularity)")
    assert "plugin 'broken' (hpcjobs-test-broken 0.1) failed: ImportError" in text
    assert "plugin 'future' (hpcjobs-test-future 0.2) failed: written for plugin API 2.0" in text
    # asked for by the failed plugin's own name: only that one
    with pytest.raises(ValidationError, match=r"got 'broken'; plugin 'broken' \(hpcjobs-test-broken 0.1\) failed"):
        JobSpec(image="/i/x.sif", wrappers=["broken"])


def test_a_site_section_of_a_failed_plugin_names_the_failure(dists: None) -> None:
    with pytest.raises(ConfigError) as exc:
        load_site_text(SITE + "plugins: {enroot: {}}\n", "site.yaml")
    assert str(exc.value).startswith(
        "site.yaml: plugins.enroot: no installed plugin reads this section (installed sections: testhook); "
        "plugins that failed to load: plugin 'broken' (hpcjobs-test-broken 0.1) failed: ImportError"
    )


def test_plugins_command_lists_versions_provides_and_failures(dists: None) -> None:
    r = CliRunner().invoke(main_group, ["plugins"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == f"plugin API {HPCJOBS_PLUGIN_API}"
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert re.match(r"apptainer  \(hpcjobs [^,]+, API 1\.3\)  runtimes: apptainer; gpu flags: nv, nvccli, rocm, none$",
                    by_name["apptainer"])
    assert by_name["srun"].endswith("launchers: srun; mpi: pmix, pmi2, none")
    assert by_name["test-wrappers"] == (
        "test-wrappers  (hpcjobs-test-wrappers 1.3, API 1.0)  wrappers: test-outside, test-inside; "
        "site sections: testhook; hooks: hpcjobs_plan"
    )
    assert by_name["broken"].startswith("broken  (hpcjobs-test-broken 0.1)  FAILED: ImportError: ")
    assert by_name["future"].endswith("FAILED: written for plugin API 2.0, this hpcjobs provides 1.3")
    data = json.loads(CliRunner().invoke(main_group, ["plugins", "--json"]).output)
    rows = {p["name"]: p for p in data["plugins"]}
    assert rows["broken"]["error"] and rows["apptainer"]["provides"]["runtimes"] == ["apptainer"]


@pytest.mark.parametrize(("wanted", "ok"), [("1.0", True), ("1", True), ("1.1", True), ("1.2", True), ("1.3", True),
                                            ("0.9", False), ("1.4", False), ("2.0", False), ("one", False),
                                            (1.0, False)])  # fmt: skip
def test_api_version_check(wanted: Any, ok: bool) -> None:
    if ok:
        check_api_version(wanted)
    else:
        with pytest.raises(PluginError):
            check_api_version(wanted)


def test_wrappers_outside_and_inside_with_provenance(dists: None) -> None:
    site = load_site_text(SITE)
    spec = JobSpec(image="/i/x.sif", entrypoint=["/bin/prog", "a b"], ntasks=2, mpi="pmix",
                   wrappers=["test-outside", "test-inside"])  # fmt: skip
    job = resolve(spec, site)
    plan = build_plan(job)
    roles = ["launcher", "wrapper", "runtime", "runtime", "image", "wrapper", "program"]
    assert [g.role for g in plan.command] == roles
    assert plan.argv() == ["srun", "--mpi=pmix", "env", "HPCJOBS_WRAPPED=outside", "apptainer", "exec", "/i/x.sif",
                           "/bin/sh", "-c", 'echo inside-wrapper; exec "$@"', "test-inside", "/bin/prog", "a b"]
    text = render_plan(plan, explain=True)
    assert re.search(r"^#   env HPCJOBS_WRAPPED=outside +<- wrapper test-outside$", text, re.M)
    assert re.search(r"^#   /bin/prog 'a b' +<- entrypoint \+ command: job spec$", text, re.M)
    assert render(job) == render_plan(plan)


def test_wrapping_inside_needs_the_jobs_entrypoint(dists: None) -> None:
    job = resolve(JobSpec(image="/i/x.sif", command=["x"], wrappers=["test-inside"]), load_site_text(SITE))
    with pytest.raises(PluginError, match="runs the image's own ENTRYPOINT"):
        build_plan(job)


def test_site_wrappers_and_site_hook_from_the_site_config(dists: None) -> None:
    site = load_site_text(
        "name: t\ndefault_partition: cpu\npartitions: {cpu: {wrappers: [test-outside]}}\n"
        "plugins: {testhook: {banner: 'hello; from $SITE'}}\n"
    )
    job = resolve(JobSpec(image="/i/x.sif"), site)
    assert job.wrappers == ("test-outside",) and job.launch.wrappers == ("test-outside",)
    lines = render(job, explain=True).splitlines()
    assert "echo 'hello; from $SITE'  # <- site hook testhook (plugins.testhook)" in lines
    assert lines[-1] == "exec env HPCJOBS_WRAPPED=outside apptainer run --no-eval /i/x.sif"


def test_resolved_job_parts() -> None:
    job = resolve(JobSpec(image="/i/x.sif", ntasks=3, env={"A": "1"}, command=["c"]), load_site_text(SITE))
    assert job.resources.ntasks == 3 and job.resources.nodes == 1
    assert job.sbatch.partition == "cpu" and job.sbatch.output == "hpcjobs-%x-%j.out"
    assert job.container.env == {"A": "1"} and job.container.args == ("c",) and job.container.mode == "run"
    assert job.launch.mpi == "none" and job.multi_task


def test_the_rarely_used_parts_are_the_contracts_own_created_on_first_use() -> None:
    """Resources, SbatchPart, ContainerPart, LaunchPart and TargetStatus are created when first
    asked for (CLI start-up), and are then plugin_api's frozen dataclasses as before."""
    import dataclasses
    import pickle
    import subprocess
    import sys

    probe = ("import sys, hpcjobs.plugin_api as p\nbefore = 'hpcjobs.plugin_api_parts' in sys.modules\n"
             "from hpcjobs.plugin_api import TargetStatus\nprint(before, 'hpcjobs.plugin_api_parts' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]

    import hpcjobs.plugin_api as api

    for name in ("Resources", "SbatchPart", "ContainerPart", "LaunchPart", "TargetStatus"):
        cls = getattr(api, name)
        assert name in api.__all__ and cls.__module__ == "hpcjobs.plugin_api" and cls.__qualname__ == name
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    status = api.TargetStatus("7", "FAILED", 3, "boom")
    assert repr(status) == "TargetStatus(job_id='7', state='FAILED', exit_code=3, reason='boom')"
    assert pickle.loads(pickle.dumps(status)) == status
    assert hash(status) == hash(api.TargetStatus("7", "FAILED", 3, "boom"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.state = "RUNNING"  # type: ignore[misc]
    assert dataclasses.replace(status, state="COMPLETED", exit_code=0).state == "COMPLETED"
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        api.Nothing  # noqa: B018


class EchoRuntime:
    """A third-party runtime in miniature: '-v' mounts host paths; the image runs through 'echo'."""

    name = "echo-rt"
    default_binary = "echo"
    gpu_flags = ("none",)

    def mounts_host_path(self, flag: str) -> bool:
        return flag.split("=", 1)[0] in ("-v", "--volume")

    def prepare_image(self, job: ResolvedJob, ctx: ImageContext) -> ResolvedJob:
        return job

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        plan.add(Words(("echo",), "runtime echo-rt (test)", "runtime", self.name))
        plan.add(Words(tuple(job.runtime_flags), "flags (test)", "runtime", self.name))
        plan.add(Words((job.image,), "image (test)", "image", self.name))


@pytest.fixture
def echo_runtime() -> Iterator[None]:
    class Plugin:
        @hookimpl
        def hpcjobs_runtimes(self) -> list[Any]:
            return [EchoRuntime()]

    pm = plugins.plugin_manager()
    pm.register(Plugin(), name="echo-rt-plugin")
    yield
    pm.unregister(name="echo-rt-plugin")


def test_bind_policy_asks_the_runtime_which_flags_mount(echo_runtime: None) -> None:
    site = load_site_text(
        "name: t\ndefault_partition: cpu\npolicy: {deny_bind_sources: [/etc]}\n"
        "partitions: {cpu: {runtime: {name: echo-rt}}, apt: {}}\n"
    )
    with pytest.raises(PolicyViolation, match="runtime flag '--volume=/etc:/x' mounts a host path"):
        resolve(JobSpec(image="/i/x.sif", runtime_flags=["--volume=/etc:/x"]), site)
    # the same flags mean nothing special to apptainer ('-v' is --verbose there)
    ok = resolve(JobSpec(image="/i/x.sif", partition="apt", runtime_flags=["-v"]), site)
    assert ok.runtime_flags == ("-v",)
    text = render(resolve(JobSpec(image="/i/x.sif", runtime_flags=["--x"]), site), explain=True)
    assert re.search(r"^#   echo +<- runtime echo-rt \(test\)$", text, re.M)
    assert text.splitlines()[-1] == "exec echo --x /i/x.sif"


def test_gpu_flag_and_mpi_names_come_from_plugins(echo_runtime: None) -> None:
    with pytest.raises(ValidationError, match=r"expected 'mpirun', 'pmi2', 'pmix' or 'none', got 'openmpi'"):
        JobSpec(image="/i/x.sif", mpi="openmpi")
    with pytest.raises(ConfigError, match=r"gpu.flag: expected 'nv', 'nvccli', 'rocm' or 'none', got 'cuda'"):
        load_site_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {gpu: {flag: cuda}}}\n")


def test_a_plugin_failing_while_building_the_plan_is_named(dists: None) -> None:
    class Bad:
        name = "bad-wrapper"

        def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
            raise KeyError("oops")

    class Plugin:
        @hookimpl
        def hpcjobs_wrappers(self) -> list[Any]:
            return [Bad()]

    plugins.plugin_manager().register(Plugin(), name="bad")
    job = resolve(JobSpec(image="/i/x.sif", wrappers=["bad-wrapper"]), load_site_text(SITE))
    with pytest.raises(PluginError, match="wrapper 'bad-wrapper' failed while building the launch plan: KeyError"):
        build_plan(job)


def test_a_target_without_render_sweep_refuses_a_sweep(tmp_path: Path) -> None:
    from hpcjobs.cli import _target_text
    from hpcjobs.plugin_api import supports_sweeps
    from hpcjobs.sweep.spec import SweepSpec

    class Plain:
        name = "plain"

        def render(self, job: object) -> str:
            return "one job\n"

    class Sweeping(Plain):
        def render_sweep(self, job: object, points: list[object]) -> str:
            return f"{len(points)} points\n"

    sweep = SweepSpec(points=[["a"], ["b"]])
    assert not supports_sweeps(Plain()) and supports_sweeps(Sweeping())
    assert _target_text(Plain(), None, str(tmp_path / "job.yaml"), None) == "one job\n"
    assert _target_text(Sweeping(), None, str(tmp_path / "job.yaml"), sweep) == "2 points\n"
    with pytest.raises(ConfigError, match="a sweep: section needs a target that runs sweeps; target 'plain' has none"):
        _target_text(Plain(), None, str(tmp_path / "job.yaml"), sweep)
    with pytest.raises(ConfigError, match=r"remove sweep\.dir"):
        _target_text(Sweeping(), None, str(tmp_path / "job.yaml"), SweepSpec(points=[["a"]], dir=str(tmp_path)))
