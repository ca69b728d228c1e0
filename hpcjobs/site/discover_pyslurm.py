"""The pyslurm data source of ``hpcjobs site discover``: partitions, nodes and config read in-process.

It returns the same ``Key=Value`` records ``scontrol -o show partition|node`` and ``scontrol show
config`` give (the keys :mod:`hpcjobs.site.discover` reads), so both sources go through one model
and one draft writer and give the same draft (tested on the dev cluster both ways). MPI plugins
still come from ``srun --mpi=list``: pyslurm has no call for them.

Used when the scheduler selection (:func:`hpcjobs.schedulers.get_scheduler`: ``HPCJOBS_SCHEDULER``,
else a usable pyslurm matching Slurm) picks pyslurm; when any call this needs is missing or fails,
discover says why at ``-v`` and reads the cluster through the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Records = list[dict[str, str]]


def _text(value: Any, none: str = "N/A") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value) if value else none
    return str(value)


def _gres(value: Any) -> str:
    """pyslurm's ``configured_gres`` ({"gpu": 2}, {"gpu:a100": 4}, {"gpu": {"a100": 4}}) → ``gpu:2``."""
    if not value:
        return "(null)"
    if isinstance(value, str):
        return value
    items: list[str] = []
    for name, count in dict(value).items():
        if isinstance(count, Mapping):
            items += [f"{name}:{typ}:{n}" for typ, n in count.items()]
        else:
            items.append(f"{name}:{count}")
    return ",".join(items)


def partition_records(partitions: Iterable[Any]) -> Records:
    out: Records = []
    for p in partitions:
        out.append({
            "PartitionName": str(p.name),
            "AllowGroups": _text(p.allowed_groups, "ALL"),
            "AllowAccounts": _text(p.allowed_accounts, "ALL"),
            "AllowQos": _text(p.allowed_qos, "ALL"),
            "Default": _text(bool(p.is_default)),
            "QoS": _text(p.qos),
            "DefaultTime": _text(p.default_time, "NONE"),
            "MaxNodes": _text(p.max_nodes, "UNLIMITED"),
            "MaxTime": _text(p.max_time, "UNLIMITED"),
            "MaxCPUsPerNode": _text(p.max_cpus_per_node, "UNLIMITED"),
            "State": _text(p.state, "UP"),
            "TotalCPUs": _text(p.total_cpus, "0"),
            "TotalNodes": _text(p.total_nodes, "0"),
            "MaxMemPerNode": _text(p.max_memory_per_node, "UNLIMITED"),
        })  # fmt: skip
    return out


def node_records(nodes: Iterable[Any]) -> Records:
    out: Records = []
    for n in nodes:
        out.append({
            "NodeName": str(n.name),
            "CPUEfctv": _text(n.effective_cpus, "0"),
            "CPUTot": _text(n.total_cpus, "0"),
            "Gres": _gres(n.configured_gres),
            "RealMemory": _text(n.real_memory, "0"),
            "Partitions": _text(n.partitions, "(null)"),
        })  # fmt: skip
    return out


def config_record(config: Mapping[str, Any]) -> dict[str, str]:
    keys = {"ClusterName": "cluster_name", "SLURM_VERSION": "version", "SelectType": "select_type"}
    return {key: str(config[name]) for key, name in keys.items() if config.get(name) not in (None, "")}


def _values(collection: Any) -> list[Any]:
    """``Partitions.load()``/``Nodes.load()``: name → object, or (>= 23.2) cluster → {name → object}."""
    out: list[Any] = []
    for value in collection.values():
        if hasattr(value, "values") and not hasattr(value, "name"):
            out.extend(value.values())
        else:
            out.append(value)
    return out


def read_cluster(module: Any = None) -> tuple[Records, Records, dict[str, str]]:
    """(partition records, node records, config) through pyslurm. Raises on anything missing."""
    if module is None:
        import importlib

        module = importlib.import_module("pyslurm")
    partitions = partition_records(_values(module.Partitions.load()))
    nodes = node_records(_values(module.Nodes.load()))
    config = config_record(_load_config(module))
    return partitions, nodes, config


def _load_config(module: Any) -> Mapping[str, Any]:
    legacy = getattr(module, "config", None)  # 22.5: pyslurm.config().get()
    if legacy is not None and hasattr(legacy, "get"):
        got: Mapping[str, Any] = legacy().get()
        return got
    new = module.slurmctld.Config.load()  # >= 23.x
    return {"cluster_name": getattr(new, "cluster", None), "version": getattr(new, "version", None),
            "select_type": getattr(new, "select_type", None)}  # fmt: skip


__all__ = ["config_record", "node_records", "partition_records", "read_cluster"]
