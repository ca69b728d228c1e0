"""benchmarks/hpcc.py reads hpcc's own output: checked against a recorded real hpccoutf.txt (2 ranks
in the hpcc image, run by hpcjobs on the dev cluster). Timings are the benchmark's, never here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "tests" / "fixtures" / "hpcc" / "hpccoutf-container-2ranks.txt"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hpcc_benchmark", ROOT / "benchmarks" / "hpcc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_recorded_output_parsed(bench: ModuleType) -> None:
    summary = bench.parse_hpccoutf(RECORDED.read_text())
    assert (summary["CommWorldProcs"], summary["HPL_N"], summary["HPL_NB"]) == ("2", "2000", "80")
    assert (summary["HPL_nprow"], summary["HPL_npcol"]) == ("1", "2")
    got = bench.metrics(summary)
    assert got == {"HPL Gflops": pytest.approx(1.05304), "DGEMM Gflops/rank": pytest.approx(0.797612),
                   "STREAM triad GB/s/rank": pytest.approx(11.8775)}


def test_the_last_of_appended_runs_counts(bench: ModuleType) -> None:
    text = RECORDED.read_text()
    second = text.replace("HPL_Tflops=0.00105304", "HPL_Tflops=0.002")
    assert bench.metrics(bench.parse_hpccoutf(text + second))["HPL Gflops"] == pytest.approx(2.0)


def test_incomplete_or_failed_runs_refused(bench: ModuleType) -> None:
    text = RECORDED.read_text()
    with pytest.raises(ValueError, match="no complete summary section"):
        bench.parse_hpccoutf(text.split("End of Summary section.")[0])
    with pytest.raises(ValueError, match="Success='0'"):
        bench.parse_hpccoutf(text.replace("Success=1", "Success=0"))


def test_input_file_carries_n_nb_and_the_grid(bench: ModuleType) -> None:
    lines = bench.hpccinf(3000, nb=64, p=1, q=2).splitlines()
    assert [lines[i].split()[0] for i in (5, 7, 10, 11)] == ["3000", "64", "1", "2"]
    assert lines[4].split()[0] == lines[6].split()[0] == lines[9].split()[0] == "1"  # one N, one NB, one grid
