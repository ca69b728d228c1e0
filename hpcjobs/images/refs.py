"""Parse an image source string into an :class:`ImageRef`. No network; the filesystem is only
consulted to tell ``DIR:TAG`` from a directory whose name contains a colon.

Accepted sources::

    docker://[REGISTRY/]REPO[:TAG][@sha256:HEX]   registry image (default registry docker.io, tag latest)
    oci:DIR[:TAG|@sha256:HEX]                     OCI image layout directory
    oci-archive:FILE[:TAG]                        OCI image layout as a tar
    docker-archive:FILE                           ``docker save`` tar (one image)
    PATH.sif (or any file with the SIF magic)     used in place, never copied
    PATH.def (or a file starting "Bootstrap:")    Apptainer definition file, built

Paths may hold any character but NUL (spaces, quotes, newlines, colons): they are never given to
a shell, and :mod:`hpcjobs.images.convert` hands unusual ones to apptainer through a safe symlink.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

from hpcjobs.errors import ImageError

SourceKind = Literal["docker", "oci", "oci-archive", "docker-archive", "sif", "def"]

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
SIF_MAGIC = b"SIF_MAGIC"
_SIF_MAGIC_OFFSET = 32

DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_DIGEST_SUFFIX = re.compile(r"^(?P<head>.*)@(?P<digest>sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$", re.DOTALL)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
_UNSUPPORTED_SCHEMES = (
    "library://",
    "oras://",
    "shub://",
    "http://",
    "https://",
    "docker-daemon:",
    "instance://",
)


@dataclass(frozen=True)
class ImageRef:
    """A parsed image source. ``path`` is absolute for local kinds; docker fields are normalised."""

    kind: SourceKind
    original: str
    path: str | None = None
    registry: str | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None

    @property
    def canonical(self) -> str:
        """A normalised spelling, used in cache records (docker.io/library added, paths absolute)."""
        if self.kind == "docker":
            s = f"docker://{self.registry}/{self.repository}"
        else:
            assert self.path is not None
            if self.kind in ("sif", "def"):
                return self.path
            s = f"{self.kind}:{self.path}"
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s

    @property
    def is_local(self) -> bool:
        return self.kind != "docker"

    @property
    def name(self) -> str:
        """registry/repository for docker refs."""
        return f"{self.registry}/{self.repository}"


def parse_ref(text: str, *, cwd: str | None = None) -> ImageRef:
    """Parse ``text``; relative paths are made absolute against ``cwd`` (default: the process cwd)."""
    if not isinstance(text, str) or not text:
        raise ImageError("image reference is empty")
    if "\0" in text:
        raise ImageError(f"image reference {text!r} contains a NUL byte")
    if text.startswith("docker://"):
        return _parse_docker(text)
    for prefix in ("oci-archive:", "docker-archive:", "oci:"):
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            if not rest:
                raise ImageError(f"image reference {text!r}: missing path after {prefix!r}")
            kind: SourceKind = prefix[:-1]  # type: ignore[assignment]
            return _parse_local_transport(kind, text, rest, cwd)
    lowered = text.lower()
    for scheme in _UNSUPPORTED_SCHEMES:
        if lowered.startswith(scheme):
            raise ImageError(
                f"image reference {text!r}: {scheme} is not supported "
                "(use docker://, oci:, oci-archive:, docker-archive:, a .sif or a .def file)"
            )
    path = _abspath(text, cwd)
    if path.endswith(".sif") or _has_sif_magic(path):
        return ImageRef(kind="sif", original=text, path=path)
    if path.endswith(".def") or _looks_like_def(path):
        return ImageRef(kind="def", original=text, path=path)
    if os.path.exists(path):
        raise ImageError(f"{text!r} is neither a SIF file nor an Apptainer definition file")
    if "/" not in text.split(":", 1)[0] and ("://" not in text):
        raise ImageError(
            f"image reference {text!r} names no file and has no transport: for a registry image write docker://{text}"
        )
    raise ImageError(f"image file not found: {text!r}")


def _parse_docker(text: str) -> ImageRef:
    rest = text[len("docker://") :]
    if not rest:
        raise ImageError(f"image reference {text!r}: missing repository after docker://")
    digest: str | None = None
    m = _DIGEST_SUFFIX.match(rest)
    if m:
        rest, digest = m.group("head"), m.group("digest")
    elif "@" in rest:
        raise ImageError(f"image reference {text!r}: digest must be sha256:<64 hex> or sha512:<128 hex>")
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.match(tag):
            raise ImageError(f"image reference {text!r}: invalid tag {tag!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, repository = first, remainder
        if not _HOST_RE.match(registry):
            raise ImageError(f"image reference {text!r}: invalid registry {registry!r}")
    else:
        registry, repository = DEFAULT_REGISTRY, rest
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    if not REPO_RE.match(repository):
        raise ImageError(
            f"image reference {text!r}: invalid repository {repository!r} "
            "(lowercase letters, digits and . _ - separated by /)"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(kind="docker", original=text, registry=registry, repository=repository, tag=tag, digest=digest)


def _parse_local_transport(kind: SourceKind, text: str, rest: str, cwd: str | None) -> ImageRef:
    tag: str | None = None
    digest: str | None = None
    whole = _abspath(rest, cwd)
    exists = os.path.isdir(whole) if kind == "oci" else os.path.exists(whole)
    if kind == "docker-archive" or exists:
        return ImageRef(kind=kind, original=text, path=whole)
    m = _DIGEST_SUFFIX.match(rest)
    if m and kind == "oci":
        rest, digest = m.group("head"), m.group("digest")
    else:
        head, sep, maybe_tag = rest.rpartition(":")
        if sep and head and TAG_RE.match(maybe_tag):
            rest, tag = head, maybe_tag
    return ImageRef(kind=kind, original=text, path=_abspath(rest, cwd), tag=tag, digest=digest)


def _abspath(path: str, cwd: str | None) -> str:
    if path.startswith("~"):
        path = os.path.expanduser(path)
    if not os.path.isabs(path):
        path = os.path.join(cwd or os.getcwd(), path)
    return os.path.normpath(path)


def _has_sif_magic(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(_SIF_MAGIC_OFFSET + len(SIF_MAGIC))
    except OSError:
        return False
    return head[_SIF_MAGIC_OFFSET:] == SIF_MAGIC


def _looks_like_def(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    for raw in head.splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        return line.lower().startswith(b"bootstrap:")
    return False


def stat_sif(ref: ImageRef) -> os.stat_result:
    """The stat of a local SIF used in place; a missing file is an ImageError naming it."""
    assert ref.path is not None
    try:
        return os.stat(ref.path)
    except OSError as exc:
        raise ImageError(f"SIF file not found: {ref.path!r}") from exc
