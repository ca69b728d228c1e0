"""`import hpcjobs` and `hpcjobs --help` stay light: heavy or optional modules are imported lazily.

Checked by which modules get imported (a property that cannot flake), not by timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ["pydantic", "structlog", "pyslurm", "spython", "rich", "yaml", "hpcjobs.images", "pluggy"]


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_hpcjobs_is_light() -> None:
    mods = imported_after("import hpcjobs")
    assert not [m for m in HEAVY if m in mods]


def test_cli_help_is_light() -> None:
    code = (
        "import sys\nfrom hpcjobs.cli import main\nsys.argv=['hpcjobs','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    mods = imported_after(code)
    assert not [m for m in HEAVY if m in mods]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["render", "--help"], ["images", "--help"]])
def test_cli_entry_points_answer(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "hpcjobs", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout


def test_user_error_is_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "job.yaml").write_text("image: x.sif\n")
    r = subprocess.run(
        [sys.executable, "-m", "hpcjobs", "render", "--site", str(tmp_path / "nope.yaml"), "job.yaml"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hpcjobs: error: ") and "nope.yaml" in r.stderr


def _gc_state_during(monkeypatch: pytest.MonkeyPatch, target: str, argv: list[str]) -> list[bool]:
    """Run ``hpcjobs ARGV`` in process; record whether the cyclic GC was on when ``target`` ran."""
    import gc
    import importlib

    from hpcjobs.cli import main

    module_name, attr = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, attr)
    seen: list[bool] = []

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, attr, spy)
    assert gc.isenabled()
    main(argv)
    assert gc.isenabled(), "main must leave the collector as it found it"
    return seen


def test_render_runs_with_the_collector_paused_and_main_restores_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "job.yaml").write_text("image: /i/x.sif\ncommand: [x]\n")
    (tmp_path / "site.yaml").write_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    argv = ["render", "--site", str(tmp_path / "site.yaml"), str(tmp_path / "job.yaml")]
    assert _gc_state_during(monkeypatch, "hpcjobs.render.render", argv) == [False]


def test_other_commands_run_with_the_collector_on(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert _gc_state_during(monkeypatch, "hpcjobs.plugins.plugin_infos", ["plugins", "--json"]) == [True]


def test_submit_resumes_the_collector_before_it_waits(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gc
    from types import SimpleNamespace

    from hpcjobs.api import ContainerJob
    from hpcjobs.cli import main

    seen: dict[str, bool] = {}

    class FakeJob:
        job_id = "42"

        def wait(self, poll_s: float) -> object:
            seen["wait"] = gc.isenabled()
            return SimpleNamespace(job_id="42", state=SimpleNamespace(name="COMPLETED"), exit_code=0)

    def fake_submit(self: ContainerJob, site: object = None, overrides: object = None) -> FakeJob:
        seen["submit"] = gc.isenabled()
        return FakeJob()

    monkeypatch.setattr(ContainerJob, "submit", fake_submit)
    (tmp_path / "job.yaml").write_text("image: /i/x.sif\ncommand: [x]\n")
    main(["submit", "--wait", str(tmp_path / "job.yaml")])
    assert seen == {"submit": False, "wait": True}
    assert gc.isenabled()


def test_a_sweep_submit_runs_with_the_collector_on(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gc

    import hpcjobs.cli_sweep
    from hpcjobs.cli import main

    seen: list[bool] = []
    monkeypatch.setattr(hpcjobs.cli_sweep, "submit_sweep_file", lambda *a, **k: seen.append(gc.isenabled()))
    (tmp_path / "job.yaml").write_text("image: /i/x.sif\ncommand: [x]\nsweep:\n  points: [[a], [b]]\n")
    main(["submit", str(tmp_path / "job.yaml")])
    assert seen == [True]
    assert gc.isenabled()


LOG_PROBE = r"""
import sys
from hpcjobs import log
log.configure_cli_logging(int(sys.argv[1]))
events = log.get_logger("probe")
events.info("probe.info", n=1)
print("logging" in sys.modules, flush=True)
events.warning("probe.warning", n=2)
print("logging" in sys.modules, flush=True)
"""


@pytest.mark.parametrize(("verbosity", "stdout", "shown"), [
    (0, ["False", "True"], ["probe.warning"]),  # logging imported only for the warning
    (1, ["True", "True"], ["probe.info", "probe.warning"]),
])  # fmt: skip
def test_cli_logging_is_imported_when_something_can_be_shown(
    verbosity: int, stdout: list[str], shown: list[str]
) -> None:
    r = subprocess.run([sys.executable, "-c", LOG_PROBE, str(verbosity)], capture_output=True, text=True, check=True)
    assert r.stdout.split() == stdout
    lines = r.stderr.splitlines()
    assert all(line.startswith("hpcjobs: ") for line in lines), lines
    assert [next(w for w in ("probe.info", "probe.warning") if w in line) for line in lines] == shown


def test_a_warm_render_imports_no_logging(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "job.yaml").write_text("image: /i/x.sif\ncommand: [x]\n")
    (tmp_path / "site.yaml").write_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    code = (
        "import sys\nfrom hpcjobs.cli import main\n"
        f"sys.argv = ['hpcjobs', 'render', '--site', {str(tmp_path / 'site.yaml')!r}, {str(tmp_path / 'job.yaml')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for _ in range(2):  # cold, then warm
        probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    assert "exec apptainer run" in out
    assert "logging" not in json.loads(out.splitlines()[-1])


def test_a_plugin_that_imports_logging_gets_the_cli_handler() -> None:
    probe = (
        "import sys\nfrom hpcjobs import log, plugins\nlog.configure_cli_logging(0)\n"
        "import logging  # as a plugin module would, when the registry loads it\n"
        "plugins._reset(); plugins.plugin_manager()\n"
        "print([getattr(h, '_hpcjobs', False) for h in logging.getLogger('hpcjobs').handlers])\n"
        "logging.getLogger('hpcjobs.someplugin').warning('careful')"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[True]"
    assert r.stderr == "hpcjobs: careful\n"
