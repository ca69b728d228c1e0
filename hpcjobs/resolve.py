"""spec + site (+ CLI overrides) → ResolvedJob. Pure: no I/O, no environment, no clock.

Precedence, written out in this one place:

    CLI (--set) > job spec > partition > site defaults > built-in default

Scalars take the first layer that sets them. ``launcher_options`` are laid over each other option
by option in the same order (:func:`hpcjobs.launchers.options.for_job`): a higher layer's option
replaces the lower layers' options that set the same thing, the rest are kept.

Every resolved value records where it came from (``ResolvedJob.provenance``), which
``hpcjobs render --explain`` shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from hpcjobs import defaults
from hpcjobs.config.loader import describe_errors
from hpcjobs.config.site import Partition, SiteConfig, is_within
from hpcjobs.defaults import BUILTIN
from hpcjobs.directives import option_problem, uncarriable
from hpcjobs.errors import BindError, ConfigError, LimitExceeded, PolicyViolation
from hpcjobs.models import SLURM_NAME, Bind
from hpcjobs.plugin_api import Mode, ResolvedJob
from hpcjobs.sbatch_options import MANAGED_SBATCH, managed_sbatch_flag, managed_sbatch_problem
from hpcjobs.spec import JobSpec

CLI = "cli"
JOB = "job spec"

__all__ = [
    "BUILTIN", "CLI", "JOB", "MANAGED_SBATCH", "Mode", "ResolvedJob", "apply_overrides", "managed_sbatch_flag",
    "managed_sbatch_problem", "resolve",
]  # fmt: skip


class _Picker:
    """Takes each value from the first layer that sets it, and remembers which layer that was."""

    def __init__(self, cli: Mapping[str, Any], job: JobSpec, site: SiteConfig, part: str, eff: Partition):
        self.cli, self.job, self.site, self.part, self.eff = cli, job, site, part, eff
        self.provenance: dict[str, str] = {}

    def pick(self, key: str, setting: str | None = None, default: Any = None) -> Any:
        if key in self.cli:
            self.provenance[key] = CLI
            return self.cli[key]
        if key in self.job.model_fields_set and getattr(self.job, key) is not None:
            self.provenance[key] = JOB
            return getattr(self.job, key)
        if setting is not None:
            src = self.site.partition_source(self.part, setting)
            if src is not None:
                value: Any = self.eff
                for part in setting.split("."):
                    value = getattr(value, part)
                if value is not None:
                    self.provenance[key] = f"partition {self.part}" if src == "partition" else "site defaults"
                    return value
        if default is not None:
            self.provenance[key] = BUILTIN
        return default

    def setting_source(self, setting: str) -> str:
        src = self.site.partition_source(self.part, setting)
        if src == "partition":
            return f"partition {self.part}"
        return "site defaults" if src == "site" else BUILTIN


def apply_overrides(spec: JobSpec, overrides: Mapping[str, Any]) -> tuple[JobSpec, dict[str, Any]]:
    """Validate CLI overrides as job fields; returns the merged spec and the validated overrides."""
    if not overrides:
        return spec, {}
    unknown = sorted(set(overrides) - set(JobSpec.model_fields))
    if unknown:
        raise ConfigError(
            f"--set {unknown[0]}: unknown job field (valid: {', '.join(sorted(JobSpec.model_fields))})"
        )
    data = spec.model_dump(exclude_unset=True)
    data.update(overrides)
    try:
        merged = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("; ".join(f"--set {p}" for p in describe_errors(JobSpec, exc))) from None
    return merged, {k: getattr(merged, k) for k in overrides}


def resolve(spec: JobSpec, site: SiteConfig, overrides: Mapping[str, Any] | None = None) -> ResolvedJob:
    job_launcher_options = spec.launcher_options  # a layer below --set's, option by option
    spec, cli = apply_overrides(spec, overrides or {})
    _check_locked(spec, cli, site)

    provenance: dict[str, str] = {}
    gpus_requested = int(cli.get("gpus", spec.gpus) or 0)
    if "partition" in cli:
        partition, provenance["partition"] = cli["partition"], CLI
    elif spec.partition is not None:
        partition, provenance["partition"] = spec.partition, JOB
    elif gpus_requested > 0 and site.gpu_partition is not None:
        partition, provenance["partition"] = site.gpu_partition, "site gpu_partition (GPU job)"
    else:
        partition, provenance["partition"] = site.default_partition, "site default_partition"
    if partition not in site.partitions:
        raise ConfigError(f"partition {partition!r} is not defined by site {site.name!r} "
                          f"(have: {', '.join(sorted(site.partitions))})")
    eff = site.effective(partition)
    p = _Picker(cli, spec, site, partition, eff)

    builtin = defaults.SETTINGS
    nodes = int(p.pick("nodes", default=defaults.JOB_FIELDS["nodes"]))
    ntasks = int(p.pick("ntasks", default=defaults.JOB_FIELDS["ntasks"]))
    cpus_per_task = p.pick("cpus_per_task", "cpus_per_task")
    gpus = int(p.pick("gpus", default=defaults.JOB_FIELDS["gpus"]))
    mem_gb = p.pick("mem_gb", "mem_gb")
    time_min = p.pick("time_min", "time_min")
    account = p.pick("account", "account")
    qos = p.pick("qos", "qos")
    mpi: str = p.pick("mpi", "mpi.default", default=builtin["mpi.default"])
    mpi_check: str = p.pick("mpi_check", "mpi.check", default=builtin["mpi.check"])
    array = p.pick("array")
    array_throttle = p.pick("array_throttle", "array_throttle")
    if array is not None and array_throttle is not None and "%" not in array:
        array = f"{array}%{array_throttle}"
    dependency = p.pick("dependency")
    cleanenv = bool(p.pick("cleanenv", "runtime.cleanenv", default=builtin["runtime.cleanenv"]))
    workdir = p.pick("workdir")
    provenance.update(p.provenance)

    _check_limits(partition, eff, nodes=nodes, ntasks=ntasks, cpus_per_task=cpus_per_task, gpus=gpus,
                  mem_gb=mem_gb, time_min=time_min)
    if site.policy.require_account and not account:
        raise PolicyViolation(f"site {site.name!r} requires an account: set account in the job or --set account=…")
    if site.policy.require_qos and not qos:
        raise PolicyViolation(f"site {site.name!r} requires a QoS: set qos in the job or --set qos=…")

    for label, value in (("partition", partition), ("account", account), ("qos", qos)):
        if value is not None and not SLURM_NAME.fullmatch(value):
            raise ConfigError(f"{label} {value!r} may only contain letters, digits and . _ + -")
    if account is not None:
        account = account.lower()  # Slurm records account names in lower case (verified on 22.05)
    name = spec.name or _name_from_image(spec.image)
    provenance["name"] = JOB if spec.name else "derived from image"
    bad = uncarriable(name)
    if bad is not None:
        raise ConfigError(f"job name {name!r} {bad}, which an #SBATCH line cannot carry")

    runtime = eff.runtime.name or builtin["runtime.name"]
    provenance["runtime"] = p.setting_source("runtime.name")
    binds, unchecked = _merge_binds(eff, spec, site, runtime)
    provenance["binds"] = "partition/site defaults + job spec" if eff.binds else JOB
    env = {**eff.env, **spec.env}
    launch_env = dict(eff.mpi.env) if (mpi != "none" and (ntasks > 1 or nodes > 1)) else {}

    extra = tuple(spec.extra_sbatch)
    for opt in extra:
        problem = option_problem(opt)
        if problem is not None:
            raise ConfigError(f"extra_sbatch {problem}")

    mode, args, entrypoint_len = _entry(spec)
    gpu_flag: str | None = None
    if gpus > 0:
        gpu_flag = eff.gpu.flag or builtin["gpu.flag"]
        provenance["gpu_flag"] = p.setting_source("gpu.flag")
    output = spec.output or (defaults.ARRAY_OUTPUT if array else defaults.OUTPUT)
    provenance["output"] = JOB if spec.output else BUILTIN
    bad = uncarriable(output)
    if bad is None and "\\" in output:
        # Slurm reads a backslash in a file name as "no %-patterns here" and removes it
        bad = "contains a backslash, which Slurm removes from file names"
    if bad is not None:
        raise ConfigError(f"output {output!r} {bad}")

    if spec.wrappers:
        provenance["wrappers"] = CLI if "wrappers" in cli else JOB
    elif eff.wrappers:
        provenance["wrappers"] = p.setting_source("wrappers")
    for key, src in _item_provenance(site, partition, eff, spec, cli, p).items():
        provenance.setdefault(key, src)  # per item, for render --explain
    from hpcjobs.launchers.options import for_job

    launcher_options, launcher_notes, option_sources = for_job(
        site, partition, mpi, ntasks > 1 or nodes > 1, job_launcher_options, cli.get("launcher_options", {}),
        job_source=JOB, cli_source=CLI,
    )  # precedence CLI > job > partition > site, per option: hpcjobs.launchers.options
    provenance.update(option_sources)
    return ResolvedJob(
        name=name,
        image=spec.image,
        partition=partition,
        nodes=nodes,
        ntasks=ntasks,
        cpus_per_task=cpus_per_task,
        gpus=gpus,
        mem_gb=mem_gb,
        time_min=time_min,
        mpi=mpi,
        account=account,
        qos=qos,
        array=array,
        output=output,
        extra_sbatch=tuple(eff.sbatch) + extra,
        mode=mode,
        args=tuple(args),
        binds=tuple(binds),
        unchecked_bind_sources=tuple(unchecked),
        env=env,
        launch_env=launch_env,
        workdir=workdir,
        runtime=runtime,
        runtime_binary=eff.runtime.binary,
        runtime_flags=tuple(eff.runtime.flags) + tuple(spec.runtime_flags),
        cleanenv=cleanenv,
        gpu_flag=gpu_flag,
        gpu_request=eff.gpu.request or builtin["gpu.request"],
        gpu_type=eff.gpu.type,
        mpirun=eff.mpi.mpirun or builtin["mpi.mpirun"],
        site=site.name,
        site_origin=site.origin,
        provenance=provenance,
        clear_bind_env=bool(site.policy.deny_bind_sources),
        dependency=dependency,
        image_ref=spec.image,
        wrappers=tuple(eff.wrappers) + tuple(w for w in spec.wrappers if w not in eff.wrappers),
        plugin_settings=dict(site.plugins),
        entrypoint_len=entrypoint_len,
        array_throttle=array_throttle,
        launcher_options=launcher_options,
        launcher_notes=launcher_notes,
        mpi_check=mpi_check,
    )


def _item_provenance(
    site: SiteConfig, partition: str, eff: Partition, spec: JobSpec, cli: Mapping[str, Any], p: _Picker
) -> dict[str, str]:
    """Where each list/map item and each remaining setting came from: ``bind:DST``, ``env:NAME``,
    ``launch_env:NAME``, ``extra_sbatch[i]`` and ``runtime_flags[i]`` (indexes into ResolvedJob's
    tuples), ``image``, ``entry``, ``gpu_request``, ``gpu_type``, ``runtime_binary``, ``mpirun``."""
    items = site.item_sources(partition)

    def layer(key: str) -> str:
        return f"partition {partition}" if items.get(key) == "partition" else "site defaults"

    def job(field: str) -> str:
        return CLI if field in cli else JOB

    out = {"image": job("image"), "entry": job("entrypoint" if spec.entrypoint is not None else "command")}
    for key, setting in (("gpu_request", "gpu.request"), ("gpu_type", "gpu.type"),
                         ("runtime_binary", "runtime.binary"), ("mpirun", "mpi.mpirun")):
        out[key] = p.setting_source(setting)
    job_dsts = {b.dst for b in spec.binds}
    for b in eff.binds:
        if b.dst not in job_dsts:
            out[f"bind:{b.dst}"] = layer(f"binds:{b.dst}")
    out.update({f"bind:{b.dst}": job("binds") for b in spec.binds})
    out.update({f"env:{k}": layer(f"env:{k}") for k in eff.env})
    out.update({f"env:{k}": job("env") for k in spec.env})
    out.update({f"launch_env:{k}": layer(f"mpi.env:{k}") for k in eff.mpi.env})
    sbatch = [layer(f"sbatch:{o}") for o in eff.sbatch] + [job("extra_sbatch")] * len(spec.extra_sbatch)
    out.update({f"extra_sbatch[{i}]": src for i, src in enumerate(sbatch)})
    flags = [layer(f"runtime.flags:{f}") for f in eff.runtime.flags] + [job("runtime_flags")] * len(
        spec.runtime_flags
    )
    out.update({f"runtime_flags[{i}]": src for i, src in enumerate(flags)})
    return out


def _check_locked(spec: JobSpec, cli: Mapping[str, Any], site: SiteConfig) -> None:
    for key in site.policy.locked:
        if key in cli or key in spec.model_fields_set:
            raise PolicyViolation(f"site {site.name!r} does not let jobs set {key!r} (policy.locked)")


def _check_limits(partition: str, eff: Partition, **asked: Any) -> None:
    lim = eff.limits
    checks = [
        ("gpus", asked["gpus"], lim.max_gpus_per_node, "max_gpus_per_node"),
        ("nodes", asked["nodes"], lim.max_nodes, "max_nodes"),
        ("ntasks", asked["ntasks"], lim.max_ntasks, "max_ntasks"),
        ("cpus_per_task", asked["cpus_per_task"], lim.max_cpus_per_task, "max_cpus_per_task"),
        ("time_min", asked["time_min"], lim.max_time_min, "max_time_min"),
        ("mem_gb", asked["mem_gb"], lim.max_mem_gb, "max_mem_gb"),
    ]
    for key, value, limit, limit_name in checks:
        if value is None or limit is None or value <= limit:
            continue
        if key == "gpus" and limit == 0:
            raise LimitExceeded(
                f"partition {partition!r} has no GPUs (limits.max_gpus_per_node = 0) but the job asks for "
                f"gpus={value}: choose a GPU partition"
            )
        raise LimitExceeded(
            f"partition {partition!r} allows at most {limit_name.removeprefix('max_')} = {limit} "
            f"(limits.{limit_name}) but the job asks for {key}={value}"
        )


def _merge_binds(eff: Partition, spec: JobSpec, site: SiteConfig, runtime: str) -> tuple[list[Bind], list[str]]:
    binds = list(eff.binds) + list(spec.binds)
    seen: dict[str, Bind] = {}
    for b in binds:
        if b.dst in seen:
            raise BindError(
                f"two binds share the destination {b.dst!r}: {seen[b.dst].spec()} and {b.spec()} "
                "(partition default binds count too)"
            )
        seen[b.dst] = b
    for b in spec.binds:
        denied = site.policy.denied_bind_source(b.src)
        if denied is not None:
            raise PolicyViolation(
                f"bind source {b.src!r} is not allowed by site {site.name!r} "
                f"(policy.deny_bind_sources: {denied})"
            )
    if site.policy.deny_bind_sources and spec.runtime_flags:
        from hpcjobs.plugins import get_runtime  # which flags mount host paths is the runtime's knowledge

        mounts = get_runtime(runtime).mounts_host_path
        for flag in spec.runtime_flags:
            if mounts(flag):
                raise PolicyViolation(
                    f"runtime flag {flag!r} mounts a host path, which site {site.name!r} does not allow "
                    "while policy.deny_bind_sources is set: use the job's binds"
                )
    # normalised first: /scratch-local/../etc is not node-local
    unchecked = [b.src for b in binds if any(is_within(b.src, n) for n in eff.node_local_paths)]
    return binds, unchecked


def _entry(spec: JobSpec) -> tuple[Mode, list[str], int]:
    """Docker/Compose semantics for entrypoint and command: the mode, the words, and how many of
    them are the entrypoint (a target such as Kubernetes keeps the two apart)."""
    if spec.entrypoint is not None:
        program = list(spec.entrypoint) + list(spec.command or [])
        if not program:
            raise ConfigError("entrypoint is empty and there is no command: nothing to run")
        return "exec", program, len(spec.entrypoint)
    if spec.command is not None:
        return "run", list(spec.command), 0
    return "run", [], 0


def _name_from_image(image: str) -> str:
    base = image.rstrip("/").rsplit("/", 1)[-1]
    base = base.split("@", 1)[0].split(":", 1)[0]
    for ext in (".sif", ".tar", ".oci", ".docker"):
        base = base.removesuffix(ext)
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]", "-", base).strip("-.")
    return cleaned or "hpcjobs"
