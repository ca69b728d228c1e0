"""The profile wrappers against the core, without a cluster: golden scripts, placement, and the nsys
command line checked against the options Nsight Systems documents.

Regenerate the goldens after an intended change with:
    HPCJOBS_REGEN_GOLDEN=1 pytest plugins/hpcjobs-profile/tests/test_profile_plan.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hpcjobs_profile import HPCJOBS_PLUGIN_API

from hpcjobs.config import load_site
from hpcjobs.errors import PluginError
from hpcjobs.plan import build_plan
from hpcjobs.plugins import plugin_infos
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

GOLDEN = Path(__file__).parent / "golden"
SITE = load_site(GOLDEN / "site.yaml")

# `nsys profile` switches as the Nsight Systems User Guide documents them ("CLI Profile Command Switch
# Options"; long options take their value after '='), with the values this plugin may write.
# nsys is not installable on the dev machines: this list, not a run, is what the command line is checked
# against. %q{VAR} in --output is the guide's "substituted with the environment variable" pattern.
NSYS_PROFILE_OPTIONS: dict[str, object] = {
    "--trace": {"cuda", "nvtx", "osrt", "cublas", "cudnn", "opengl", "openacc", "openmp", "mpi", "ucx", "nvvideo",
                "vulkan", "oshmem", "none"},
    "--output": None,  # any path
    "--force-overwrite": {"true", "false"},
    "--sample": {"process-tree", "system-wide", "cpu", "none"},
    "--stats": {"true", "false"},
    "--cuda-memory-usage": {"true", "false"},
    "--mpi-impl": {"openmpi", "mpich"},
    "--delay": None,
    "--duration": None,
}  # fmt: skip

CASES: dict[str, dict[str, Any]] = {
    "nsys_inside_mpi": {"image": "/images/cuda.sif", "gpus": 2, "ntasks": 2, "wrappers": ["nsys"],
                        "entrypoint": ["/opt/app/train", "--epochs", "1"]},
    "perf_strace_outside": {"image": "/images/tool.sif", "ntasks": 2, "wrappers": ["perf-stat", "strace"],
                            "command": ["run", "it's $HOME"]},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_script(case: str) -> None:
    job = resolve(JobSpec.model_validate(CASES[case]), SITE)
    pairs = ((render(job), GOLDEN / f"{case}.sh"), (render(job, explain=True), GOLDEN / f"{case}.explain.sh"))
    for text, path in pairs:
        if os.environ.get("HPCJOBS_REGEN_GOLDEN") == "1":
            path.write_text(text)
        assert path.exists(), f"missing {path}; create it with: HPCJOBS_REGEN_GOLDEN=1 pytest {__file__}"
        assert text == path.read_text(), (
            f"{path} differs; if intended, regenerate with: HPCJOBS_REGEN_GOLDEN=1 pytest {__file__}"
        )
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", "-s", "bash", "-"], input=render(job), capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_nsys_words_are_documented_options_inside_the_container() -> None:
    plan = build_plan(resolve(JobSpec.model_validate(CASES["nsys_inside_mpi"]), SITE))
    roles = [g.role for g in plan.command]
    nsys = next(g for g in plan.command if g.plugin == "nsys")
    # inside: after the image, right before the program
    assert roles.index("wrapper") == roles.index("image") + 1 and roles[-1] == "program"
    assert nsys.argv[:2] == ("nsys", "profile")
    for word in nsys.argv[2:]:
        name, sep, value = word.partition("=")
        assert sep and name in NSYS_PROFILE_OPTIONS, f"{word!r}: not a documented `nsys profile` option (long=value)"
        allowed = NSYS_PROFILE_OPTIONS[name]
        if isinstance(allowed, set):
            assert set(value.split(",")) <= allowed, word
    assert "--output=/reports/nsys-%q{SLURM_JOB_ID}-rank%q{SLURM_PROCID}" in nsys.argv


def test_outside_wraps_the_runtime_once_per_task() -> None:
    argv = build_plan(resolve(JobSpec.model_validate(CASES["perf_strace_outside"]), SITE)).argv()
    assert argv[:2] == ["srun", "--mpi=pmix"]
    perf_at, strace_at, runtime_at = argv.index("hpcjobs-perf"), argv.index("hpcjobs-strace"), argv.index("apptainer")
    assert perf_at < strace_at < runtime_at  # in the order named, outermost first
    assert argv[perf_at + 1:perf_at + 4] == ["perf", "/scratch/perf", "task-clock,page-faults"]


def test_inside_with_the_image_entrypoint_is_refused() -> None:
    job = resolve(JobSpec.model_validate({"image": "/images/cuda.sif", "wrappers": ["nsys"]}), SITE)
    with pytest.raises(PluginError, match="image's own ENTRYPOINT"):
        build_plan(job)


def test_listed_by_hpcjobs_plugins() -> None:
    row = next(p for p in plugin_infos() if p.name == "profile")
    assert row.dist == "hpcjobs-profile" and row.api == HPCJOBS_PLUGIN_API and row.error is None
    assert row.provides["wrappers"] == ["nsys", "perf-stat", "strace"]


def test_loading_the_plugin_builds_no_validator() -> None:
    """hpcjobs loads every plugin on each render and submit: the wrappers module is imported when a
    hook asks for it, and the settings' validators are built on first use (checked in a fresh
    interpreter, by what exists, not by timing)."""
    import json
    import sys

    probe = (
        "import json, sys, hpcjobs_profile\nloaded = 'hpcjobs_profile.wrappers' in sys.modules\n"
        "names = [w.name for w in hpcjobs_profile.hpcjobs_wrappers()]\n"
        "from hpcjobs_profile.wrappers import ProfileSettings, NsysSettings\n"
        "print(json.dumps([loaded, names, ProfileSettings.__pydantic_complete__, NsysSettings.__pydantic_complete__, "
        "hpcjobs_profile.ProfileSettings is ProfileSettings]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [False, ["nsys", "perf-stat", "strace"], False, False, True]
    from hpcjobs_profile.wrappers import ProfileSettings

    assert ProfileSettings.model_validate({"perf": {"events": ["task-clock"]}}).perf.events == ["task-clock"]
