"""``hpcjobs site discover``: a draft site config from the live cluster, through the Slurm CLI.

Reads ``scontrol -o show partition``, ``scontrol -o show node``, ``scontrol show config`` and
``srun --mpi=list`` (all through the injected :class:`~hpcjobs.runner.Runner`) and writes a
commented YAML draft that validates. It describes what the *hardware and Slurm* allow; policy
(binds, defaults, account rules, tighter limits) is the admin's to add.

How limits are derived (per partition, over the nodes that list the partition):

* ``max_nodes``: the partition's MaxNodes, else its node count.
* ``max_cpus_per_task``: the most CPUs of any node (CPUEfctv, else CPUTot), capped by MaxCPUsPerNode.
* ``max_ntasks``: the partition's CPUs (TotalCPUs), or fewer when MaxNodes caps the nodes.
* ``max_mem_gb``: MaxMemPerNode, else the largest node's RealMemory (MB / 1024, rounded down).
* ``max_time_min``: MaxTime (rounded down to minutes); left out when UNLIMITED.
* ``max_gpus_per_node``: the most ``gpu`` gres of any node; 0 when the nodes have none. A
  partition whose *name* says CPU (a ``cpu`` word: ``cpu``, ``cpu-long``, ``short_cpu``) and whose
  GPU nodes are also in a partition that is not CPU-named gets 0, with a comment: Slurm would
  hand out those GPUs there too, but a CPU partition on GPU nodes exists to keep GPU jobs off it
  (the dev cluster's ``cpu`` and ``gpu`` share one node with ``gpu:2``). Set the number to allow
  GPU jobs there.

GPU partitions get ``gpu.flag: nv`` (``rocm`` when the gres type names an AMD GPU, e.g. mi250),
``gpu.request: gpus`` with ``select/cons_tres`` (else ``gres``), and ``gpu.type`` when all the
partition's GPUs share one type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpcjobs.errors import SchedulerError

if TYPE_CHECKING:
    from hpcjobs.runner import Runner

TIMEOUT_S = 30.0
_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_]*)=")
_UNLIMITED = frozenset({"UNLIMITED", "INFINITE", "NONE", "N/A", "(null)", ""})
_AMD_TYPE = re.compile(r"^(mi\d|gfx|amd|radeon|instinct)", re.IGNORECASE)
_MPI_PREFERENCE = ("pmix", "pmi2")


# ---------------------------------------------------------------------------------------- parsing


def parse_records(text: str) -> list[dict[str, str]]:
    """``scontrol -o show …`` output: one record per line, ``Key=Value`` pairs; values may hold
    spaces (``OS=Linux 6.1 #1 SMP``, ``Reason=Not responding``), so a value runs to the next key."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        matches = list(_KEY.finditer(line))
        if not matches:
            continue
        rec: dict[str, str] = {}
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
            rec[m.group(1)] = line[m.end() : end].strip()
        records.append(rec)
    return records


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config``: ``Key = Value`` lines."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out.setdefault(key.strip(), value.strip())
    return out


def parse_gres(text: str) -> dict[str | None, int]:
    """GPU counts by type from a node's ``Gres`` (``gpu:2``, ``gpu:a100:4(S:0-1),mps:200``)."""
    out: dict[str | None, int] = {}
    if text in _UNLIMITED:
        return out
    for item in _split_outside_parens(text):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = _int(parts[-1])
        if count is None:
            continue
        typ = parts[1] if len(parts) >= 3 and parts[1] not in ("no_consume",) else None
        out[typ] = out.get(typ, 0) + count
    return out


def parse_time_min(text: str) -> int | None:
    """Slurm time (``UNLIMITED``, ``30``, ``2:00:00``, ``1-00:00:00``, ``2-12``) in whole minutes."""
    if text.upper() in _UNLIMITED:
        return None
    days = 0
    rest = text
    if "-" in text:
        d, rest = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in rest.split(":")] + [0] * 3
        hours, minutes, seconds = parts[0], parts[1], parts[2]
    else:
        nums = [int(p) for p in rest.split(":")]
        if len(nums) == 1:
            hours, minutes, seconds = 0, nums[0], 0
        elif len(nums) == 2:
            hours, minutes, seconds = 0, nums[0], nums[1]
        else:
            hours, minutes, seconds = nums[0], nums[1], nums[2]
    return (days * 24 + hours) * 60 + minutes + seconds // 60


def parse_mpi_list(text: str) -> list[str]:
    """``srun --mpi=list`` (22.05: one plugin per indented line; newer: ``MPI plugin types are...``)."""
    found: list[str] = []
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):
            found += [w.strip(",") for w in line.split()]
        elif line.startswith("srun: ") and line[6:].strip() and " " not in line[6:].strip():
            found.append(line[6:].strip())  # older releases: "srun: pmix" lines
    return [w for w in found if re.fullmatch(r"[a-z0-9_]+", w)]


def _split_outside_parens(text: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return [*items, cur] if cur else items


def _int(text: str | None) -> int | None:
    if text is None or text.upper() in _UNLIMITED:
        return None
    m = re.match(r"^(\d+)", text)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: Mapping[str | None, int]
    partitions: tuple[str, ...]

    @property
    def gpu_count(self) -> int:
        return sum(self.gpus.values())

    @classmethod
    def from_record(cls, rec: Mapping[str, str]) -> Node:
        cpus = _int(rec.get("CPUEfctv")) or _int(rec.get("CPUTot")) or 0
        parts = rec.get("Partitions", "")
        return cls(
            name=rec.get("NodeName", "?"),
            cpus=cpus,
            memory_mb=_int(rec.get("RealMemory")) or 0,
            gpus=parse_gres(rec.get("Gres", "")),
            partitions=tuple(p for p in parts.split(",") if p and parts not in _UNLIMITED),
        )


@dataclass(frozen=True)
class PartitionFacts:
    name: str
    default: bool
    state: str
    nodes: tuple[Node, ...]
    total_nodes: int
    total_cpus: int
    max_nodes: int | None
    max_time_min: int | None
    default_time_min: int | None
    max_mem_mb: int | None
    max_cpus_per_node: int | None
    restricted: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, rec: Mapping[str, str], nodes: Sequence[Node]) -> PartitionFacts:
        name = rec.get("PartitionName", "?")
        members = tuple(n for n in nodes if name in n.partitions)
        restricted = tuple(
            f"{key}={rec[key]}" for key in ("AllowAccounts", "AllowGroups", "AllowQos", "QoS")
            if rec.get(key) not in (None, "ALL", "N/A")
        )  # fmt: skip
        return cls(
            name=name,
            default=rec.get("Default", "NO").upper() == "YES",
            state=rec.get("State", "UP"),
            nodes=members,
            total_nodes=_int(rec.get("TotalNodes")) or len(members),
            total_cpus=_int(rec.get("TotalCPUs")) or sum(n.cpus for n in members),
            max_nodes=_int(rec.get("MaxNodes")),
            max_time_min=parse_time_min(rec.get("MaxTime", "UNLIMITED")),
            default_time_min=parse_time_min(rec.get("DefaultTime", "NONE")),
            max_mem_mb=_int(rec.get("MaxMemPerNode")),
            max_cpus_per_node=_int(rec.get("MaxCPUsPerNode")),
            restricted=restricted,
        )

    @property
    def max_gpus(self) -> int:
        return max((n.gpu_count for n in self.nodes), default=0)

    @property
    def gpu_types(self) -> set[str | None]:
        return {t for n in self.nodes for t, c in n.gpus.items() if c > 0}

    @property
    def cpu_named(self) -> bool:
        return any(w.startswith("cpu") for w in re.split(r"[^a-z0-9]+", self.name.lower()))


@dataclass(frozen=True)
class ClusterFacts:
    name: str
    slurm_version: str | None
    cons_tres: bool
    mpi_plugins: tuple[str, ...]
    partitions: tuple[PartitionFacts, ...]
    notes: tuple[str, ...] = field(default=())


def gather(runner: Runner) -> ClusterFacts:
    """Ask Slurm. Partitions and nodes are required; config and MPI plugins are best effort.
    Through pyslurm when the scheduler selection picks it (same records: discover_pyslurm.py)."""
    from_pyslurm = _pyslurm_records(runner)
    if from_pyslurm is not None:
        mpi_out = _ask(runner, ["srun", "--mpi=list"], required=False)
        return facts_from_records(*from_pyslurm, parse_mpi_list(mpi_out))
    parts_out = _ask(runner, ["scontrol", "-o", "show", "partition"], required=True)
    nodes_out = _ask(runner, ["scontrol", "-o", "show", "node"], required=True)
    config = parse_config(_ask(runner, ["scontrol", "show", "config"], required=False))
    mpi_out = _ask(runner, ["srun", "--mpi=list"], required=False)
    return facts_from_outputs(parts_out, nodes_out, config, parse_mpi_list(mpi_out))


def facts_from_outputs(
    partitions_text: str, nodes_text: str, config: Mapping[str, str], mpi_plugins: Sequence[str]
) -> ClusterFacts:
    return facts_from_records(parse_records(partitions_text), parse_records(nodes_text), config, mpi_plugins)


def facts_from_records(
    partition_records: Sequence[Mapping[str, str]], node_records: Sequence[Mapping[str, str]],
    config: Mapping[str, str], mpi_plugins: Sequence[str],
) -> ClusterFacts:  # fmt: skip
    nodes = [Node.from_record(r) for r in node_records if "NodeName" in r]
    parts = tuple(PartitionFacts.from_record(r, nodes) for r in partition_records if "PartitionName" in r)
    if not parts:
        raise SchedulerError("Slurm reports no partitions: nothing to describe")
    return ClusterFacts(
        name=config.get("ClusterName") or "my-site",
        slurm_version=config.get("SLURM_VERSION"),
        cons_tres="cons_tres" in config.get("SelectType", "select/cons_tres"),
        mpi_plugins=tuple(mpi_plugins),
        partitions=parts,
    )


def _pyslurm_records(
    runner: Runner,
) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str]] | None:
    """The cluster through pyslurm when the scheduler selection picks pyslurm, else None."""
    from hpcjobs.errors import HpcjobsError
    from hpcjobs.log import get_logger
    from hpcjobs.schedulers import choose_backend

    log = get_logger("hpcjobs.site")
    try:
        kind, why = choose_backend(runner)
    except HpcjobsError as exc:
        kind, why = "cli", str(exc)
    if kind != "pyslurm":
        log.info("site.discover.source", source="cli", why=why)
        return None
    from hpcjobs.site.discover_pyslurm import read_cluster

    try:
        records = read_cluster()
    except Exception as exc:  # any pyslurm failure: the CLI still answers
        log.info("site.discover.source", source="cli", why=f"pyslurm failed: {type(exc).__name__}: {exc}")
        return None
    log.info("site.discover.source", source="pyslurm", why=why)
    return records


def _ask(runner: Runner, argv: list[str], *, required: bool) -> str:
    from hpcjobs.errors import RunnerError

    try:
        done = runner(argv, timeout_s=TIMEOUT_S)
    except RunnerError:
        if required:
            raise
        return ""
    if done.ok:
        return done.stdout
    if required:
        detail = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise SchedulerError(f"{' '.join(argv)} failed: {detail}")
    return ""


# ---------------------------------------------------------------------------------------- draft


@dataclass
class _Out:
    lines: list[str] = field(default_factory=list)

    def add(self, indent: int, key: str, value: Any = None, comment: str = "") -> None:
        text = " " * indent + (f"{key}:" if value is None else f"{key}: {_scalar(value)}")
        if len(comment) > 72:  # a long reason goes above the line it explains
            import textwrap

            for line in textwrap.wrap(comment, 96 - indent):
                self.comment(indent, line)
            comment = ""
        self.lines.append(f"{text}  # {comment}" if comment else text)

    def comment(self, indent: int, text: str) -> None:
        self.lines.append(" " * indent + f"# {text}")

    def blank(self) -> None:
        self.lines.append("")


def _scalar(value: Any) -> str:
    import yaml

    if isinstance(value, list) and not value:
        return "[]"
    text: str = yaml.safe_dump([value], default_flow_style=True, width=10**9).strip()
    return text[1:-1]


def _gb(mb: int) -> float:
    return math.floor(mb / 1024 * 100) / 100


def draft_site(facts: ClusterFacts) -> str:
    """The commented YAML draft for ``facts``; it validates (checked by :func:`discover`)."""
    parts = facts.partitions
    by_name = {p.name: p for p in parts}
    default = next((p.name for p in parts if p.default), parts[0].name)
    gpu_max = {p.name: _gpu_limit(p, parts)[0] for p in parts}
    gpu_parts = [p.name for p in parts if gpu_max[p.name] > 0]

    o = _Out()
    version = f" {facts.slurm_version}" if facts.slurm_version else ""
    o.comment(0, f"Draft site config for cluster {facts.name}: `hpcjobs site discover`, Slurm{version}.")
    o.comment(0, "Limits below are what Slurm and the hardware allow. Tighten them to site policy,")
    o.comment(0, "add binds, defaults and policy, then check the result:")
    o.comment(0, "  hpcjobs site validate FILE && hpcjobs site show --site FILE")
    o.add(0, "name", facts.name)
    o.add(0, "default_partition", default, "Default=YES in Slurm" if by_name[default].default else "")
    if gpu_max[default] == 0 and gpu_parts:
        pick = next((n for n in gpu_parts if "gpu" in n.lower()), gpu_parts[0])
        others = [n for n in gpu_parts if n != pick]
        note = (
            f"GPU jobs that name no partition (also with GPUs: {', '.join(others)})"
            if others
            else ("GPU jobs that name no partition go here")
        )
        o.add(0, "gpu_partition", pick, note)
    o.blank()

    o.add(0, "defaults")
    mpi = next((m for m in _MPI_PREFERENCE if m in facts.mpi_plugins), None)
    if mpi is not None:
        o.add(2, "mpi")
        o.add(4, "default", mpi, f"srun --mpi=list offers: {', '.join(facts.mpi_plugins)}")
        if mpi == "pmix":
            o.add(4, "env")
            o.add(6, "PMIX_MCA_gds", "hash", "PMIx's shared-memory gds can print lock errors; hash is safe")
    else:
        o.add(2, "mpi")
        note = (
            f"srun --mpi=list offers: {', '.join(facts.mpi_plugins)}"
            if facts.mpi_plugins
            else ("srun --mpi=list gave nothing")
        )
        o.add(4, "default", "none", note)
    o.comment(2, "binds: [/scratch, /home]   # binds every job gets")
    o.comment(2, "time_min: 60               # default wall time")
    o.blank()

    o.add(0, "partitions")
    for i, p in enumerate(parts):
        if i:
            o.blank()
        _partition(o, p, parts, facts)
    o.blank()
    o.comment(0, "images:")
    o.comment(0, "  cache_dir: /shared/hpcjobs/images   # a writable cache shared by users (shared: true)")
    o.comment(0, "  site_caches: [/sw/images]           # read-only caches admins pre-stage")
    return "\n".join(o.lines) + "\n"


def _gpu_limit(p: PartitionFacts, parts: Sequence[PartitionFacts]) -> tuple[int, str]:
    """(max_gpus_per_node, comment) for a partition; see the module docstring for the CPU rule."""
    gres = _gres_text(p)
    if p.max_gpus == 0:
        return 0, "no gpu gres on these nodes"
    if p.cpu_named:
        node_names = {n.name for n in p.nodes if n.gpu_count}
        shared_with = [
            q.name for q in parts
            if q.name != p.name and not q.cpu_named and node_names & {n.name for n in q.nodes if n.gpu_count}
        ]  # fmt: skip
        if shared_with:
            return 0, (
                f"the nodes have {gres}, also offered by partition {', '.join(shared_with)}; a CPU partition "
                f"keeps GPU jobs off them. Set {p.max_gpus} to allow GPU jobs here"
            )
        return p.max_gpus, f"nodes have {gres} although the name says CPU: set 0 to keep GPU jobs off"
    return p.max_gpus, f"from the nodes' gres ({gres})"


def _gres_text(p: PartitionFacts) -> str:
    kinds: dict[str, int] = {}
    for n in p.nodes:
        for t, c in n.gpus.items():
            key = f"gpu:{t}:{c}" if t else f"gpu:{c}"
            kinds[key] = kinds.get(key, 0) + 1
    return ", ".join(k if c == 1 else f"{k} on {c} nodes" for k, c in sorted(kinds.items())) or "no GPUs"


def _partition(o: _Out, p: PartitionFacts, parts: Sequence[PartitionFacts], facts: ClusterFacts) -> None:
    o.add(2, p.name)
    cpus = sorted({n.cpus for n in p.nodes})
    mems = sorted({n.memory_mb for n in p.nodes})
    gpus, gpu_note = _gpu_limit(p, parts)
    desc = f"{p.total_nodes} node{'s' if p.total_nodes != 1 else ''}"
    if cpus:
        desc += f", {_span(cpus)} CPUs"
    if mems:
        desc += f", {_span([_gb(m) for m in mems])} GB"
    if gpus:
        desc += f", {_gres_text(p)}"
    o.add(4, "description", desc)
    if p.state.upper() != "UP":
        o.comment(4, f"State={p.state} in Slurm: jobs queue but do not start")
    if p.restricted:
        o.comment(4, f"access is restricted in Slurm: {' '.join(p.restricted)}")

    o.add(4, "limits")
    if p.max_nodes is not None and p.max_nodes < p.total_nodes:
        o.add(6, "max_nodes", p.max_nodes, "MaxNodes")
        max_nodes = p.max_nodes
    else:
        o.add(6, "max_nodes", max(p.total_nodes, 1), "the partition's nodes (MaxNodes=UNLIMITED)")
        max_nodes = max(p.total_nodes, 1)
    per_node = max(cpus, default=0)
    if p.max_cpus_per_node is not None:
        per_node = min(per_node, p.max_cpus_per_node) if per_node else p.max_cpus_per_node
    if p.total_cpus or per_node:
        ntasks = min(p.total_cpus or per_node * max_nodes, per_node * max_nodes if per_node else p.total_cpus)
        if ntasks > 0:
            o.add(6, "max_ntasks", ntasks, "the CPUs of max_nodes nodes (a task takes one CPU at least)")
    if per_node > 0:
        note = (
            "MaxCPUsPerNode"
            if p.max_cpus_per_node is not None and p.max_cpus_per_node <= max(cpus, default=0)
            else ("CPUs of the largest node" if len(cpus) > 1 else "CPUs per node")
        )
        o.add(6, "max_cpus_per_task", per_node, note)
    if p.max_mem_mb is not None:
        o.add(6, "max_mem_gb", _gb(p.max_mem_mb), f"MaxMemPerNode={p.max_mem_mb}M")
    elif mems and mems[-1] > 0:
        o.add(
            6,
            "max_mem_gb",
            _gb(mems[-1]),
            f"RealMemory={mems[-1]}M" + (" (largest node)" if len(mems) > 1 else ""),
        )
    o.add(6, "max_gpus_per_node", gpus, gpu_note)
    if p.max_time_min is not None and p.max_time_min > 0:
        o.add(6, "max_time_min", p.max_time_min, "MaxTime")
    else:
        o.comment(6, "max_time_min: none (MaxTime=UNLIMITED); set one to refuse runaway requests early")
    if p.default_time_min is not None and p.default_time_min > 0:
        o.add(4, "time_min", p.default_time_min, "DefaultTime")
    if gpus > 0:
        types = p.gpu_types
        amd = any(t is not None and _AMD_TYPE.match(t) for t in types)
        o.add(4, "gpu")
        o.add(
            6,
            "flag",
            "rocm" if amd else "nv",
            "AMD GPU type" if amd else "apptainer --nv; use rocm for AMD, nvccli for nvidia-container-cli",
        )
        request = "gpus" if facts.cons_tres else "gres"
        o.add(6, "request", request, "--gpus=N (select/cons_tres)" if request == "gpus" else "--gres=gpu:N")
        if len(types) == 1 and None not in types:
            o.add(6, "type", next(iter(types)), "every GPU here has this type")
        elif len(types - {None}) > 1:
            o.comment(6, f"GPU types differ ({', '.join(sorted(t for t in types if t))}): no type is requested")


def _span(values: Sequence[float]) -> str:
    def f(v: float) -> str:
        return f"{v:g}"

    return f(values[0]) if len(values) == 1 else f"{f(values[0])}-{f(values[-1])}"


def discover(runner: Runner | None = None) -> str:
    """Ask the live cluster and return a draft that is known to validate."""
    from hpcjobs.config.loader import load_site_text
    from hpcjobs.errors import ConfigError, HpcjobsError
    from hpcjobs.runner import default_runner

    text = draft_site(gather(runner or default_runner()))
    try:
        load_site_text(text, "<discovered>")
    except ConfigError as exc:  # a bug here, not the admin's: say so plainly
        raise HpcjobsError(f"discover wrote a draft that does not validate (please report): {exc}") from exc
    return text
