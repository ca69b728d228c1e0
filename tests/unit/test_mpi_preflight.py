"""The MPI/PMIx pre-flight without a cluster: the probe's parser on recorded outputs of real
images (Debian 12 and 13), the host parsers on recorded ``srun --mpi=list``, the table (every row
reachable, every source named), the verdicts, and what a verdict does to a job."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from hpcjobs.config import load_site_text
from hpcjobs.mpi import check as check_mod
from hpcjobs.mpi.check import MpiMismatch, preflight, verdict_for
from hpcjobs.mpi.host import MpirunInfo, SrunOffer, parse_mpi_list, parse_mpirun_version
from hpcjobs.mpi.probe import PROBE_SCRIPT, ImageMpi, parse, probe_argv, probe_image
from hpcjobs.mpi.table import CONDITIONS, ROWS, SOURCES
from hpcjobs.mpi.verdict import decide
from hpcjobs.plan import build_plan
from hpcjobs.resolve import resolve
from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.spec import JobSpec

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mpi"

SITE = load_site_text(
    """
name: t
default_partition: cpu
defaults:
  mpi: {default: pmix}
partitions:
  cpu: {}
  lax:
    mpi: {check: warn}
""",
    "test-site.yaml",
)


def fixture(name: str) -> str:
    return (FIX / name).read_text()


# ------------------------------------------------------------------------- probe: recorded images
@pytest.mark.parametrize(
    ("name", "impl", "version", "pmix", "pmix_version", "pmi2", "pmi1"),
    [
        ("bookworm-openmpi.txt", "openmpi", "4.1.4", True, "4.2.2", False, False),
        ("bookworm-mpich.txt", "mpich", "4.0.2", False, None, False, True),
        ("trixie-openmpi.txt", "openmpi", "5.0.7", True, "5.0.7", False, False),
        ("trixie-mpich.txt", "mpich", "4.2.1", False, None, True, False),
        ("busybox.txt", "none", None, None, None, None, None),
    ],
)
def test_probe_parses_recorded_images(
    name: str, impl: str, version: str | None, pmix: bool | None, pmix_version: str | None,
    pmi2: bool | None, pmi1: bool | None,
) -> None:  # fmt: skip
    if not (FIX / name).exists():
        pytest.fail(f"{FIX / name} missing: record it (docs/images.md, 'The MPI probe')")
    got = parse(fixture(name))
    assert (got.impl, got.version, got.pmix, got.pmix_version, got.pmi2, got.pmi1) == (
        impl, version, pmix, pmix_version, pmi2, pmi1,
    )  # fmt: skip


def test_probe_describes_what_it_found() -> None:
    assert parse(fixture("bookworm-openmpi.txt")).describe() == "Open MPI 4.1.4 with PMIx 4.2.2"
    assert parse(fixture("bookworm-mpich.txt")).describe() == "MPICH 4.0.2 without PMIx (PMI-1)"
    assert parse(fixture("busybox.txt")).describe() == "no MPI library"
    evidence = parse(fixture("bookworm-openmpi.txt")).evidence
    assert evidence[0] == "ompi_info: Open MPI 4.1.4" and "libmpi.so.40" in evidence and "libpmix2 4.2.2" in evidence


def _probe_text(**sections: str) -> str:
    parts = ["@@ tools\ngrep"]
    parts += [f"@@ {name}\n{body}" for name, body in sections.items()]
    return "\n".join([*parts, "@@ end"]) + "\n"


def test_probe_open_mpi_4_with_slurm_pmi_components() -> None:
    text = _probe_text(
        libs="/usr/lib64/openmpi/lib/libmpi.so.40",
        ompi_info="ompi:version:full:4.1.6\nmca:pmix:s1:version:x\nmca:pmix:s2:version:x\nmca:pmix:pmix3x:version:x",
        rpm="openmpi 4.1.6\npmix 3.2.3",
    )
    got = parse(text)
    assert (got.impl, got.version, got.pmix, got.pmix_version, got.pmi2, got.pmi1) == (
        "openmpi", "4.1.6", True, "3.2.3", True, True,
    )  # fmt: skip


def test_probe_mpich_built_with_pmix_and_mvapich_and_intel() -> None:
    mpich = parse(_probe_text(
        libs="/usr/lib/x86_64-linux-gnu/libmpich.so.12\nmark pmix /usr/lib/x86_64-linux-gnu/libmpich.so.12",
        mpichversion="MPICH Version:  4.1.2\nMPICH configure:  --with-pmix=/usr",
    ))  # fmt: skip
    assert (mpich.impl, mpich.pmix, mpich.pmi1, mpich.pmi2) == ("mpich", True, False, False)
    mv = parse(_probe_text(libs="/opt/mvapich2/lib/libmpi.so.12", mpiname="MVAPICH2 2.3.7 Wed March 02 22:00 2022"))
    assert (mv.impl, mv.version) == ("mvapich", "2.3.7")
    intel = parse(_probe_text(libs="/opt/intel/oneapi/mpi/2021.10.0/lib/libmpi.so.12",
                              mpirun="Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619"))
    assert (intel.impl, intel.version, intel.pmix, intel.speaks("pmi2")) == ("intel-mpi", "2021.10", None, None)
    abi = parse(_probe_text(libs="/usr/local/lib/libmpi.so.12"))
    assert abi.impl == "mpich-abi" and abi.pmix is False  # grep ran and found no libpmix reference


def test_probe_without_grep_leaves_pmi_unknown() -> None:
    text = "@@ tools\n@@ libs\n/usr/lib/libmpich.so.12\n@@ end\n"
    got = parse(text)
    assert got.impl == "mpich" and got.pmix is None and got.speaks("pmix") is None


def test_probe_record_round_trip_and_rejects_strangers() -> None:
    found = parse(fixture("bookworm-mpich.txt"))
    rec = json.loads(json.dumps(found.to_record()))
    assert ImageMpi.from_record(rec) == found
    assert ImageMpi.from_record({**rec, "schema": 99}) is None
    assert ImageMpi.from_record("openmpi") is None and ImageMpi.from_record(None) is None
    assert ImageMpi.from_record({**rec, "pmix": "yes"}).pmix is None  # type: ignore[union-attr]


@pytest.mark.parametrize("image", ["/data/a b.sif", "/tmp/x'; echo pwned #.sif", "/tmp/$(id).sif", "/t/\nl.sif"])
def test_probe_argv_keeps_the_image_one_word_and_the_script_constant(image: str) -> None:
    argv = probe_argv("apptainer", image)
    assert argv == ["apptainer", "exec", "--contain", "--cleanenv", image, "/bin/sh", "-c", PROBE_SCRIPT]
    runner = RecordingRunner(answer=lambda call: Completed(call.argv, 0, fixture("busybox.txt"), ""))
    assert probe_image(runner, "apptainer", image).impl == "none"
    assert runner.calls[0].argv[4] == image and runner.calls[0].argv[7] == PROBE_SCRIPT


def test_failed_probe_is_unknown_never_an_exception() -> None:
    runner = RecordingRunner(answer=lambda call: Completed(call.argv, 255, "", "FATAL: no /bin/sh in image"))
    got = probe_image(runner, "apptainer", "/x.sif")
    assert got.impl == "unknown" and "no /bin/sh" in (got.error or "") and got.has_mpi is None


# ------------------------------------------------------------------------------------- host side
def test_srun_mpi_list_recorded_on_both_slurm_versions() -> None:
    for name in ("srun-mpi-list-22.05.txt", "srun-mpi-list-24.11.txt"):
        if not (FIX / name).exists():
            pytest.fail(f"{FIX / name} missing")
        offer = parse_mpi_list(fixture(name))
        assert offer.offers("pmix") and offer.offers("pmi2") and offer.offers("none"), name
        assert offer.pmix_major in (4, 5), name
    assert parse_mpi_list(fixture("srun-mpi-list-22.05.txt")).pmix_major == 4
    assert parse_mpi_list("srun: error: something").error is not None


def test_mpirun_version_parsing() -> None:
    assert parse_mpirun_version("mpirun", "mpirun (Open MPI) 5.0.7\n\nReport bugs to ...") == MpirunInfo(
        "mpirun", "openmpi", "5.0.7")  # fmt: skip
    hydra = parse_mpirun_version("mpirun", "HYDRA build details:\n    Version:                                 4.0.2\n")
    assert (hydra.impl, hydra.version) == ("mpich", "4.0.2")
    intel = parse_mpirun_version("mpirun", "Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 2023")
    assert (intel.impl, intel.version) == ("intel-mpi", "2021.10")


# ------------------------------------------------------------------------------------------ table
OMPI4 = parse(fixture("bookworm-openmpi.txt"))
MPICH = parse(fixture("bookworm-mpich.txt"))
NONE = ImageMpi("none")
UNKNOWN = ImageMpi("unknown", error="the image is not converted yet")
INTEL = ImageMpi("intel-mpi", "2021.10")
OLD_PMIX = replace(OMPI4, pmix_version="1.2.5")
SRUN = SrunOffer(("pmix", "none", "pmi2", "cray_shasta"), (4,))
SRUN_NO_PMIX = SrunOffer(("none", "pmi2"), ())
SRUN_FAILED = SrunOffer(error="srun: command not found")
HOST_OMPI4 = MpirunInfo("mpirun", "openmpi", "4.1.4")
HOST_OMPI41 = MpirunInfo("mpirun", "openmpi", "4.0.3")
HOST_OMPI5 = MpirunInfo("mpirun", "openmpi", "5.0.7")
HOST_NONE = MpirunInfo("mpirun", error="not found on this host's PATH")

# (launch, image, host) → (level, condition, words the line must hold)
CASES = [
    ("srun:pmix", OMPI4, SRUN, "ok", "speaks", ["Open MPI 4.1.4 with PMIx 4.2.2", "PMIx v4"]),
    ("srun:pmix", MPICH, SRUN, "refuse", "lacks", ["MPICH 4.0.2 without PMIx", "2 singletons", "use mpi: pmi2"]),
    ("srun:pmi2", MPICH, SRUN, "ok", "speaks", ["MPICH 4.0.2"]),
    ("srun:pmi2", OMPI4, SRUN, "refuse", "lacks", ["neither PMI-1 nor PMI-2", "use mpi: pmix"]),
    ("srun:pmix", NONE, SRUN, "refuse", "no-mpi", ["no MPI library", "use mpi: none"]),
    ("srun:pmix", UNKNOWN, SRUN, "warn", "unknown", ["not converted yet"]),
    ("srun:pmix", INTEL, SRUN, "warn", "unsure", ["Intel MPI 2021.10", "try mpi: pmi2"]),
    ("srun:pmix", OLD_PMIX, SRUN, "warn", "pmix-old", ["PMIx 1.2.5", "2.1.1"]),
    ("srun:pmix", MPICH, SRUN_NO_PMIX, "refuse", "host-lacks", ["no --mpi=pmix", "use mpi: pmi2"]),
    ("srun:pmi2", OMPI4, SrunOffer(("pmix", "none"), (4,)), "refuse", "host-lacks", ["no --mpi=pmi2", "use mpi: pmix"]),
    ("srun:pmix", OMPI4, SRUN_FAILED, "warn", "host-unknown", ["srun --mpi=list failed"]),
    ("srun:none", NONE, SRUN, "ok", "no-mpi", ["2 independent tasks"]),
    ("srun:none", UNKNOWN, SRUN, "ok", "unknown", ["without PMI"]),
    ("srun:none", OMPI4, SRUN, "warn", "has-mpi", ["singleton", "use mpi: pmix"]),
    ("mpirun", OMPI4, HOST_OMPI4, "ok", "same-minor", ["host mpirun is Open MPI 4.1.4"]),
    ("mpirun", OMPI4, HOST_OMPI41, "warn", "same-major", ["another minor"]),
    ("mpirun", OMPI4, HOST_OMPI5, "refuse", "other-major", ["Open MPI 5.0.7", "or mpi: pmix"]),
    ("mpirun", MPICH, HOST_OMPI4, "refuse", "other-impl", ["MPICH 4.0.2", "or mpi: pmi2"]),
    ("mpirun", OMPI4, HOST_NONE, "warn", "not-found", ["not found"]),
    ("mpirun", NONE, HOST_OMPI4, "refuse", "no-mpi", ["the host's mpirun would start 2 unconnected copies"]),
]


@pytest.mark.parametrize(("launch", "image", "host", "level", "condition", "words"), CASES)
def test_verdicts(launch: str, image: ImageMpi, host: SrunOffer | MpirunInfo, level: str, condition: str,
                  words: list[str]) -> None:  # fmt: skip
    v = decide(launch, image, host, 2)
    assert (v.level, v.condition) == (level, condition), v.line
    for w in words:
        assert w in v.line, (w, v.line)
    assert "\n" not in v.line and "{" not in v.line


def test_every_row_is_reached_and_cites_known_sources() -> None:
    reached = {(decide(launch, image, host, 2).condition, launch) for launch, image, host, *_ in CASES}
    for row in ROWS:
        assert row.image in CONDITIONS, row
        assert set(row.sources) <= set(SOURCES), row
        assert any(cond == row.image and row.launch in ("*", launch) for cond, launch in reached), row


# ------------------------------------------------------------------------------ what a verdict does
def _runner(probe: str, mpi_list: str = "srun-mpi-list-22.05.txt") -> RecordingRunner:
    def answer(call: Call) -> Completed:
        if call.argv[:2] == ("srun", "--mpi=list"):
            return Completed(call.argv, 0, "", fixture(mpi_list))
        if call.argv[1] == "exec":
            return Completed(call.argv, 0, fixture(probe), "")
        raise AssertionError(f"unexpected {call.argv}")

    return RecordingRunner(answer=answer)


@pytest.fixture
def sif(tmp_path: Path) -> str:
    path = tmp_path / "img.sif"
    path.write_bytes(b"SIF")
    return str(path)


def test_refusal_is_one_line_naming_both_sides_and_the_fix(sif: str) -> None:
    job = resolve(JobSpec(image=sif, ntasks=2), SITE)
    with pytest.raises(MpiMismatch) as exc:
        preflight(job, SITE, _runner("bookworm-mpich.txt"))
    msg = str(exc.value)
    assert "\n" not in msg and "MPICH 4.0.2 without PMIx" in msg and "use mpi: pmi2" in msg
    assert "mpi_check: warn" in msg


def test_ok_verdict_is_in_the_script_header(sif: str) -> None:
    job = preflight(resolve(JobSpec(image=sif, ntasks=2), SITE), SITE, _runner("bookworm-openmpi.txt"))
    assert job.preflight == ("MPI check: ok: image has Open MPI 4.1.4 with PMIx 4.2.2; srun offers "
                             "--mpi=pmix,none,pmi2 (pmix plugin for PMIx v4)",)  # fmt: skip
    assert build_plan(job).comments[-1] == job.preflight[0]


def test_escape_hatch_from_partition_and_job(sif: str) -> None:
    lax = resolve(JobSpec(image=sif, ntasks=2, partition="lax"), SITE)
    assert (lax.mpi_check, lax.source("mpi_check")) == ("warn", "partition lax")
    job = preflight(lax, SITE, _runner("bookworm-mpich.txt"))
    assert job.preflight[0].startswith("MPI check: refuse: image has MPICH")
    assert job.preflight[0].endswith("(mpi_check: warn from partition lax: submitted anyway)")
    off = resolve(JobSpec(image=sif, ntasks=2, mpi_check="off"), SITE)
    runner = _runner("bookworm-mpich.txt")
    assert preflight(off, SITE, runner).preflight == ("MPI check: off (mpi_check: job spec)",)
    assert runner.calls == []  # off: nothing probed or asked
    strict = resolve(JobSpec(image=sif, ntasks=2, partition="lax"), SITE, {"mpi_check": "refuse"})
    with pytest.raises(MpiMismatch):
        preflight(strict, SITE, _runner("bookworm-mpich.txt"))


def test_single_task_and_plugin_launchers_are_not_checked(sif: str) -> None:
    runner = _runner("bookworm-mpich.txt")
    single = resolve(JobSpec(image=sif), SITE)
    assert preflight(single, SITE, runner) == single and runner.calls == []
    assert verdict_for(replace(single, ntasks=2, mpi="some-plugin-kind"), SITE, runner) is None


def test_render_explain_does_not_raise(sif: str) -> None:
    job = resolve(JobSpec(image=sif, ntasks=2), SITE)
    shown = preflight(job, SITE, _runner("bookworm-mpich.txt"), refuse=False)
    assert shown.preflight[0].startswith("MPI check: refuse: ")
    assert shown.preflight[0].endswith("(mpi_check: refuse from built-in default: submit refuses this job)")


def test_probe_result_kept_only_in_a_private_file(sif: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIF used in place is probed once; the result is read back only from a file the user owns
    and nobody else can write."""
    from hpcjobs.mpi import record

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("hpcjobs.sweep.limitcache.asks_this_host", lambda runner: True)
    job = resolve(JobSpec(image=sif, ntasks=2), SITE)
    first = _runner("bookworm-openmpi.txt")
    assert record.image_mpi(job, SITE, first).impl == "openmpi" and len(first.calls) == 1
    kept = list((tmp_path / "xdg" / "hpcjobs" / "mpi").glob("image-*.json"))
    assert len(kept) == 1
    again = _runner("bookworm-mpich.txt")
    assert record.image_mpi(job, SITE, again).impl == "openmpi" and again.calls == []
    os.chmod(kept[0], 0o666)  # writable by others: planted or tampered with, never trusted
    third = _runner("bookworm-mpich.txt")
    assert record.image_mpi(job, SITE, third).impl == "mpich" and len(third.calls) == 1


def test_check_module_logs_warnings_under_its_own_event(sif: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(check_mod.log, "warning", lambda event, **fields: seen.append((event, fields)))
    job = resolve(JobSpec(image=sif, ntasks=2, mpi="none"), SITE)
    preflight(job, SITE, _runner("bookworm-openmpi.txt"))
    assert seen and seen[0][0] == "mpi.check" and seen[0][1]["verdict"] == "warn"


def test_admin_guide_prints_the_table_as_it_is() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "admin-guide.md").read_text()
    for row in ROWS:
        line = f"| `{row.launch}` | `{row.image}` | {row.level} | {CONDITIONS[row.image]} | {', '.join(row.sources)} |"
        assert line in text, f"docs/admin-guide.md lacks the row {line}"
    for key, url in SOURCES.items():
        assert key in text and url in text
