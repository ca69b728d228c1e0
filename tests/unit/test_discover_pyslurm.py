"""The pyslurm data source of ``hpcjobs site discover`` gives the draft the CLI source gives.

The fake objects below carry the values real pyslurm 22.5.3 returned on the dev cluster (captured
with ``Partitions.load()`` / ``Nodes.load()`` / ``config().get()``, the same moment as the scontrol
text of test_site_discover.py); tests/cluster/test_discover_sources_cluster.py compares both
sources on the live cluster.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from hpcjobs.site import discover as disc
from hpcjobs.site.discover_pyslurm import node_records, partition_records, read_cluster
from tests.unit.test_site_discover import DEV_CONFIG, DEV_MPI, DEV_NODES, DEV_PARTITIONS


def part(name: str, default: bool) -> Any:
    return types.SimpleNamespace(
        name=name, allowed_groups=["ALL"], allowed_accounts=["ALL"], allowed_qos=["ALL"], is_default=default,
        qos=None, default_time=None, max_nodes="UNLIMITED", max_time="UNLIMITED", max_cpus_per_node="UNLIMITED",
        state="UP", total_cpus=16, total_nodes=1, max_memory_per_node="UNLIMITED",
    )  # fmt: skip


NODE = types.SimpleNamespace(name="vm", effective_cpus=16, total_cpus=16, configured_gres={"gpu": 2},
                             real_memory=24105, partitions=["cpu", "gpu"])  # fmt: skip
CONFIG = {"cluster_name": "hpcjobs-dev", "version": "22.05.8", "select_type": "select/cons_tres", "mpi_default": "none"}


def fake_module() -> Any:
    class Partitions(dict):  # type: ignore[type-arg]
        @staticmethod
        def load() -> dict[str, Any]:
            return {"cpu": part("cpu", True), "gpu": part("gpu", False)}

    class Nodes(dict):  # type: ignore[type-arg]
        @staticmethod
        def load() -> dict[str, Any]:
            return {"vm": NODE}

    class Config:
        def get(self) -> dict[str, str]:
            return CONFIG

    return types.SimpleNamespace(Partitions=Partitions, Nodes=Nodes, config=Config)


def test_same_draft_through_pyslurm_records_as_through_scontrol_text() -> None:
    mpi = disc.parse_mpi_list(DEV_MPI)
    via_cli = disc.draft_site(disc.facts_from_outputs(DEV_PARTITIONS, DEV_NODES, disc.parse_config(DEV_CONFIG), mpi))
    parts, nodes, config = read_cluster(fake_module())
    via_pyslurm = disc.draft_site(disc.facts_from_records(parts, nodes, config, mpi))
    assert via_pyslurm == via_cli
    assert "max_gpus_per_node: 2" in via_pyslurm


@pytest.mark.parametrize(("gres", "text"), [({"gpu": 2}, "gpu:2"), ({"gpu:a100": 4}, "gpu:a100:4"),
                                             ({"gpu": {"a100": 4}}, "gpu:a100:4"), ({}, "(null)")])  # fmt: skip
def test_gres_forms(gres: dict[str, Any], text: str) -> None:
    node = types.SimpleNamespace(**{**vars(NODE), "configured_gres": gres})
    (rec,) = node_records([node])
    assert rec["Gres"] == text
    assert disc.Node.from_record(rec).gpu_count == (0 if not gres else 2 if text == "gpu:2" else 4)


def test_limits_and_restrictions_map_to_scontrol_keys() -> None:
    p = types.SimpleNamespace(**{**vars(part("a100", False)), "max_nodes": 4, "max_time": 2880,
                                 "default_time": 60, "max_memory_per_node": 512000,
                                 "allowed_accounts": ["proj1", "proj2"], "qos": "gpuqos"})  # fmt: skip
    (rec,) = partition_records([p])
    facts = disc.PartitionFacts.from_record(rec, [])
    assert (facts.max_nodes, facts.max_time_min, facts.default_time_min, facts.max_mem_mb) == (4, 2880, 60, 512000)
    assert facts.restricted == ("AllowAccounts=proj1,proj2", "QoS=gpuqos")


def test_discover_falls_back_to_the_cli_when_pyslurm_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_site_discover import dev_slurm

    monkeypatch.setattr("hpcjobs.schedulers.choose_backend", lambda runner=None, prefer=None: ("pyslurm", "test"))

    def broken(module: Any = None) -> Any:
        raise AttributeError("module 'pyslurm' has no attribute 'Partitions'")

    monkeypatch.setattr("hpcjobs.site.discover_pyslurm.read_cluster", broken)
    slurm = dev_slurm()
    text = disc.discover(slurm)
    assert ("scontrol", "-o", "show", "partition") in slurm.argvs()
    assert "name: hpcjobs-dev" in text
