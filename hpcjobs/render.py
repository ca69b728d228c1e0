"""ResolvedJob → sbatch script text. Pure, and the only place in hpcjobs that quotes for a shell.

Every value that reaches the script goes through :func:`sh_quote`, so an argument with spaces,
quotes, ``$``, ``;`` or newlines arrives in the container byte-for-byte.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from hpcjobs._version import __version__
from hpcjobs.errors import ConfigError
from hpcjobs.plugins import get_launcher, get_runtime
from hpcjobs.resolve import ResolvedJob

# Launch variables a task needs even when the container starts with --cleanenv.
FORWARD_PATTERNS = (
    "SLURM_*", "PMIX_*", "PMI_*", "OMPI_*", "PRTE_*",
    "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
)  # fmt: skip


def sh_quote(value: str) -> str:
    """Quote one word for bash; the result reads back as exactly ``value``."""
    if value == "":
        return "''"
    return shlex.quote(value)


def sh_join(argv: Sequence[str]) -> str:
    return " ".join(sh_quote(a) for a in argv)


# Variables through which a login environment would add binds the site's deny list never saw.
RUNTIME_BIND_ENV = ("APPTAINER_BIND", "APPTAINER_BINDPATH", "SINGULARITY_BIND", "SINGULARITY_BINDPATH")

# Verified on apptainer 1.4.5: its env injection turns CRLF into LF and fails on U+0080/U+0081.
UNCARRIABLE_ENV = {"\r\n": "CR LF", "\x80": "U+0080", "\x81": "U+0081"}


def container_env_value(value: str) -> str:
    """Escape a value for ``APPTAINERENV_*``.

    Apptainer writes it into the container as ``export K="value"`` (escaping only '"'), so
    ``$``, backticks and backslashes would be evaluated; escape those three so it arrives literally.
    """
    for bad, what in UNCARRIABLE_ENV.items():
        if bad in value:
            raise ConfigError(
                f"environment value {value!r} contains {what}, which Apptainer's environment injection "
                "cannot carry unchanged; refusing rather than passing a different value"
            )
    return value.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")


def directive_value(value: str) -> str:
    # sbatch reads #SBATCH lines with its own parser: double quotes group words, '#' outside
    # quotes starts a comment. resolve() refuses '"' and newlines in directive values.
    if any(c in value for c in " \t#'"):
        return f'"{value}"'
    return value


def sbatch_directives(job: ResolvedJob) -> list[tuple[str, str | None]]:
    """(option, provenance key) pairs, in script order."""
    d: list[tuple[str, str | None]] = [
        (f"--job-name={directive_value(job.name)}", "name"),
        (f"--partition={job.partition}", "partition"),
        (f"--nodes={job.nodes}", "nodes"),
        (f"--ntasks={job.ntasks}", "ntasks"),
    ]
    if job.cpus_per_task is not None:
        d.append((f"--cpus-per-task={job.cpus_per_task}", "cpus_per_task"))
    if job.gpus > 0:
        typed = f"{job.gpu_type}:" if job.gpu_type else ""
        if job.gpu_request == "gres":
            d.append((f"--gres=gpu:{typed}{job.gpus}", "gpus"))
        elif job.nodes == 1:
            d.append((f"--gpus={typed}{job.gpus}", "gpus"))
        else:
            d.append((f"--gpus-per-node={typed}{job.gpus}", "gpus"))
    if job.mem_gb is not None:
        d.append((f"--mem={round(job.mem_gb * 1024)}M", "mem_gb"))
    if job.time_min is not None:
        d.append((f"--time={job.time_min}", "time_min"))
    if job.array is not None:
        d.append((f"--array={job.array}", "array"))
    if job.account is not None:
        d.append((f"--account={job.account}", "account"))
    if job.qos is not None:
        d.append((f"--qos={job.qos}", "qos"))
    d.append((f"--output={directive_value(job.output)}", "output"))
    if job.dependency is not None:
        d.append((f"--dependency={job.dependency}", "dependency"))
        # a failed image conversion must end the workload, not leave it pending forever
        d.append(("--kill-on-invalid-dep=yes", "dependency"))
    for i, opt in enumerate(job.extra_sbatch):
        name, sep, val = opt.partition("=")
        d.append((f"{name}{sep}{directive_value(val)}" if sep else opt, f"extra_sbatch[{i}]"))
    return d


def render(
    job: ResolvedJob, *, explain: bool = False, task_lines: Sequence[str] = (), task_args: str | None = None
) -> str:
    """The sbatch script for ``job``. With ``explain``, each directive and flag says where it came from.

    ``task_lines`` (bash, already quoted by their maker) run after the environment is set, and
    ``task_args`` (one bash word list, e.g. ``"${arr[@]}"``) ends the command: a sweep's per-task part.
    """
    runtime = get_runtime(job.runtime)
    launcher = get_launcher(job)
    prov = job.provenance

    def note(key: str | None) -> str:
        if not explain or key is None:
            return ""
        return f"  # <- {_directive_source(job, key)}"

    lines = [
        "#!/bin/bash",
        "# Single-quoted '$' and backticks below are literal arguments, by design:",
        "# shellcheck disable=SC2016",
        f"# Generated by hpcjobs {__version__} for site {comment_text(job.site)}, partition {job.partition}.",
        f"# image: {comment_text(job.image_ref or job.image)}",
    ]
    if job.image_digest:
        lines.append(f"# image digest: {job.image_digest}")
        lines.append(f"# image file: {comment_text(job.image)}")
    if explain:
        lines.append("# --explain: '<- SOURCE' after a line says where its value came from;")
        lines.append(f"# precedence: {PRECEDENCE}.")
    lines += [f"#SBATCH {opt}{note(key)}" for opt, key in sbatch_directives(job)]
    lines.append("set -eo pipefail")
    if job.clear_bind_env:
        why = "  # <- site policy.deny_bind_sources: binds come only from the job and the site" if explain else ""
        lines.append(f"unset {' '.join(RUNTIME_BIND_ENV)}{why}")

    for key, value in job.launch_env.items():
        why = f"  # <- {_source(prov, f'launch_env:{key}')} (mpi.env: {job.ntasks} tasks)" if explain else ""
        lines.append(f"export {key}={sh_quote(value)}{why}")
    for key, value in job.env.items():
        why = f"  # <- {_source(prov, f'env:{key}')} (env)" if explain else ""
        lines.append(f"export {runtime.env_prefix}{key}={sh_quote(container_env_value(value))}{why}")

    lines += task_lines
    container = runtime.argv(job)
    prefix = launcher.argv(job) if launcher is not None else []
    wrapper: list[str] = []
    if job.cleanenv:
        if explain:
            kept = ", ".join(FORWARD_PATTERNS[:4])
            lines.append(
                f"# --cleanenv <- {_source(prov, 'cleanenv')}: launch variables ({kept}, "
                "CUDA_VISIBLE_DEVICES, …) are still forwarded into the container"
            )
        lines += _forward_function(runtime.env_prefix)
        if prefix:
            # per task: srun/mpirun set SLURM_PROCID, PMIX_RANK … for each task, after this script ran
            wrapper = ["bash", "-c", 'hpcjobs_forward_env && exec "$@"', "hpcjobs-task"]
        else:
            lines.append("hpcjobs_forward_env")
    if explain:
        lines += _explain_command(job, prefix, wrapper, container, runtime.default_binary)
    tail = f" {task_args}" if task_args else ""
    lines.append("exec " + sh_join([*prefix, *wrapper, *container]) + tail)
    return "\n".join(lines) + "\n"


def _forward_function(prefix: str) -> list[str]:
    patterns = "|".join(FORWARD_PATTERNS)
    return [
        "hpcjobs_forward_env() {",
        "  local v q",
        "  for v in $(compgen -e); do",
        f"    case \"$v\" in {patterns})",
        "      q=${!v//\\\\/\\\\\\\\}; q=${q//\\$/\\\\\\$}; q=${q//\\`/\\\\\\`}",
        f"      export \"{prefix}$v=$q\" ;;",
        "    esac",
        "  done",
        "}",
        "export -f hpcjobs_forward_env",
    ]


PRECEDENCE = "CLI (--set) > job spec > partition > site defaults > built-in default"
BUILTIN = "built-in default"


def _source(prov: Mapping[str, str], key: str) -> str:
    src = prov.get(key, BUILTIN)
    return "CLI override (--set)" if src == "cli" else src


def _directive_source(job: ResolvedJob, key: str) -> str:
    """The explanation after an #SBATCH line."""
    prov = job.provenance
    if key == "gpus":
        form = "--gres" if job.gpu_request == "gres" else "--gpus" if job.nodes == 1 else "--gpus-per-node"
        text = f"gpus: {_source(prov, 'gpus')}; {form}: {_source(prov, 'gpu_request')}"
        if job.gpu_type:
            text += f"; type {job.gpu_type}: {_source(prov, 'gpu_type')}"
        return text
    if key == "dependency" and key not in prov:
        return "image conversion job (images.convert_on: slurm)"
    if key.startswith("extra_sbatch["):
        src = _source(prov, key)
        return f"{src} ({'extra_sbatch' if src in ('job spec', 'CLI override (--set)') else 'sbatch'})"
    return _source(prov, key)


def _explain_command(
    job: ResolvedJob, prefix: list[str], wrapper: list[str], container: list[str], default_binary: str
) -> list[str]:
    """The exec line, word group by word group, each with where it came from."""
    prov = job.provenance
    rows: list[tuple[list[str], str]] = []
    if prefix:
        if prefix[0] == "srun":
            why = f"{job.ntasks} tasks, one container each; --mpi from {_source(prov, 'mpi')}"
            rows.append((prefix, why))
        else:
            why = f"mpi: mpirun from {_source(prov, 'mpi')}; binary: {_source(prov, 'mpirun')}"
            rows.append((prefix[:1], why))
            if len(prefix) > 1:
                rows.append((prefix[1:], f"ntasks: {_source(prov, 'ntasks')}"))
    if wrapper:
        rows.append((wrapper, "--cleanenv with a launcher: forward each task's launch variables"))
    rows += _container_rows(job, container, default_binary)
    width = min(max(len(_words(w)) for w, _ in rows), 48)
    out = ["# The command, word by word (<- where each part came from):"]
    out += [f"#   {_words(w):<{width}}  <- {why}" for w, why in rows]
    return out


def _container_rows(job: ResolvedJob, argv: list[str], default_binary: str) -> list[tuple[list[str], str]]:
    """Match the runtime plugin's argv against the job, left to right; anything not recognised is
    the plugin's own (``built-in (runtime NAME)``)."""
    prov = job.provenance
    plugin = f"built-in (runtime {job.runtime}, from {_source(prov, 'runtime')})"
    tail = len(job.args)
    body, args = (argv[:-tail], argv[-tail:]) if tail else (argv, [])
    rows: list[tuple[list[str], str]] = []
    binds = {b.spec(): b for b in job.binds}
    flags = list(enumerate(job.runtime_flags))
    i = 0
    while i < len(body):
        word = body[i]
        nxt = body[i + 1] if i + 1 < len(body) else None
        if i == 0:
            binary = _source(prov, "runtime_binary") if job.runtime_binary else "the runtime's own"
            rows.append(([word], f"runtime {job.runtime}: {_source(prov, 'runtime')}; binary: {binary}"))
        elif word in ("run", "exec") and i == 1:
            group = [word, nxt] if nxt == "--no-eval" else [word]
            rows.append((group, _mode_note(job)))
            i += len(group)
            continue
        elif job.gpu_flag and word == f"--{job.gpu_flag}":
            why = f"GPUs requested (gpus: {_source(prov, 'gpus')}); flag: {_source(prov, 'gpu_flag')}"
            rows.append(([word], why))
        elif word == "--cleanenv" and job.cleanenv:
            rows.append(([word], f"cleanenv: {_source(prov, 'cleanenv')}"))
        elif word == "--bind" and nxt is not None and nxt in binds:
            rows.append(([word, nxt], f"bind: {_source(prov, 'bind:' + binds[nxt].dst)}"))
            i += 2
            continue
        elif word == "--pwd" and nxt is not None and nxt == job.workdir:
            rows.append(([word, nxt], f"workdir: {_source(prov, 'workdir')}"))
            i += 2
            continue
        elif flags and word == flags[0][1]:
            idx, _flag = flags.pop(0)
            src = _source(prov, f"runtime_flags[{idx}]")
            rows.append(([word], f"runtime flag: {src}"))
        elif word == job.image and i == len(body) - 1:
            what = "image (converted, cached SIF)" if job.image_digest else "image"
            rows.append(([word], f"{what}: {_source(prov, 'image')}"))
        else:
            rows.append(([word], plugin))
        i += 1
    if args:
        field = "entrypoint + command" if job.mode == "exec" else "command"
        rows.append((args, f"{field}: {_source(prov, 'entry')}"))
    return rows


def _mode_note(job: ResolvedJob) -> str:
    src = _source(job.provenance, "entry")
    if job.mode == "exec":
        return f"entrypoint replaces the image's ENTRYPOINT and CMD ({src})"
    if job.args:
        return f"image ENTRYPOINT kept, command replaces CMD ({src}); --no-eval: arguments arrive literally"
    return "image ENTRYPOINT + CMD (no entrypoint or command in the job)"


def _words(argv: list[str]) -> str:
    return comment_text(sh_join(argv))


def comment_text(text: str) -> str:
    """Text for a '# …' line: a newline would end the comment and start code."""
    return text.replace("\n", "\\n")
