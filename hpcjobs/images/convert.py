"""Convert a resolved source to a SIF file with ``apptainer build`` (through the Runner), and check it.

``APPTAINER_CACHEDIR`` (layer blobs, per user) and ``APPTAINER_TMPDIR`` (the build's scratch space,
per conversion) point inside the cache, so conversions never fill ``$HOME`` or a small ``/tmp``.
Apptainer reads a local source through a symlink with a plain name when the real path holds
characters its transport syntax would misread (``:``, ``@``, spaces, quotes, newlines).

spython is used where it fits — reading labels of a finished SIF (:func:`spython_inspect`) —
wrapped so that its ``SystemExit`` never escapes. Builds go through the Runner instead: spython's
build cannot take a per-call environment (APPTAINER_CACHEDIR/TMPDIR) and would bypass the Runner.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hpcjobs.errors import HpcjobsError, ImageConversionError, ImageError, RunnerError
from hpcjobs.images.digest import Resolved
from hpcjobs.images.options import CacheOptions
from hpcjobs.images.registry import InsecureRegistries
from hpcjobs.images.sif import InvalidSif, SifSummary, verify_sif
from hpcjobs.runner import Runner

_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+=-]+$")
_BLOB_NAME = re.compile(r"^blobs/(sha256|sha512)/[0-9a-f]{64,128}$")
T = TypeVar("T")


class Converter:
    def __init__(self, runner: Runner, opts: CacheOptions) -> None:
        self.runner = runner
        self.opts = opts
        self.insecure = InsecureRegistries(opts.insecure_registries)
        prefix = "SINGULARITY" if opts.runtime == "singularity" else "APPTAINER"
        self._cachedir_var = f"{prefix}_CACHEDIR"
        self._tmpdir_var = f"{prefix}_TMPDIR"

    def build_argv(self, res: Resolved, dest: Path, source: str) -> list[str]:
        argv = [self.opts.binary, "build"]
        if res.build.transport == "docker" and res.ref.registry and self.insecure(res.ref.registry):
            argv.append("--no-https")
        argv += self.opts.mksquashfs_argv()
        argv += list(self.opts.extra_build_args)
        return [*argv, str(dest), source]

    def build(self, res: Resolved, dest: Path, workdir: Path, apptainer_cache: Path) -> None:
        """Build ``dest`` from ``res``; raises :class:`ImageConversionError` (dest may be left partial)."""
        source, cwd = self.source_arg(res, workdir)
        if self.opts.build_tmpdir:  # e.g. a node-local disk: unpacking layers on NFS/Lustre is slow
            os.makedirs(self.opts.build_tmpdir, mode=0o700, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix="hpcjobs-build-", dir=self.opts.build_tmpdir))
        else:
            scratch = workdir / "build-tmp"
            scratch.mkdir(mode=0o700, exist_ok=True)
        env = {self._cachedir_var: str(apptainer_cache), self._tmpdir_var: str(scratch)}
        try:
            result = self.runner(
                self.build_argv(res, dest, source), env=env, cwd=cwd, timeout_s=self.opts.build_timeout_s
            )
        except RunnerError as exc:
            raise ImageConversionError(f"cannot convert {res.ref.canonical}: {exc}") from exc
        finally:
            if self.opts.build_tmpdir:
                shutil.rmtree(scratch, ignore_errors=True)
        if not result.ok:
            lines = [ln for ln in (result.stderr or result.stdout).strip().splitlines() if ln.strip()]
            tail = " | ".join(lines[-3:]) or "no message"
            raise ImageConversionError(
                f"{self.opts.binary} build of {res.ref.canonical} failed (exit {result.returncode}): {tail}"
            )
        if res.stamp is not None and res.stamp.changed():
            raise ImageConversionError(f"{res.ref.canonical} changed while it was converted; try again")

    def source_arg(self, res: Resolved, workdir: Path) -> tuple[str, str]:
        """(the source argument for ``apptainer build``, the cwd to run it in)."""
        b = res.build
        if b.transport == "docker":
            return f"docker://{b.location}@{b.pin}" if b.pin else f"docker://{b.location}", str(workdir)
        if b.transport == "def":
            return _safe(b.location, workdir, "src.def"), os.path.dirname(b.location)
        if b.transport == "oci-archive" and b.extract:
            layout = extract_oci_archive(b.location, workdir / "layout")
            return f"oci:{layout}@{b.pin}", str(workdir)
        if b.transport == "oci":
            path = _safe(b.location, workdir, "src-layout")
            return (f"oci:{path}@{b.pin}" if b.pin else f"oci:{path}"), str(workdir)
        suffix = ".oci.tar" if b.transport == "oci-archive" else ".docker.tar"
        return f"{b.transport}:{_safe(b.location, workdir, 'src' + suffix)}", str(workdir)

    def verify(self, path: Path) -> SifSummary:
        """Structural SIF check (always); with ``verify: inspect`` also ``apptainer inspect``."""
        try:
            summary = verify_sif(path)
        except InvalidSif as exc:
            raise ImageConversionError(f"conversion produced an invalid SIF: {exc}") from exc
        if self.opts.verify == "inspect":
            try:
                result = self.runner([self.opts.binary, "inspect", str(path)], timeout_s=120)
            except RunnerError as exc:
                raise ImageConversionError(f"cannot verify {path}: {exc}") from exc
            if not result.ok:
                raise ImageConversionError(f"{self.opts.binary} inspect rejects the new SIF: {result.stderr.strip()}")
        return summary

    def inspect_labels(self, path: str) -> dict[str, Any]:
        """Labels of a SIF via ``apptainer inspect --json`` (Runner)."""
        try:
            result = self.runner([self.opts.binary, "inspect", "--json", "--labels", path], timeout_s=120)
        except RunnerError as exc:
            raise ImageError(f"cannot inspect {path}: {exc}") from exc
        if not result.ok:
            raise ImageError(f"{self.opts.binary} inspect {path} failed: {result.stderr.strip()}")
        return _labels_from_json(result.stdout)


def _labels_from_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    attrs = data.get("data", {}).get("attributes", {}) if isinstance(data, dict) else {}
    labels = attrs.get("labels") if isinstance(attrs, dict) else None
    return dict(labels) if isinstance(labels, dict) else {}


def _safe(path: str, workdir: Path, name: str) -> str:
    """``path`` itself when apptainer parses it unharmed, else a symlink to it with a plain name."""
    if _SAFE_PATH.match(path):
        return path
    link = workdir / name
    if not link.is_symlink():
        os.symlink(path, link)
    return str(link)


def extract_oci_archive(archive: str, dest: Path) -> Path:
    """Unpack the OCI layout inside ``archive`` (only index.json, oci-layout and blobs) into ``dest``."""
    import tarfile

    dest.mkdir(mode=0o700)
    (dest / "blobs").mkdir()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = os.path.normpath(member.name).lstrip("/")
                if not member.isfile():
                    continue
                if name not in ("index.json", "oci-layout") and not _BLOB_NAME.match(name):
                    continue
                target = dest / name
                target.parent.mkdir(exist_ok=True)
                src = tar.extractfile(member)
                if src is None:
                    continue
                with src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (tarfile.TarError, OSError) as exc:
        raise ImageConversionError(f"cannot unpack {archive!r}: {exc}") from exc
    return dest


def no_exit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call into spython; its ``SystemExit`` (and any other failure) becomes an :class:`ImageError`."""
    try:
        return fn(*args, **kwargs)
    except HpcjobsError:
        raise
    except SystemExit as exc:
        raise ImageError(f"spython gave up (exit {exc.code})") from None
    except Exception as exc:  # spython raises bare exceptions of many kinds
        raise ImageError(f"spython failed: {exc}") from exc


def spython_inspect(path: str) -> dict[str, Any]:
    """Labels of a SIF read with spython (lazily imported); raises ImageError, never SystemExit."""
    try:
        from spython.main import Client
    except ImportError as exc:
        raise ImageError("spython is not installed") from exc
    out = no_exit(Client.inspect, path, quiet=True)
    if isinstance(out, str):
        return _labels_from_json(out)
    if isinstance(out, dict):
        attrs = out.get("attributes") or out.get("data", {}).get("attributes", {})
        labels = attrs.get("labels") if isinstance(attrs, dict) else None
        if isinstance(labels, str):
            try:
                labels = json.loads(labels)
            except ValueError:
                labels = None
        return dict(labels) if isinstance(labels, dict) else {}
    return {}
