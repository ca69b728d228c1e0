"""The Podman runtime: image preparation into Podman's store, and the ``podman run`` words."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hpcjobs.errors import ConfigError, ImageError
from hpcjobs.plugin_api import ImageContext, LaunchPlan, ResolvedJob, ScriptLine, Words

# Launch variables each task's container needs (Podman starts every container with a clean
# environment: without these a rank would not know its rank, nor a GPU job its GPUs).
# `-e NAME*` passes the matching host variables, taken per task after srun set them.
FORWARD_PATTERNS = (
    "SLURM_*", "PMIX_*", "PMI_*", "OMPI_*", "PRTE_*",
    "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
)  # fmt: skip

# Flags of `podman run` that make a host path appear in the container: the site's deny list never
# sees what they mount. Long forms (also as --flag=value) and the short -v (also combined, -itv).
_MOUNT_FLAGS = frozenset({"volume", "mount", "volumes-from", "device", "rootfs", "hooks-dir", "env-file"})
_MOUNT_SHORT = frozenset("v")
ARCHIVE_TRANSPORTS = ("docker-archive:", "oci-archive:", "oci:")


class PodmanSettings(BaseModel):
    """``plugins.podman`` in a site config."""

    # validators built on first use: loading the plugin (every render and submit) builds none
    model_config = ConfigDict(extra="forbid", defer_build=True)

    global_flags: list[str] = Field(
        default_factory=list,
        description="Flags before `run`, e.g. ['--runtime', 'runc'] where crun cannot run (prefer containers.conf).",
    )
    oci_runtime_log: str | None = Field(
        "/dev/null",
        description="--runtime-flag log=…: where the OCI runtime (runc, crun) writes its own log. Its warnings "
        "otherwise land in the job's output; Podman still reports the runtime's errors. None: its stderr.",
    )
    network: str = Field("host", description="--network: host (HPC shape; rootless slirp needs /dev/net/tun).")
    pid: str | None = Field("host", description="--pid: host, so the host's tools see the tasks (None: omit).")
    userns: str | None = Field(
        "keep-id", description="--userns: keep-id runs as the user's own uid (rootless only; None: omit)."
    )
    pull: Literal["missing", "never", "always", "newer"] = Field(
        "missing", description="--pull for each task: 'missing' pulls the pinned digest on nodes that lack it."
    )
    gpu_devices: list[str] = Field(
        default_factory=list, description="Device files passed with --device when gpu.flag is 'device'."
    )
    tls_verify: bool | None = Field(
        None,
        description="TLS verification for pulls; null: off for images.insecure_registries and loopback registries.",
    )
    cdi_devices: list[str] = Field(
        default_factory=lambda: ["nvidia.com/gpu=all"],
        description="CDI device names passed with --device when gpu.flag is 'cdi'.",
    )
    log_driver: str | None = Field(
        "auto",
        description="--log-driver. 'auto': passthrough (the container writes to the task's own stdout and stderr) "
        "unless the task's streams may be a terminal (a local run on one), where Podman refuses it and its "
        "default applies; another name: always that driver; None: omit (Podman's default, containers.conf).",
    )


class DockerSettings(PodmanSettings):
    """``plugins.docker`` in a site config (local runs with a ``docker`` CLI): Docker has no
    ``--userns keep-id`` and no ``--tls-verify`` (its daemon's insecure-registries decide)."""

    userns: str | None = Field(None, description="--userns (Docker: only 'host'); None: omit.")
    oci_runtime_log: str | None = Field(None, description="Docker's CLI has no --runtime-flag: None.")
    log_driver: str | None = Field(
        None,
        description="--log-driver; None: the daemon's. 'auto' (as for Podman: passthrough without a terminal) only "
        "where `docker` is Podman (podman-docker): Docker itself has no passthrough driver.",
    )


def settings_of(job: ResolvedJob, section: str = "podman") -> PodmanSettings:
    model = DockerSettings if section == "docker" else PodmanSettings
    return model.model_validate(job.plugin_settings.get(section) or {})


def mounts_host_path(flag: str) -> bool:
    """Whether a ``podman run`` flag mounts a host path (``-v``, ``--volume``, ``--mount``,
    ``--volumes-from``, ``--device``, ``--rootfs`` …, also ``--flag=value`` and combined ``-itv``)."""
    if flag.startswith("--"):
        return flag[2:].split("=", 1)[0] in _MOUNT_FLAGS
    if flag.startswith("-"):
        letters = re.match(r"[A-Za-z]*", flag[1:])
        return bool(letters and set(letters.group(0)) & _MOUNT_SHORT)
    return False


def podman_ref(image: str) -> str:
    """What ``podman run`` is given for a job's image (``docker://`` is implied by Podman)."""
    return image.removeprefix("docker://")


def registry_of(ref: str) -> str:
    """The registry host[:port] of a Podman reference (Docker's rule: a first component with '.', ':' or
    'localhost' is a registry)."""
    first, sep, _rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return "docker.io"


def insecure(registry: str, site: Any) -> bool:
    """Plain HTTP / no TLS verification: the site's ``images.insecure_registries`` and loopback."""
    names = {n.lower() for n in getattr(getattr(site, "images", None), "insecure_registries", []) or []}
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 or registry.startswith("[") else registry
    if registry in names or host in names or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_verify(job: ResolvedJob, ref: str, section: str = "podman") -> bool:
    """The TLS setting for pulling ``ref``: ``plugins.podman.tls_verify`` (which image preparation
    fills in from the site's insecure registries), else off only for loopback registries."""
    cfg = settings_of(job, section)
    if cfg.tls_verify is not None:
        return cfg.tls_verify
    return not insecure(registry_of(ref), None)


def _run(ctx: ImageContext, argv: list[str]) -> tuple[int, str, str]:
    if ctx.runner is not None:
        done = ctx.runner(argv, timeout_s=600)
        return done.returncode, done.stdout, done.stderr
    import subprocess  # here: loading the plugin (every render and submit) does not need it

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


class PodmanRuntime:
    name = "podman"
    default_binary = "podman"
    gpu_flags: Sequence[str] = ("device", "cdi", "none")
    section = "podman"  # the site config's plugins.<section>
    tls_flag = True  # whether the CLI takes --tls-verify (Docker's does not)

    def mounts_host_path(self, flag: str) -> bool:
        return mounts_host_path(flag)

    # ------------------------------------------------------------------ image preparation

    def prepare_image(self, job: ResolvedJob, ctx: ImageContext) -> ResolvedJob:
        """Pull the image into the submitting user's Podman store and pin it by digest; with
        ``ctx.pin`` only look it up (a digest already in the store, or the reference as it is)."""
        ref = job.image_ref or job.image
        job = _with_tls(job, ctx.site, self.section)
        binary = [job.runtime_binary or self.default_binary, *settings_of(job, self.section).global_flags]
        if ref.endswith(".sif") or ref.startswith(("/", "./", "library://", "shub://", "oras://")):
            raise ConfigError(
                f"image {ref!r}: the podman runtime runs OCI images from a registry (docker://…) or an archive "
                "(docker-archive:, oci-archive:), not SIF files or paths"
            )
        if ref.startswith(ARCHIVE_TRANSPORTS):
            if ctx.pin:
                return replace(job, image_ref=ref)
            rc, out, err = _run(ctx, [*binary, "pull", "-q", ref])
            if rc != 0:
                raise ImageError(f"podman pull {ref} failed (exit {rc}): {_last_line(err)}")
            image_id = out.strip().splitlines()[-1] if out.strip() else ""
            return replace(job, image=image_id, image_ref=ref, image_digest=None)
        name = podman_ref(ref)
        if "@sha256:" in name:
            return replace(job, image=name, image_ref=ref, image_digest=name.split("@", 1)[1])
        if not ctx.pin:
            verify = "true" if tls_verify(job, name, self.section) else "false"
            tls = [f"--tls-verify={verify}"] if self.tls_flag else []
            rc, _out, err = _run(ctx, [*binary, "pull", "-q", *tls, name])
            if rc != 0:
                raise ImageError(f"{self.name} pull {name} failed (exit {rc}): {_last_line(err)}")
        repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        digest, err = self.digest(ctx, binary, name, repo)
        if digest is None:
            if ctx.pin:  # not in the store yet: render names the reference; submit pins it
                return replace(job, image=name, image_ref=ref)
            raise ImageError(f"{self.name} image inspect {name}: no digest after the pull ({err})")
        return replace(job, image=f"{repo}@{digest}", image_ref=ref, image_digest=digest)

    def digest(self, ctx: ImageContext, binary: list[str], name: str, repo: str) -> tuple[str | None, str]:
        """The manifest digest of ``name`` in the local store, or (None, why)."""
        rc, out, err = _run(ctx, [*binary, "image", "inspect", "--format", "{{.Digest}}", name])
        digest = out.strip()
        return (digest, "") if rc == 0 and digest.startswith("sha256:") else (None, _last_line(err))

    # ------------------------------------------------------------------ plan

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        if not job.cleanenv:
            plan.epilogue.append(ScriptLine(
                code="# podman: every container starts with a clean environment (the image's ENV, the job's env "
                "and the forwarded launch variables); cleanenv changes nothing",
                explain_only=True,
            ))  # fmt: skip
        for words in self.container_words(job):
            plan.add(words)

    def container_words(self, job: ResolvedJob) -> list[Words]:
        """``podman [global flags] run --rm … [-e …] [--device …] [--mount …] [-w DIR] IMAGE [ARGS]``."""
        n = self.name
        cfg = settings_of(job, self.section)
        site_cfg = f"site config plugins.{self.section} ({job.site})"

        def w(argv: Sequence[str], source: str, role: str = "runtime") -> Words:
            return Words(tuple(argv), source, role, n)  # type: ignore[arg-type]

        binary = job.source("runtime_binary") if job.runtime_binary else "the runtime's own"
        out = [w([job.runtime_binary or self.default_binary],
                 f"runtime {job.runtime}: {job.source('runtime')}; binary: {binary}")]  # fmt: skip
        if cfg.oci_runtime_log:
            # The OCI runtime's stderr is the task's, i.e. the job's output. With --rm and --pid host, rootless on
            # cgroup v1, runc 1.1.15 (Debian 13) warns at every exit that it has no cgroup to freeze ("lstat : no
            # such file or directory"; Podman's --log-level does not reach it). Slurm's step cgroup does that job.
            out.append(w(["--runtime-flag", f"log={cfg.oci_runtime_log}"],
                         f"the OCI runtime's own log, out of the job's output: {site_cfg}"))
        if cfg.global_flags:
            out.append(w(cfg.global_flags, f"global flags: {site_cfg}"))
        out.append(w(["run", "--rm"], _mode_note(job)))
        log = log_driver_words(job, cfg)
        if log:
            out.append(w(log, f"{_log_note(cfg)}: {site_cfg}"))
        shape = ["--network", cfg.network]
        if cfg.pid:
            shape += ["--pid", cfg.pid]
        if cfg.userns:
            shape += ["--userns", cfg.userns]
        out.append(w(shape, f"HPC shape (host network/pid, own uid): {site_cfg}"))
        image = podman_ref(job.image)
        if job.image_ref is None or not job.image_ref.startswith(ARCHIVE_TRANSPORTS):
            if self.tls_flag:
                tls = "true" if tls_verify(job, image, self.section) else "false"
                out.append(w(["--pull", cfg.pull, f"--tls-verify={tls}"],
                             f"pull policy per task: {site_cfg}; TLS from images.insecure_registries/loopback"))
            else:
                out.append(w(["--pull", cfg.pull], f"pull policy per task: {site_cfg}"))
        else:
            out.append(w(["--pull", "never"], "image loaded from an archive into the submitter's store"))
        forward: list[str] = []
        for pat in FORWARD_PATTERNS:
            forward += ["-e", pat]
        out.append(w(forward, "launch variables forwarded into the container (per task)"))
        for key, value in job.env.items():
            # `-e NAME=VALUE` reaches the process literally: Podman evaluates nothing (verified, podman 4.3)
            out.append(w(["-e", f"{key}={value}"], f"env: {job.source(f'env:{key}')}"))
        if job.gpu_flag and job.gpu_flag != "none":
            why = f"GPUs requested (gpus: {job.source('gpus')}); flag: {job.source('gpu_flag')}"
            devices = cfg.gpu_devices if job.gpu_flag == "device" else cfg.cdi_devices
            if not devices:
                raise ConfigError(
                    f"gpu.flag {job.gpu_flag!r} with the {self.name} runtime needs plugins.{self.section}."
                    f"{'gpu_devices' if job.gpu_flag == 'device' else 'cdi_devices'} in site {job.site!r}"
                )
            argv: list[str] = []
            for dev in devices:
                argv += ["--device", dev]
            out.append(w(argv, f"{why}; devices: {site_cfg}"))
        for b in job.binds:
            # --mount, not -v: a path may hold ':' (the bind model already refuses ',')
            spec = f"type=bind,source={b.src},destination={b.dst}" + (",readonly" if b.mode == "ro" else "")
            out.append(w(["--mount", spec], f"bind: {job.source('bind:' + b.dst)}"))
        if job.workdir:
            out.append(w(["-w", job.workdir], f"workdir: {job.source('workdir')}"))
        for i, flag in enumerate(job.runtime_flags):
            out.append(w([flag], f"runtime flag: {job.source(f'runtime_flags[{i}]')}"))
        if job.mode == "exec":
            out.append(w(["--entrypoint", ""], "the job's entrypoint replaces the image's ENTRYPOINT and CMD"))
        what = "image (pinned digest in Podman's store)" if job.image_digest else "image"
        out.append(w([image], f"{what}: {job.source('image')}", "image"))
        if job.args:
            field = "entrypoint + command" if job.mode == "exec" else "command"
            out.append(w(job.args, f"{field}: {job.source('entry')}", "program" if job.mode == "exec" else "arguments"))
        return out


def _with_tls(job: ResolvedJob, site: Any, name: str) -> ResolvedJob:
    """``job`` with ``plugins.<name>.tls_verify`` decided from the site (render has no site object)."""
    section = dict(job.plugin_settings.get(name) or {})
    if section.get("tls_verify") is not None:
        return job
    ref = podman_ref(job.image_ref or job.image)
    section["tls_verify"] = not insecure(registry_of(ref), site)
    return replace(job, plugin_settings={**job.plugin_settings, name: section})


class DockerRuntime(PodmanRuntime):
    """A ``docker`` CLI (Docker, or Podman's ``podman-docker``), for local runs on a workstation: the
    same words as Podman less ``--userns keep-id`` and ``--tls-verify``; images from Docker's store."""

    name = "docker"
    default_binary = "docker"
    section = "docker"
    tls_flag = False

    def digest(self, ctx: ImageContext, binary: list[str], name: str, repo: str) -> tuple[str | None, str]:
        # Docker's inspect has no .Digest: the repository's entry in RepoDigests (REPO@sha256:…)
        rc, out, err = _run(ctx, [*binary, "image", "inspect", "--format", "{{json .RepoDigests}}", name])
        if rc != 0:
            return None, _last_line(err)
        import json

        try:
            entries = [str(e) for e in json.loads(out.strip() or "[]")]
        except ValueError:
            return None, f"unexpected inspect output {out.strip()[:80]!r}"
        found = sorted({e.split("@", 1)[1] for e in entries if e.split("@", 1)[0] == repo and "@sha256:" in e})
        if len(found) == 1:
            return found[0], ""
        return None, f"{len(found)} digests for {repo} in the store"


PASSTHROUGH = "passthrough"


def task_may_have_tty(job: ResolvedJob) -> bool | None:
    """Whether a task's stdin, stdout or stderr may be a terminal (then Podman refuses the passthrough
    log driver): a local run on one (``stdio_tty``, core API 1.3; batch tasks never have one: the core
    refuses srun's ``--pty``). None: a core older than 1.3, which does not say."""
    tty = getattr(job, "stdio_tty", None)
    return None if tty is None else bool(tty)


def log_driver_words(job: ResolvedJob, cfg: PodmanSettings) -> list[str]:
    """``--log-driver NAME`` or nothing. 'auto' is passthrough where no task stream can be a terminal.

    Why: with Podman's default drivers the container writes into a pipe that conmon reads, appends to
    its log file and sends to the clients it has accepted on the attach socket, one of which is
    ``podman run``, which copies it to the task's stdout and stderr. For containers that exit at once
    that relay lost all their output (exit code 0) in CI under load, with Podman 4.3 and 5.4. With
    passthrough the container's stdout and stderr are the task's own descriptors: nothing copies them,
    and the two streams stay apart and in order. Podman refuses it when its stdin, stdout or stderr
    is a terminal (the container could push input into it with TIOCSTI); Podman's default applies there."""
    if cfg.log_driver is None:
        return []
    if cfg.log_driver != "auto":
        return ["--log-driver", cfg.log_driver]
    return [] if task_may_have_tty(job) in (True, None) else ["--log-driver", PASSTHROUGH]


def _log_note(cfg: PodmanSettings) -> str:
    if cfg.log_driver != "auto":
        return f"log driver {cfg.log_driver}"
    return "log driver auto: passthrough, no task stream is a terminal (the task's own stdout/stderr, no relay)"


def _mode_note(job: ResolvedJob) -> str:
    src = job.source("entry")
    if job.mode == "exec":
        return f"one container per task, removed after it exits; entrypoint from the job ({src})"
    if job.args:
        return f"one container per task, removed after it exits; image ENTRYPOINT kept, command replaces CMD ({src})"
    return "one container per task, removed after it exits; image ENTRYPOINT + CMD"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"
