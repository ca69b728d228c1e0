"""The Podman plugin against the core, without a cluster: golden scripts, the words and their
provenance, the bind policy's view of podman flags, image preparation through the runner seam.

Regenerate the goldens after an intended change with:
    HPCJOBS_REGEN_GOLDEN=1 pytest plugins/hpcjobs-podman/tests/test_podman_plan.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hpcjobs_podman import HPCJOBS_PLUGIN_API, PodmanRuntime, PodmanSettings
from hpcjobs_podman.runtime import mounts_host_path

from hpcjobs.config import load_site
from hpcjobs.errors import ConfigError, HpcjobsError, PolicyViolation
from hpcjobs.local import local_job
from hpcjobs.plan import build_plan
from hpcjobs.plugin_api import ImageContext
from hpcjobs.plugins import plugin_infos
from hpcjobs.render import render
from hpcjobs.resolve import resolve
from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.spec import JobSpec

GOLDEN = Path(__file__).parent / "golden"
SITE = load_site(GOLDEN / "site.yaml")
TINY = "docker://registry.lab.internal:5000/lab/tool:1.2"

CASES: dict[str, dict[str, Any]] = {
    "run_image_cmd": {"image": TINY},
    "command_only": {"image": TINY, "command": ["x y", "$HOME"]},
    "entrypoint_binds_env": {
        "image": "docker://docker.io/library/python:3.12",
        "entrypoint": ["python3", "-c", "print('hi')"],
        "binds": ["/data:/data:ro", {"src": "/scratch/my: run", "dst": "/work"}],
        "workdir": "/work",
        "env": {"GREETING": "it's a \"test\"; echo $HOME `id`\nline 2", "EMPTY": ""},
    },
    "mpi_gpu": {"image": TINY, "partition": "gpu", "gpus": 2, "ntasks": 2, "entrypoint": ["/opt/app", "--steps", "10"]},
    "cdi": {"image": TINY + "@sha256:" + "ab" * 32, "partition": "cdi", "gpus": 4, "command": ["nvidia-smi"]},
}


def pinned(fields: dict[str, Any], site: Any = SITE) -> Any:
    """Resolve, then what ``hpcjobs render`` does: the runtime names the image without pulling (an
    empty store here), and takes the TLS setting from the site."""
    job = resolve(JobSpec.model_validate(fields), site)
    runner = RecordingRunner(answer=lambda call: Completed(call.argv, 125, "", "Error: no such image"))
    return PodmanRuntime().prepare_image(job, ImageContext(site=site, runner=runner, pin=True))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_script(case: str) -> None:
    job = pinned(CASES[case])
    script = render(job)
    explained = render(job, explain=True)
    for text, path in ((script, GOLDEN / f"{case}.sh"), (explained, GOLDEN / f"{case}.explain.sh")):
        if os.environ.get("HPCJOBS_REGEN_GOLDEN") == "1":
            path.write_text(text)
        assert path.exists(), f"missing {path}; create it with: HPCJOBS_REGEN_GOLDEN=1 pytest {__file__}"
        assert text == path.read_text(), (
            f"rendered script for {case!r} differs from {path}. If intended, regenerate with: "
            f"HPCJOBS_REGEN_GOLDEN=1 pytest {__file__}"
        )
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", "-s", "bash", "-"], input=script, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_words_and_roles() -> None:
    plan = build_plan(pinned(CASES["mpi_gpu"]))
    roles = [g.role for g in plan.command]
    assert roles[0] == "launcher" and roles[-2:] == ["image", "program"]
    argv = plan.argv()
    assert argv[:2] == ["srun", "--mpi=pmix"]
    assert argv[2:8] == ["podman", "--runtime-flag", "log=/dev/null", "--runtime", "runc", "run"]
    # exec mode: the image's ENTRYPOINT and CMD are cleared, the program follows the image
    i = argv.index("--entrypoint")
    assert argv[i + 1] == "" and argv[i + 2] == "registry.lab.internal:5000/lab/tool:1.2"
    assert argv[i + 3:] == ["/opt/app", "--steps", "10"]
    assert "--device" in argv and argv[argv.index("--device") + 1] == "/dev/nvidia0"
    # the site's insecure registry: pulled without TLS verification
    assert "--tls-verify=false" in argv
    assert "SLURM_*" in argv and "CUDA_VISIBLE_DEVICES" in argv


def test_oci_runtime_log_is_a_site_setting() -> None:
    job = pinned(CASES["mpi_gpu"])
    section = {**job.plugin_settings.get("podman", {}), "oci_runtime_log": None}
    assert "--runtime-flag" not in build_plan(replace(job, plugin_settings={**job.plugin_settings,
                                                                            "podman": section})).argv()
    section["oci_runtime_log"] = "/var/log/x y.log"
    argv = build_plan(replace(job, plugin_settings={**job.plugin_settings, "podman": section})).argv()
    assert argv[3:5] == ["--runtime-flag", "log=/var/log/x y.log"]


def _with(job: Any, section: str = "podman", **settings: Any) -> Any:
    merged = {**job.plugin_settings.get(section, {}), **settings}
    return replace(job, plugin_settings={**job.plugin_settings, section: merged})


def _log_words(argv: list[str]) -> list[str]:
    return argv[argv.index("--log-driver"):argv.index("--log-driver") + 2] if "--log-driver" in argv else []


def test_log_driver_passthrough_unless_a_task_stream_may_be_a_terminal() -> None:
    job = pinned(CASES["mpi_gpu"])
    argv = build_plan(job).argv()
    assert _log_words(argv) == ["--log-driver", "passthrough"] and argv[argv.index("--log-driver") - 1] == "--rm"
    assert _log_words(build_plan(replace(job, stdio_tty=True)).argv()) == []  # Podman would refuse it
    assert _log_words(build_plan(_with(job, log_driver=None)).argv()) == []
    assert _log_words(build_plan(_with(replace(job, stdio_tty=True), log_driver="k8s-file")).argv()) == [
        "--log-driver", "k8s-file"]  # fmt: skip
    explained = render(job, explain=True)
    assert "--log-driver passthrough" in explained and "no task stream is a terminal" in explained


def test_log_driver_auto_on_a_core_that_does_not_say_leaves_podmans_default() -> None:
    from hpcjobs_podman.runtime import log_driver_words

    class OldJob:  # a ResolvedJob of core API < 1.3: no stdio_tty
        pass

    assert log_driver_words(OldJob(), PodmanSettings()) == []  # type: ignore[arg-type]


def test_docker_log_driver_only_when_asked() -> None:
    job = local_job(pinned({"image": TINY}), runtime="docker")
    assert _log_words(build_plan(job).argv()) == []  # Docker has no passthrough driver
    assert _log_words(build_plan(_with(job, "docker", log_driver="auto")).argv()) == ["--log-driver", "passthrough"]


@pytest.mark.parametrize("tty", [False, True])
def test_local_run_tells_the_runtime_whether_output_is_a_terminal(tty: bool) -> None:
    from hpcjobs.local import run_local

    scripts: list[str] = []

    class Proc:
        def wait(self) -> int:
            return 0

    def spawn(argv: list[str], **kw: Any) -> Proc:
        scripts.append(Path(argv[1]).read_text())
        return Proc()

    run_local(local_job(pinned({"image": TINY})), ntasks=2, spawn=spawn, env={}, tty=tty)
    assert len(scripts) == 2 and all(("--log-driver passthrough" in s) is not tty for s in scripts)


def test_run_mode_keeps_entrypoint_and_env_is_literal_words() -> None:
    spec = {"image": "docker://ghcr.io/x/y:1", "command": ["a"], "env": {"V": "$HOME `id`"}}
    argv = build_plan(pinned(spec)).argv()
    assert "--entrypoint" not in argv
    assert argv[-2:] == ["ghcr.io/x/y:1", "a"]
    assert "V=$HOME `id`" in argv and "SITE_VAR=site value" in argv
    assert "--tls-verify=true" in argv  # not loopback, not listed insecure


@pytest.mark.parametrize(("flag", "mounts"), [
    ("-v", True), ("-v=/x:/y", True), ("-itv", True), ("--volume=/x:/y", True), ("--mount", True),
    ("--mount=type=bind,src=/x,dst=/y", True), ("--volumes-from=c", True), ("--device=/dev/sda", True),
    ("--rootfs", True), ("--env-file=/etc/shadow", True),
    ("--read-only", False), ("-e", False), ("--env=X=1", False), ("-it", False),
    ("--security-opt=label=disable", False),
])  # fmt: skip
def test_mounts_host_path(flag: str, mounts: bool) -> None:
    assert mounts_host_path(flag) is mounts


def test_bind_policy_refuses_podman_mount_flags() -> None:
    spec = JobSpec.model_validate({"image": TINY, "runtime_flags": ["--volume=/etc/munge:/m"]})
    with pytest.raises(PolicyViolation, match="mounts a host path"):
        resolve(spec, SITE)
    with pytest.raises(PolicyViolation, match="/etc/munge"):
        resolve(JobSpec.model_validate({"image": TINY, "binds": ["/etc/munge:/m"]}), SITE)


def test_device_flag_without_devices_is_an_error() -> None:
    site = load_site(GOLDEN / "site.yaml")
    site.plugins["podman"] = {"gpu_devices": []}
    job = pinned({"image": TINY, "partition": "gpu", "gpus": 1}, site)
    with pytest.raises(ConfigError, match=r"plugins\.podman\.gpu_devices"):
        build_plan(job)


def _answer(digest: str) -> Any:
    def answer(call: Call) -> Completed:
        if call.argv[-3:-1] == ("--format", "{{.Digest}}"):
            return Completed(call.argv, 0, digest + "\n", "")
        return Completed(call.argv, 0, "3b1f\n", "")

    return answer


def test_prepare_image_pulls_into_podman_store_and_pins_digest() -> None:
    job = resolve(JobSpec.model_validate({"image": TINY}), SITE)
    runner = RecordingRunner(answer=_answer("sha256:" + "cd" * 32))
    out = PodmanRuntime().prepare_image(job, ImageContext(site=SITE, runner=runner))
    argvs = [c.argv for c in runner.calls]
    assert argvs[0] == ("podman", "--runtime", "runc", "pull", "-q", "--tls-verify=false",
                        "registry.lab.internal:5000/lab/tool:1.2")  # fmt: skip
    assert out.image == "registry.lab.internal:5000/lab/tool@sha256:" + "cd" * 32
    assert out.image_digest == "sha256:" + "cd" * 32 and out.image_ref == TINY
    assert not any("apptainer" in a or "build" in a for argv in argvs for a in argv)  # no SIF conversion


def test_prepare_image_pin_pulls_nothing() -> None:
    job = resolve(JobSpec.model_validate({"image": TINY}), SITE)
    runner = RecordingRunner(answer=lambda call: Completed(call.argv, 125, "", "Error: no such image"))
    out = PodmanRuntime().prepare_image(job, ImageContext(site=SITE, runner=runner, pin=True))
    assert [c.argv[3] for c in runner.calls] == ["image"]  # inspect only
    assert out.image == "registry.lab.internal:5000/lab/tool:1.2" and out.image_digest is None


def test_prepare_image_failed_pull_is_one_error() -> None:
    job = resolve(JobSpec.model_validate({"image": TINY}), SITE)
    runner = RecordingRunner(answer=lambda call: Completed(call.argv, 125, "", "Trying…\nError: pinging registry"))
    with pytest.raises(HpcjobsError, match=r"podman pull .* failed \(exit 125\): Error: pinging registry"):
        PodmanRuntime().prepare_image(job, ImageContext(site=SITE, runner=runner))


@pytest.mark.parametrize("image", ["/images/tool.sif", "library://lab/tool:1"])
def test_sif_images_refused(image: str) -> None:
    job = resolve(JobSpec.model_validate({"image": image}), SITE)
    with pytest.raises(ConfigError, match="not SIF"):
        PodmanRuntime().prepare_image(job, ImageContext(site=SITE, runner=RecordingRunner(answer=lambda c: None)))


def test_listed_by_hpcjobs_plugins() -> None:
    row = next(p for p in plugin_infos() if p.name == "podman")
    assert row.dist == "hpcjobs-podman" and row.api == HPCJOBS_PLUGIN_API and row.error is None
    assert row.provides["runtimes"] == ["podman", "docker"] and row.provides["site sections"] == ["podman", "docker"]


def test_local_run_runtime_override() -> None:
    """`hpcjobs run --local --runtime apptainer` on a Podman site: the site's GPU flag is Podman's and
    is dropped; runtime flags of the site's runtime cannot be handed to another one."""
    j = local_job(pinned({"image": TINY, "partition": "gpu", "gpus": 1}), runtime="apptainer")
    assert j.runtime == "apptainer" and j.gpu_flag is None and j.source("runtime") == "CLI (run --runtime)"
    with pytest.raises(ConfigError, match="cannot be given to docker"):
        local_job(pinned({"image": TINY, "partition": "cdi", "gpus": 1}), runtime="docker")


def test_dev_cluster_podman_site_config_validates() -> None:
    path = Path(__file__).resolve().parents[1] / "site-configs" / "dev-cluster-podman.yaml"
    site = load_site(path)
    assert site.defaults.runtime.name == "podman"
    assert site.plugin_settings("podman", PodmanSettings).gpu_devices == ["/dev/fakegpu0", "/dev/fakegpu1"]


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcjobs import plugins

    monkeypatch.setenv(plugins.DISABLE_ENV, "hpcjobs-podman")
    plugins._reset()
    try:
        names = {p.name for p in plugin_infos()}
        assert "podman" not in names and {"apptainer", "profile"} <= names
        with pytest.raises(ConfigError, match="container runtime 'podman' is not provided"):
            plugins.get_runtime("podman")
    finally:
        monkeypatch.delenv(plugins.DISABLE_ENV)
        plugins._reset()
    assert "podman" in {p.name for p in plugin_infos()}


def test_gpu_flags_listed_once() -> None:
    row = next(p for p in plugin_infos() if p.name == "podman")
    assert row.provides["gpu flags"] == ["device", "cdi", "none"]


def test_loading_the_plugin_builds_no_validator_and_starts_no_process_machinery() -> None:
    """hpcjobs loads every plugin on each render and submit: the settings' validators are built on
    first use, and subprocess is imported where a process is started (checked in a fresh interpreter
    that imports the plugin contract and pydantic first, by what exists, not by timing)."""
    import json
    import sys

    probe = (
        "import json as _j, sys, pydantic, hpcjobs.plugin_api\nbefore = set(sys.modules)\nimport hpcjobs_podman\n"
        "from hpcjobs_podman import PodmanSettings, DockerSettings\n"
        "print(_j.dumps([PodmanSettings.__pydantic_complete__, DockerSettings.__pydantic_complete__, "
        "'subprocess' in sys.modules, 'subprocess' in before]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [False, False, False, False]
    assert PodmanSettings.model_validate({"tls_verify": False}).tls_verify is False  # built on first use
