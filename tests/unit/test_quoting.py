"""Property tests: whatever the arguments, the rendered script hands them to the program byte-for-byte.

The container runtime binary is replaced by a stub that records its argv (bash runs the real
rendered script); the real-Apptainer version of this test is tests/cluster/test_core_cluster.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcjobs.config import load_site_text
from hpcjobs.errors import ConfigError
from hpcjobs.render import render, sh_join, sh_quote
from hpcjobs.resolve import resolve
from hpcjobs.runtimes.apptainer import UNCARRIABLE_ENV, container_env_value
from hpcjobs.spec import JobSpec
from tests.strategies import hostile_args, hostile_text


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("stub")
    path = d / "fake-apptainer"
    path.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """
            import json, os, sys
            with open(os.environ["ARGV_OUT"], "w", encoding="utf-8", errors="surrogateescape") as f:
                env = {k: v for k, v in os.environ.items() if k.startswith("APPTAINERENV_")}
                json.dump({"argv": sys.argv[1:], "env": env}, f)
            """
        )
    )
    path.chmod(0o755)
    return path


def _site(stub: Path) -> str:
    return f"""
name: t
default_partition: cpu
partitions:
  cpu:
    runtime: {{binary: {json.dumps(str(stub))}}}
"""


def _run_script(script: str, tmp: Path) -> dict[str, object]:
    out = tmp / "argv.json"
    if out.exists():
        out.unlink()
    env = {"PATH": os.environ["PATH"], "ARGV_OUT": str(out)}
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=hostile_args)
def test_command_arrives_byte_for_byte(stub: Path, tmp_path: Path, args: list[str]) -> None:
    site = load_site_text(_site(stub))
    job = resolve(JobSpec(image="/img/x.sif", command=args), site)
    got = _run_script(render(job), tmp_path)
    assert got["argv"] == ["run", "--no-eval", "/img/x.sif", *args]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=st.lists(hostile_text, min_size=1, max_size=3), args=hostile_args, workdir=hostile_text)
def test_entrypoint_and_workdir_arrive(
    stub: Path, tmp_path: Path, entry: list[str], args: list[str], workdir: str
) -> None:
    site = load_site_text(_site(stub))
    job = resolve(JobSpec(image="/img/x.sif", entrypoint=entry, command=args, workdir="/" + workdir), site)
    got = _run_script(render(job), tmp_path)
    assert got["argv"] == ["exec", "--pwd", "/" + workdir, "/img/x.sif", *entry, *args]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=hostile_text)
def test_env_reaches_runtime_escaped_for_apptainer(stub: Path, tmp_path: Path, value: str) -> None:
    site = load_site_text(_site(stub))
    if any(bad in value for bad in UNCARRIABLE_ENV):
        with pytest.raises(ConfigError, match="cannot carry"):
            render(resolve(JobSpec(image="/img/x.sif", env={"HOSTILE": value}), site))
        return
    job = resolve(JobSpec(image="/img/x.sif", env={"HOSTILE": value}), site)
    got = _run_script(render(job), tmp_path)
    env = got["env"]
    assert isinstance(env, dict)
    assert env["APPTAINERENV_HOSTILE"] == container_env_value(value)


@given(args=hostile_args)
def test_sh_join_round_trips_through_bash(args: list[str]) -> None:
    proc = subprocess.run(
        ["bash", "-c", 'printf "%s\\0" "$@"', "x", *args], capture_output=True, check=True
    )
    line = "set -- " + sh_join(args) + '\nprintf "%s\\0" "$@"'
    again = subprocess.run(["bash", "-c", line], capture_output=True, check=True)
    assert again.stdout == proc.stdout


@pytest.mark.parametrize("value", ["a\r\nb", "\x80", "x\x81y"])
def test_env_values_apptainer_cannot_carry_are_refused(stub: Path, value: str) -> None:
    site = load_site_text(_site(stub))
    with pytest.raises(ConfigError, match="cannot carry"):
        render(resolve(JobSpec(image="/img/x.sif", env={"V": value}), site))


def test_sh_quote_examples() -> None:
    assert sh_quote("") == "''"
    assert sh_quote("plain") == "plain"
    assert sh_quote("a b") == "'a b'"
    assert sh_quote("it's") == "'it'\"'\"'s'"


def test_comment_lines_cannot_be_escaped_from(stub: Path, tmp_path: Path) -> None:
    """Text written into # comments (site name, image reference) can't end the comment with a newline."""
    site = load_site_text(_site(stub)).model_copy(update={"name": "x\ntouch PWNED"})
    image = "/img/x\ntouch PWNED2.sif"
    script = render(resolve(JobSpec(image=image), site))
    got = _run_script(script, tmp_path)  # runs in tmp_path
    assert not list(tmp_path.glob("PWNED*"))
    assert got["argv"] == ["run", "--no-eval", image]
