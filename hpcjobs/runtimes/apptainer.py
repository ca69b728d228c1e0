"""Apptainer (and, through a subclass, SingularityCE 3.x) as a runtime plugin.

Everything Apptainer-specific lives here: the command line, how the environment reaches the
container (``APPTAINERENV_*`` and its escaping), forwarding launch variables past ``--cleanenv``,
which flags mount host paths (for the bind policy), the login variables that add binds, and image
preparation through the SIF cache.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hpcjobs.errors import ConfigError
from hpcjobs.plugin_api import (
    HPCJOBS_PLUGIN_API,
    EnvVar,
    ImageContext,
    LaunchPlan,
    ResolvedJob,
    Runtime,
    ScriptLine,
    Words,
    hookimpl,
)

__all__ = ["HPCJOBS_PLUGIN_API", "ApptainerRuntime", "container_env_value"]

# Launch variables a task needs even when the container starts with --cleanenv.
FORWARD_PATTERNS = (
    "SLURM_*", "PMIX_*", "PMI_*", "OMPI_*", "PRTE_*",
    "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
)  # fmt: skip

# Variables through which a login environment would mount or redirect host paths that the site's
# deny list never saw: apptainer 1.4.5's action flags that take a host path (--bind, --mount,
# --home, --overlay, --scratch, --workdir, --fusemount, --containlibs; EnvKeys in
# cmd/internal/cli/action_flags.go) and the global --config, in both spellings apptainer reads.
RUNTIME_PATH_ENV_KEYS = ("BIND", "BINDPATH", "MOUNT", "HOME", "OVERLAY", "OVERLAYIMAGE", "SCRATCH",
                         "SCRATCHDIR", "WORKDIR", "FUSESPEC", "CONTAINLIBS", "CONFIG_FILE")  # fmt: skip
RUNTIME_BIND_ENV = tuple(f"{p}_{k}" for p in ("APPTAINER", "SINGULARITY") for k in RUNTIME_PATH_ENV_KEYS)

# Verified on apptainer 1.4.5: its env injection turns CRLF into LF and fails on U+0080/U+0081.
UNCARRIABLE_ENV = {"\r\n": "CR LF", "\x80": "U+0080", "\x81": "U+0081"}

# the same flags (and the global --config: an unprivileged installation reads the user's
# apptainer.conf, bind paths included)
_MOUNT_FLAGS = frozenset({"bind", "mount", "home", "overlay", "workdir", "scratch", "fusemount", "containlibs",
                          "config"})  # fmt: skip
_MOUNT_SHORT = frozenset("BHoWS")


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


def mounts_host_path(flag: str) -> bool:
    """Whether an Apptainer flag makes a host path appear in the container (``--bind``, ``--mount``,
    ``--home``, ``--overlay``, ``--workdir``, ``--scratch``, ``--fusemount``, ``--containlibs``,
    ``--config`` and the short forms, also combined, as in ``-cB /etc``); such flags would get
    around ``deny_bind_sources``."""
    if flag.startswith("--"):
        return flag[2:].split("=", 1)[0] in _MOUNT_FLAGS
    if flag.startswith("-"):
        letters = re.match(r"[A-Za-z]*", flag[1:])
        return bool(letters and set(letters.group(0)) & _MOUNT_SHORT)
    return False


class ApptainerRuntime:
    name = "apptainer"
    default_binary = "apptainer"
    env_prefix = "APPTAINERENV_"  # host variables with this prefix reach the container
    gpu_flags: Sequence[str] = ("nv", "nvccli", "rocm", "none")

    def mounts_host_path(self, flag: str) -> bool:
        return mounts_host_path(flag)

    def starts_in_job_dir(self, job: ResolvedJob) -> bool:
        """Without a workdir, whether the program starts in the job directory, mounted at its own
        path: Apptainer mounts the current directory unless told not to (verified on 1.4.5:
        ``--contain``/``--containall`` and ``--no-mount cwd`` start it in the container's $HOME)."""
        return not any(_unmounts_cwd(flag) for flag in job.runtime_flags)

    def prepare_image(self, job: ResolvedJob, ctx: ImageContext) -> ResolvedJob:
        from hpcjobs.images import pin_job, prepare_job

        if ctx.pin:
            return pin_job(job, ctx.site, ctx.runner, cache_dir=ctx.cache_dir)
        return prepare_job(job, ctx.site, ctx.runner, submitter=ctx.submitter, cache_dir=ctx.cache_dir)

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        if job.clear_bind_env:
            plan.prologue.append(ScriptLine(
                code=f"unset {' '.join(RUNTIME_BIND_ENV)}",
                source="site policy.deny_bind_sources: binds come only from the job and the site",
            ))  # fmt: skip
        for key, value in job.env.items():
            why = f"{job.source(f'env:{key}')} (env)"
            plan.env.append(EnvVar(f"{self.env_prefix}{key}", container_env_value(value), why))
        launcher_words = plan.index("launcher") is not None
        if job.cleanenv:
            kept = ", ".join(FORWARD_PATTERNS[:4])
            plan.epilogue.append(ScriptLine(
                code=f"# --cleanenv <- {job.source('cleanenv')}: launch variables ({kept}, "
                "CUDA_VISIBLE_DEVICES, …) are still forwarded into the container",
                explain_only=True,
            ))  # fmt: skip
            plan.epilogue += [ScriptLine(code=line) for line in _forward_function(self.env_prefix)]
            if launcher_words:
                # per task: srun/mpirun set SLURM_PROCID, PMIX_RANK … for each task, after this script ran
                plan.add(Words(
                    ("bash", "-c", 'hpcjobs_forward_env && exec "$@"', "hpcjobs-task"),
                    "--cleanenv with a launcher: forward each task's launch variables", "wrapper", self.name,
                ))  # fmt: skip
            else:
                plan.epilogue.append(ScriptLine(code="hpcjobs_forward_env"))
        for words in self.container_words(job):
            plan.add(words)

    def container_words(self, job: ResolvedJob) -> list[Words]:
        """``apptainer run|exec [flags] IMAGE [ARGS]``, each group with where it came from."""
        n = self.name

        def w(argv: Sequence[str], source: str, role: str = "runtime") -> Words:
            return Words(tuple(argv), source, role, n)  # type: ignore[arg-type]

        binary = job.source("runtime_binary") if job.runtime_binary else "the runtime's own"
        out = [w([job.runtime_binary or self.default_binary],
                 f"runtime {job.runtime}: {job.source('runtime')}; binary: {binary}")]  # fmt: skip
        # run keeps the image ENTRYPOINT; --no-eval stops run from shell-evaluating the arguments
        out.append(w(["run", "--no-eval"] if job.mode == "run" else ["exec"], _mode_note(job)))
        if job.gpu_flag and job.gpu_flag != "none":
            why = f"GPUs requested (gpus: {job.source('gpus')}); flag: {job.source('gpu_flag')}"
            out.append(w([f"--{job.gpu_flag}"], why))
        if job.cleanenv:
            out.append(w(["--cleanenv"], f"cleanenv: {job.source('cleanenv')}"))
        for b in job.binds:
            out.append(w(b.runtime_args(), f"bind: {job.source('bind:' + b.dst)}"))
        if job.workdir:
            out.append(w(["--pwd", job.workdir], f"workdir: {job.source('workdir')}"))
        for i, flag in enumerate(job.runtime_flags):
            out.append(w([flag], f"runtime flag: {job.source(f'runtime_flags[{i}]')}"))
        what = "image (converted, cached SIF)" if job.image_digest else "image"
        out.append(w([job.image], f"{what}: {job.source('image')}", "image"))
        if job.args:
            field = "entrypoint + command" if job.mode == "exec" else "command"
            out.append(w(job.args, f"{field}: {job.source('entry')}", "program" if job.mode == "exec" else "arguments"))
        return out


def _unmounts_cwd(flag: str) -> bool:
    if flag.startswith("--"):
        name, _, value = flag[2:].partition("=")
        return name in ("contain", "containall") or (name == "no-mount" and "cwd" in value.split(","))
    letters = re.match(r"-([A-Za-z]*)", flag)
    return bool(letters and set(letters.group(1)) & {"c", "C"})


def _mode_note(job: ResolvedJob) -> str:
    src = job.source("entry")
    if job.mode == "exec":
        return f"entrypoint replaces the image's ENTRYPOINT and CMD ({src})"
    if job.args:
        return f"image ENTRYPOINT kept, command replaces CMD ({src}); --no-eval: arguments arrive literally"
    return "image ENTRYPOINT + CMD (no entrypoint or command in the job)"


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


@hookimpl
def hpcjobs_runtimes() -> Sequence[Runtime]:
    return [ApptainerRuntime()]
