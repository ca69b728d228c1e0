"""``hpcjobs site show``: the settings a user's job gets on each partition, and where each comes from.

Sources use the same words as ``hpcjobs render --explain``: ``partition NAME``, ``site defaults``,
``built-in default``; a setting nobody sets is left to Slurm (``not set``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpcjobs.defaults import BUILTIN
from hpcjobs.defaults import SETTINGS as _BUILTIN_VALUES

if TYPE_CHECKING:
    from hpcjobs.config.site import SiteConfig

SITE = "site defaults"
NOT_SET = "not set"

# settings in display order; (key, meaning when unset); built-in values come from hpcjobs.defaults
_SCALARS: tuple[tuple[str, str], ...] = (
    ("description", ""),
    ("limits.max_nodes", "no limit"),
    ("limits.max_ntasks", "no limit"),
    ("limits.max_cpus_per_task", "no limit"),
    ("limits.max_gpus_per_node", "no limit"),
    ("limits.max_mem_gb", "no limit"),
    ("limits.max_time_min", "no limit"),
    ("time_min", "Slurm's default"),
    ("mem_gb", "Slurm's default"),
    ("cpus_per_task", "Slurm's default"),
    ("account", "Slurm's default"),
    ("qos", "Slurm's default"),
    ("gpu.request", ""),
    ("gpu.type", "any type"),
    ("gpu.flag", ""),
    ("runtime.name", ""),
    ("runtime.binary", "the runtime's own"),
    ("runtime.cleanenv", ""),
    ("mpi.default", ""),
    ("mpi.mpirun", ""),
)


@dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "source": self.source}


def effective_settings(site: SiteConfig, partition: str) -> list[Setting]:
    """Every setting a job on ``partition`` gets, after layering, with its source."""
    from hpcjobs.errors import ConfigError

    if partition not in site.partitions:
        have = ", ".join(sorted(site.partitions))
        raise ConfigError(f"partition {partition!r} is not defined by site {site.name!r} (have: {have})")
    eff = site.effective(partition)
    here = f"partition {partition}"

    def label(src: str | None) -> str:
        return here if src == "partition" else SITE

    no_gpus = eff.limits.max_gpus_per_node == 0
    out: list[Setting] = []
    for key, unset in _SCALARS:
        builtin = _BUILTIN_VALUES.get(key)
        if no_gpus and key.startswith("gpu."):
            out.append(Setting(key, None, "not used: no GPUs (limits.max_gpus_per_node = 0)"))
            continue
        value: Any = eff
        for part in key.split("."):
            value = getattr(value, part)
        src = site.partition_source(partition, key)
        if src is not None and value is not None:
            out.append(Setting(key, value, label(src)))
        elif builtin is not None:
            out.append(Setting(key, builtin, BUILTIN))
        elif unset:
            out.append(Setting(key, None, f"{NOT_SET}: {unset}"))
    items = site.item_sources(partition)
    out += [Setting("binds", b.spec(), label(items.get(f"binds:{b.dst}"))) for b in eff.binds]
    out += [Setting("node_local_paths", p, label(items.get(f"node_local_paths:{p}"))) for p in eff.node_local_paths]
    out += [Setting(f"env.{k}", v, label(items.get(f"env:{k}"))) for k, v in eff.env.items()]
    out += [Setting(f"mpi.env.{k}", v, label(items.get(f"mpi.env:{k}"))) for k, v in eff.mpi.env.items()]
    out += [Setting("runtime.flags", f, label(items.get(f"runtime.flags:{f}"))) for f in eff.runtime.flags]
    out += [Setting("sbatch", o, label(items.get(f"sbatch:{o}"))) for o in eff.sbatch]
    own = site.partitions[partition].launcher_options  # a partition's option replaces the site's (same key)
    out += [Setting(f"launcher_options.{name}", o, label("partition" if o in own.get(name, []) else "site"))
            for name, opts in eff.launcher_options.items() for o in opts]  # fmt: skip
    return out


def site_wide(site: SiteConfig) -> list[Setting]:
    """Settings that are the same for every partition: where jobs go, the image cache, the policy."""
    out = [
        Setting("default_partition", site.default_partition, "site"),
        Setting(
            "gpu_partition",
            site.gpu_partition or site.default_partition,
            "site" if site.gpu_partition else f"{BUILTIN} (default_partition)",
        ),
    ]
    for section in ("images", "policy"):
        model = getattr(site, section)
        for key in type(model).model_fields:
            src = "site" if key in model.model_fields_set else BUILTIN
            out.append(Setting(f"{section}.{key}", getattr(model, key), src))
    for section in sorted(site.plugins):
        out.append(Setting(f"plugins.{section}", site.plugins[section], "site"))
    return out


def show_data(
    site: SiteConfig, source: str, partitions: list[str], *, origin: str | None = None
) -> dict[str, Any]:
    """``origin``: set for a config discovered from the cluster (``source`` is then its cached file)."""
    return {
        "site": site.name,
        "file": source,
        "discovered": origin is not None,
        "origin": origin,
        "site_wide": [s.as_dict() for s in site_wide(site)],
        "partitions": {p: [s.as_dict() for s in effective_settings(site, p)] for p in partitions},
    }


def show_text(site: SiteConfig, source: str, partitions: list[str], *, discovered: bool = False) -> str:
    where = f"{source}; no site config is published" if discovered else f"from {source}"
    sections = [(f"site {site.name} ({where})", site_wide(site))]
    for p in partitions:
        title = f"partition {p}" + (" (default)" if p == site.default_partition else "")
        sections.append((title, effective_settings(site, p)))
    rows = [(s.key, _value(s.value), s.source) for _, settings in sections for s in settings]
    kw = max(len(k) for k, _, _ in rows)
    vw = min(max(len(v) for _, v, _ in rows), 24)
    lines: list[str] = []
    for title, settings in sections:
        lines += ["", title] if lines else [title]
        lines += [f"  {s.key:<{kw}}  {_value(s.value):<{vw}}  <- {s.source}" for s in settings]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    import json

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and value.strip() == value and "\n" not in value else json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value) if value else "[]" if isinstance(value, list) else "{}"
    return str(value)
