"""``hpcjobs render --explain``: golden scripts, and properties every explained script has.

Regenerate the goldens after an intended change with:
    HPCJOBS_REGEN_GOLDEN=1 pytest tests/unit/test_site_explain.py
The hpcjobs version in the header is written as VERSION, so releases do not move the goldens.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hpcjobs._version import __version__
from hpcjobs.config import load_site
from hpcjobs.render import render
from hpcjobs.resolve import ResolvedJob, resolve
from hpcjobs.spec import JobSpec
from tests.shellcheck import assert_shellcheck_clean

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "explain"
SITE = load_site(GOLDEN / "site.yaml")
REGEN = "HPCJOBS_REGEN_GOLDEN=1 pytest tests/unit/test_site_explain.py"
JOB_DIR = "/home/user/project"  # where the explained job would be submitted from

# name → (job fields, CLI overrides)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "cpu_defaults": ({"image": "/images/tool.sif"}, {}),
    "gpu_auto_partition": ({"image": "/images/cuda.sif", "gpus": 1, "command": ["nvidia-smi", "-L"]}, {}),
    "a100_mpi_cleanenv": (
        {"image": "/images/train.sif", "partition": "a100", "gpus": 8, "nodes": 2, "ntasks": 16,
         "cpus_per_task": 4, "mem_gb": 64, "account": "proj-42", "extra_sbatch": ["--constraint=nvlink"],
         "runtime_flags": ["--no-home"], "env": {"SHARED": "from job"},
         "command": ["python", "train.py", "--lr", "0.1"]},
        {},
    ),
    "mpirun_site_binary": (
        {"image": "/images/mpi.sif", "partition": "a100", "ntasks": 4, "mpi": "mpirun",
         "entrypoint": ["/usr/local/bin/mpi_hello"]},
        {},
    ),
    "cli_overrides": (
        {"image": "docker://registry.example.org/lab/tool:1.2", "time_min": 20, "command": ["run", "it"]},
        {"time_min": 45, "qos": "debug", "binds": ["/data:/data:ro"], "env": {"MODE": "cli"},
         "array": "0-3%2",
         "workdir": "/data"},
    ),
    "workdir_on_bind": (
        {"image": "/images/tool.sif", "binds": ["/scratch/me/run 1:/data", "results:/data/out"],
         "workdir": "/data/out/today", "output": "/var/log/jobs/%x-%j.log", "command": ["simulate"]},
        {},
    ),
    "legacy_singularity": (
        {"image": "/images/old.sif", "partition": "legacy", "name": "old job", "output": "logs/%x-%j.out",
         "entrypoint": ["/bin/sh", "-c", "echo $HOME; ls 'a b'"]},
        {},
    ),
    "launcher_options": (
        {"image": "/images/mpi.sif", "partition": "bound", "ntasks": 2, "entrypoint": ["mpi_hello"],
         "launcher_options": {"srun": ["--cpu_bind=map_cpu:1,0", "--comment=it's; echo $HOME"]}},
        {"launcher_options": {"srun": ["-mcyclic"]}},
    ),
    "launcher_options_single_task": (
        {"image": "/images/tool.sif", "partition": "bound", "command": ["run"]},
        {},
    ),
}  # fmt: skip


def explained(case: str) -> tuple[str, str, ResolvedJob]:
    fields, cli = CASES[case]
    job = resolve(JobSpec.model_validate(fields), SITE, cli)
    return render(job, explain=True, job_dir=JOB_DIR), render(job), job


def normalised(script: str) -> str:
    return script.replace(f"hpcjobs {__version__} ", "hpcjobs VERSION ")


@pytest.mark.parametrize("case", sorted(CASES))
def test_explain_golden(case: str) -> None:
    script = normalised(explained(case)[0])
    path = GOLDEN / f"{case}.sh"
    if os.environ.get("HPCJOBS_REGEN_GOLDEN") == "1":
        path.write_text(script)
    assert path.exists(), f"missing {path}; create it with: {REGEN}"
    assert script == path.read_text(), (
        f"--explain output for {case!r} differs from {path}.\nIf the change is intended, regenerate with: {REGEN}"
    )


def test_no_stale_goldens() -> None:
    assert {p.stem for p in GOLDEN.glob("*.sh")} == set(CASES), f"remove goldens without a case, or run {REGEN}"


SOURCE = re.compile(
    r"^(job spec|CLI override \(--set\)|partition [\w.+-]+|site defaults|built-in default|derived from image"
    r"|site default_partition|site gpu_partition \(GPU job\))"
)


def _only_added_comments(explained_text: str, plain: str) -> None:
    """The explained script is the plain one plus comments: same commands, same order."""
    plain_lines = plain.splitlines()
    i = 0
    for line in explained_text.splitlines():
        if i < len(plain_lines) and (line == plain_lines[i] or line.startswith(plain_lines[i] + "  # <- ")):
            i += 1
        else:
            assert line.startswith("#") and not line.startswith("#SBATCH"), f"explain added a command: {line!r}"
    assert i == len(plain_lines), f"plain line missing from --explain: {plain_lines[i]!r}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_explain_only_adds_comments(case: str) -> None:
    text, plain, _ = explained(case)
    _only_added_comments(text, plain)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_directive_and_export_has_a_source(case: str) -> None:
    text, _, _ = explained(case)
    lines = text.splitlines()
    for line in lines:
        if line.startswith(("#SBATCH ", "export ")) and not line.startswith("export -f "):
            assert "  # <- " in line, line
            src = line.split("  # <- ", 1)[1]
            if line.startswith("#SBATCH --gpus") or line.startswith("#SBATCH --gres"):
                assert re.match(r"^gpus: ", src), line
                for part in src.split("; "):
                    assert SOURCE.match(part.split(": ", 1)[1]), line
            else:
                assert SOURCE.match(src), line


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_word_of_the_command_is_explained(case: str) -> None:
    import shlex

    text, _, job = explained(case)
    lines = text.splitlines()
    start = lines.index("# The command, word by word (<- where each part came from):")
    rows = lines[start + 1 : -1]
    assert rows and all(r.startswith("#   ") and "  <- " in r for r in rows)
    words = [w for r in rows for w in shlex.split(r[4:].split("  <- ", 1)[0])]
    assert words == shlex.split(lines[-1].removeprefix("exec "))
    for r in rows:
        why = r.split("  <- ", 1)[1]
        assert "None" not in why and why.strip(), r
    if job.runtime_flags:  # each runtime flag names its layer
        flag_rows = [r for r in rows if "runtime flag: " in r]
        assert len(flag_rows) == len(job.runtime_flags)


def test_sources_in_the_a100_case() -> None:
    text, _, _ = explained("a100_mpi_cleanenv")
    expect = [
        "#SBATCH --partition=a100  # <- job spec",
        "#SBATCH --gres=gpu:a100:8  # <- gpus: job spec; --gres: partition a100; type a100: partition a100",
        "#SBATCH --time=30  # <- site defaults",
        "#SBATCH --mail-type=FAIL  # <- site defaults (sbatch)",
        "#SBATCH --exclusive  # <- partition a100 (sbatch)",
        "#SBATCH --constraint=nvlink  # <- job spec (extra_sbatch)",
        "export PMIX_MCA_gds=hash  # <- site defaults (mpi.env: 16 tasks)",
        "export APPTAINERENV_SHARED='from job'  # <- job spec (env)",
    ]
    for line in expect:
        assert line in text.splitlines(), line
    assert re.search(r"^#   --bind /scratch/a100:/software:ro +<- bind: partition a100$", text, re.M)
    assert re.search(r"^#   --writable-tmpfs +<- runtime flag: site defaults$", text, re.M)
    assert re.search(r"^#   --nvccli-extra +<- runtime flag: partition a100$", text, re.M)
    assert re.search(r"^#   --no-home +<- runtime flag: job spec$", text, re.M)
    assert re.search(r"^#   --cleanenv +<- cleanenv: partition a100$", text, re.M)


def test_cli_overrides_are_labelled() -> None:
    text, _, _ = explained("cli_overrides")
    assert "#SBATCH --time=45  # <- CLI override (--set)" in text
    assert "#SBATCH --qos=debug  # <- CLI override (--set)" in text
    assert "#SBATCH --array=0-3%2  # <- CLI override (--set)" in text
    assert "export APPTAINERENV_MODE=cli  # <- CLI override (--set) (env)" in text
    assert re.search(r"^#   --bind /data:/data:ro +<- bind: CLI override \(--set\)$", text, re.M)
    assert re.search(r"^#   --pwd /data +<- workdir: CLI override \(--set\)$", text, re.M)


def test_converted_image_and_dependency() -> None:
    _, _, job = explained("cpu_defaults")
    job = dataclasses.replace(job, image="/cache/sha256-abc.sif", image_digest="sha256:abc", dependency="afterok:41")
    text = render(job, explain=True)
    assert "#SBATCH --dependency=afterok:41  # <- image conversion job (images.convert_on: slurm)" in text
    assert re.search(r"^#   /cache/sha256-abc.sif +<- image \(converted, cached SIF\): job spec$", text, re.M)
    _only_added_comments(text, render(job))


@pytest.mark.parametrize("case", sorted(CASES))
def test_explained_scripts_are_valid_bash(case: str, tmp_path: Path) -> None:
    text, _, _ = explained(case)
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    f = tmp_path / "s.sh"
    f.write_text(text)
    assert_shellcheck_clean([f])
