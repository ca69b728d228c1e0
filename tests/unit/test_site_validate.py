"""``hpcjobs site validate``: the bad-config corpus, one exact line per problem, exit 2, no traceback.

Each file in tests/unit/bad_configs/ ends with ``# expect: {file}: key.path: message`` lines: the
exact output of ``hpcjobs site validate FILE`` ({file} is the path as given). Add a case by writing
the file and its expected lines; the test says which line differs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcjobs.cli_site import site
from hpcjobs.site.validate import validate_file

HERE = Path(__file__).parent
BAD = HERE / "bad_configs"
REPO = HERE.parent.parent
GOOD = sorted((REPO / "site-configs").glob("*.yaml"))
# files that cannot carry their expectation inside
SPECIAL = {"not_utf8.yaml": ["{file}: not UTF-8 text (byte 8): is it a site config?"]}


def expected_lines(path: Path) -> list[str]:
    if path.name in SPECIAL:
        lines = SPECIAL[path.name]
    else:
        lines = [
            line.removeprefix("# expect: ")
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("# expect: ")
        ]
    assert lines, f"{path} has no '# expect: ' lines"
    return [line.replace("{file}", str(path)) for line in lines]


def run_validate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(site, ["validate", *args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


BAD_FILES = sorted(BAD.glob("*.yaml"))


def test_corpus_covers_the_issue() -> None:
    names = {p.stem for p in BAD_FILES}
    unknown_key_levels = {n for n in names if n.startswith("unknown_") and n.endswith(("_key", "_section"))}
    assert len(unknown_key_levels) >= 9  # top, partition, limits, gpu, runtime, mpi, images, policy, bind, plugins
    for needed in (
        "negative_limits",
        "default_partition_missing",
        "duplicate_bind_destination",
        "bad_gpu_flag",
        "top_level_is_a_list",
        "yaml_syntax_error",
        "limit_not_a_number",
        "not_utf8",
    ):
        assert needed in names


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_config_exact_lines_and_exit_2(path: Path) -> None:
    code, out, err = run_validate(str(path))
    assert code == 2, out + err
    assert out.splitlines() == expected_lines(path)
    assert "Traceback" not in out + err
    for line in out.splitlines():
        assert line.startswith(str(path)), line  # every line names the file


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_published_configs_are_ok(path: Path) -> None:
    code, out, err = run_validate(str(path))
    assert (code, out, err) == (0, f"{path}: ok\n", "")


def test_many_files_ok_and_bad_mixed() -> None:
    bad = BAD / "negative_limits.yaml"
    code, out, _ = run_validate(str(GOOD[0]), str(bad))
    assert code == 2
    lines = out.splitlines()
    assert lines[0] == f"{GOOD[0]}: ok"
    assert lines[1:] == expected_lines(bad)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    code, out, err = run_validate(str(tmp_path / "nope.yaml"), str(tmp_path))
    assert code == 2
    assert out.splitlines() == [
        f"{tmp_path / 'nope.yaml'}: no such file",
        f"{tmp_path}: is a directory, not a site config",
    ]
    assert err == ""


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "secret.yaml"
    f.write_text("name: x\n")
    f.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the read fail as it does for a user
        real_read_text = Path.read_text

        def denied(self: Path, *args: Any, **kwargs: Any) -> str:
            if self == f:
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", denied)
    code, out, _ = run_validate(str(f))
    assert code == 2 and out.startswith(f"{f}: cannot read site config: Permission denied")


def test_no_files_is_a_usage_error() -> None:
    code, _, err = run_validate()
    assert code == 2 and "Missing argument" in err


def test_validate_file_api_reports_without_raising() -> None:
    report = validate_file(str(BAD / "default_partition_missing.yaml"))
    assert not report.ok
    assert report.lines() == expected_lines(BAD / "default_partition_missing.yaml")
    assert validate_file(str(GOOD[0])).ok


def test_real_subprocess_module_and_entry_point() -> None:
    bad = BAD / "unknown_limits_key.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "hpcjobs.cli_site", "validate", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.splitlines() == expected_lines(bad)
    assert "Traceback" not in proc.stderr

    exe = shutil.which("hpcjobs", path=str(Path(sys.executable).parent)) or shutil.which("hpcjobs")
    assert exe is not None, "the hpcjobs console script is not installed (scripts/venv installs it)"
    proc = subprocess.run(
        [exe, "site", "validate", str(bad), str(GOOD[0])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.splitlines() == [*expected_lines(bad), f"{GOOD[0]}: ok"]
    proc = subprocess.run([exe, "site", "validate", *map(str, GOOD)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.splitlines() == [f"{g}: ok" for g in GOOD]


def test_load_site_raises_config_error_with_the_same_lines() -> None:
    from hpcjobs.config import load_site
    from hpcjobs.errors import ConfigError

    path = BAD / "negative_limits.yaml"
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert [f"{path}: {p}" for p in info.value.problems] == expected_lines(path)
