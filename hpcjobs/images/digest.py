"""Resolve an image source to its content digest *before* anything is converted.

The cache key is the **image config digest** (Docker's "image ID"): the sha256 of the image's config
blob, which names every uncompressed layer (``rootfs.diff_ids``) and the runtime config (entrypoint,
env, …) — everything that ends up in the SIF, and nothing that does not. Manifest digests are not
used as keys because one image has several: a ``docker save`` archive has none of its own (tools
invent one, and it differs from the OCI archive's), and re-compressing layers changes it. So one
image reached as ``docker-archive:``, ``oci-archive:``, ``oci:`` or ``docker://`` converts once.

The manifest digest is still resolved (a tag is resolved to it first) and recorded, and conversion
always reads the digest-pinned source, so a tag that moves while we convert cannot change what
gets built. Definition files are keyed by the sha256 of their text plus the files their ``%files``
sections copy (see :mod:`hpcjobs.images.deffile`).
"""

from __future__ import annotations

import json
import os
import platform as _platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hpcjobs.errors import ImageError
from hpcjobs.images.refs import DIGEST_RE, ImageRef
from hpcjobs.images.registry import (
    MAX_MANIFEST_BYTES,
    InsecureRegistries,
    NeedsCredentials,
    RegistryHttp,
    Skopeo,
    digest_of,
    is_index,
    json_object,
)
from hpcjobs.runner import Runner

if TYPE_CHECKING:
    import tarfile

REF_NAME = "org.opencontainers.image.ref.name"
KeyKind = Literal["config", "def"]
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "i686": "386",
    "i386": "386",
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def host_platform() -> Platform:
    machine = _platform.machine().lower()
    arch = _GOARCH.get(machine, machine)
    variant = "v8" if arch == "arm64" else ("v7" if arch == "arm" else None)
    return Platform("linux", arch, variant)


@dataclass(frozen=True)
class FileStamp:
    """Identity of a local source at resolution time; conversion checks it did not change."""

    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> FileStamp:
        st = os.stat(path)
        return cls(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        try:
            return FileStamp.of(self.path) != self
        except OSError:
            return True


@dataclass(frozen=True)
class BuildSource:
    """What ``apptainer build`` reads: transport + location, pinned to a digest where possible.

    ``extract``: the oci-archive holds several images; convert extracts the pinned one first.
    """

    transport: Literal["docker", "oci", "oci-archive", "docker-archive", "def"]
    location: str
    pin: str | None = None
    extract: bool = False


@dataclass(frozen=True)
class Resolved:
    ref: ImageRef
    key: str
    key_kind: KeyKind
    build: BuildSource
    manifest: str | None = None
    index: str | None = None
    stamp: FileStamp | None = None

    @property
    def file_key(self) -> str:
        """The key as a file name stem: ``sha256-<hex>``."""
        return key_stem(self.key)


def key_stem(key: str) -> str:
    if not DIGEST_RE.match(key):
        raise ImageError(f"not a content digest: {key!r}")
    return key.replace(":", "-", 1)


class DigestMemo(Protocol):
    """Content-addressed, immutable facts: (manifest or index digest, platform) → (manifest, config)."""

    def memo_get(self, top: str, platform: str) -> tuple[str, str] | None: ...

    def memo_put(self, top: str, platform: str, manifest: str, config: str) -> None: ...


class Resolver:
    """Turns an :class:`ImageRef` into a :class:`Resolved`. Registry access: HTTP API, then skopeo."""

    def __init__(
        self,
        runner: Runner,
        *,
        insecure: InsecureRegistries | None = None,
        memo: DigestMemo | None = None,
        platform: Platform | None = None,
        use_http: bool = True,
        skopeo_binary: str = "skopeo",
    ) -> None:
        self.insecure = insecure or InsecureRegistries()
        self.memo = memo
        self.platform = platform or host_platform()
        self.http = RegistryHttp(self.insecure) if use_http else None
        self.skopeo = Skopeo(runner, self.insecure, binary=skopeo_binary)

    def resolve(self, ref: ImageRef) -> Resolved:
        if ref.kind == "docker":
            return self._docker(ref)
        assert ref.path is not None
        if ref.kind == "oci":
            return read_oci_layout(ref, self.platform)
        if ref.kind == "oci-archive":
            return read_oci_archive(ref, self.platform)
        if ref.kind == "docker-archive":
            return read_docker_archive(ref)
        if ref.kind == "def":
            from hpcjobs.images.deffile import def_digest

            key = def_digest(ref.path)
            return Resolved(ref, key, "def", BuildSource("def", ref.path), stamp=FileStamp.of(ref.path))
        raise ImageError(f"{ref.original!r}: a SIF file is used in place and has no cache key")

    # -- registry ---------------------------------------------------------------------------
    def _docker(self, ref: ImageRef) -> Resolved:
        top = ref.digest or self._ask(lambda c: c.tag_digest(ref))
        plat = str(self.platform)
        hit = self.memo.memo_get(top, plat) if self.memo is not None else None
        if hit is not None:
            manifest, config = hit
        else:
            m = self._ask(lambda c: c.manifest(ref, top))
            if m.is_index:
                entry = select_platform(m.body.get("manifests", []), self.platform, f"docker://{ref.name}@{top}")
                m = self._ask(lambda c: c.manifest(ref, entry))
                if m.is_index:
                    raise ImageError(f"docker://{ref.name}@{top}: nested image indexes are not supported")
            manifest = m.digest
            config = config_digest(m.body, f"docker://{ref.name}@{manifest}")
            if self.memo is not None:
                self.memo.memo_put(top, plat, manifest, config)
        return Resolved(
            ref,
            config,
            "config",
            BuildSource("docker", ref.name, pin=manifest),
            manifest=manifest,
            index=top if top != manifest else None,
        )

    def _ask(self, call: Callable[[Any], Any]) -> Any:
        if self.http is not None:
            try:
                return call(self.http)
            except NeedsCredentials:
                pass
        return call(self.skopeo)


# -- OCI and docker-save layouts ---------------------------------------------------------------
def config_digest(manifest: Mapping[str, Any], what: str) -> str:
    cfg = manifest.get("config")
    digest = cfg.get("digest") if isinstance(cfg, dict) else None
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        if manifest.get("schemaVersion") == 1:
            raise ImageError(f"{what}: schema 1 manifests are not supported (re-push the image)")
        raise ImageError(f"{what}: manifest has no config digest")
    return digest


def select_platform(entries: Sequence[Any], plat: Platform, what: str) -> str:
    """Pick the manifest for ``plat`` from an index's ``manifests``; returns its digest."""
    best: str | None = None
    seen: list[str] = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("digest"), str):
            continue
        p = e.get("platform") or {}
        seen.append(f"{p.get('os')}/{p.get('architecture')}" + (f"/{p['variant']}" if p.get("variant") else ""))
        if p.get("os") != plat.os or p.get("architecture") != plat.architecture:
            continue
        if plat.variant and p.get("variant") not in (None, plat.variant):
            continue
        if best is None or p.get("variant") == plat.variant:
            best = e["digest"]
    if best is None:
        raise ImageError(f"{what}: no image for {plat} (has: {', '.join(seen) or 'nothing'})")
    return best


def _pick_from_index(index: Mapping[str, Any], ref: ImageRef, what: str) -> Mapping[str, Any]:
    manifests = [m for m in index.get("manifests", []) if isinstance(m, dict) and isinstance(m.get("digest"), str)]
    if not manifests:
        raise ImageError(f"{what}: index.json lists no images")
    if ref.digest is not None:
        for m in manifests:
            if m["digest"] == ref.digest:
                return m
        raise ImageError(f"{what}: no image with digest {ref.digest} in index.json")
    names = [str((m.get("annotations") or {}).get(REF_NAME, "")) for m in manifests]
    if ref.tag is not None:
        tag = ref.tag
        matches = [m for m, n in zip(manifests, names, strict=True) if n == tag or n.endswith(f":{tag}")]
        if not matches:
            have = ", ".join(sorted({n for n in names if n})) or "no tags"
            raise ImageError(f"{what}: no image tagged {ref.tag!r} (has: {have})")
        return matches[0]
    if len(manifests) > 1:
        have = ", ".join(sorted({n for n in names if n})) or "untagged images"
        raise ImageError(f"{what}: holds {len(manifests)} images ({have}); name one with :TAG or @sha256:…")
    return manifests[0]


def _resolve_descriptor(
    desc: Mapping[str, Any], read_blob: Callable[[str], bytes], plat: Platform, what: str
) -> tuple[str, str]:
    """descriptor (maybe an index) → (manifest digest, config digest), verifying blob digests."""
    digest = str(desc["digest"])
    for _ in range(4):
        body = _json_blob(read_blob(digest), digest, what)
        if is_index(body, desc.get("mediaType")):
            digest = select_platform(body.get("manifests", []), plat, what)
            desc = {}
            continue
        return digest, config_digest(body, what)
    raise ImageError(f"{what}: image indexes nested too deeply")


def _json_blob(data: bytes, digest: str, what: str) -> dict[str, Any]:
    algo = digest.split(":", 1)[0]
    if digest_of(data, algo) != digest:
        raise ImageError(f"{what}: blob {digest} is corrupt (its content has another digest)")
    return json_object(data, what, f"blob {digest}")


def read_oci_layout(ref: ImageRef, plat: Platform | None = None) -> Resolved:
    assert ref.path is not None
    what = ref.canonical
    plat = plat or host_platform()
    root = ref.path
    if not os.path.isdir(root):
        raise ImageError(f"{what}: OCI layout directory not found")
    index_path = os.path.join(root, "index.json")

    def read_blob(digest: str) -> bytes:
        if not DIGEST_RE.match(digest):
            raise ImageError(f"{what}: bad digest {digest!r}")
        algo, hexd = digest.split(":", 1)
        try:
            with open(os.path.join(root, "blobs", algo, hexd), "rb") as f:
                return f.read(MAX_MANIFEST_BYTES)
        except OSError as exc:
            raise ImageError(f"{what}: blob {digest} missing: {exc.strerror}") from exc

    try:
        with open(index_path, "rb") as f:
            index = json.loads(f.read(MAX_MANIFEST_BYTES))
        stamp = FileStamp.of(index_path)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{what}: not an OCI image layout (index.json unreadable)") from exc
    desc = _pick_from_index(index, ref, what)
    manifest, config = _resolve_descriptor(desc, read_blob, plat, what)
    return Resolved(
        ref,
        config,
        "config",
        BuildSource("oci", root, pin=manifest),
        manifest=manifest,
        index=str(desc["digest"]) if desc["digest"] != manifest else None,
        stamp=stamp,
    )


class _TarIndex:
    """Member lookup by normalised name (``./x`` and ``x`` are the same member)."""

    def __init__(self, tar: tarfile.TarFile, what: str) -> None:
        self.tar = tar
        self.what = what
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            self.members[os.path.normpath(m.name).lstrip("/")] = m

    def read(self, name: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        info = self.members.get(os.path.normpath(name).lstrip("/"))
        if info is None:
            raise ImageError(f"{self.what}: archive has no {name}")
        f = self.tar.extractfile(info)
        if f is None:
            raise ImageError(f"{self.what}: {name} in the archive is not a file")
        with f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.what}: {name} in the archive is too large")
        return data

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as exc:
            raise ImageError(f"{self.what}: {name} is not JSON") from exc


@contextmanager
def _archive(path: str, what: str) -> Iterator[_TarIndex]:
    """The members of the tar archive at ``path``; a damaged archive is an ImageError."""
    import tarfile

    try:
        with _open_tar(path, what) as tar:
            yield _TarIndex(tar, what)
    except tarfile.TarError as exc:
        raise ImageError(f"{what}: damaged tar archive ({exc})") from exc


def _open_tar(path: str, what: str) -> tarfile.TarFile:
    import tarfile

    if not os.path.isfile(path):
        raise ImageError(f"{what}: archive not found")
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ImageError(f"{what}: not a readable tar archive ({exc})") from exc


def read_oci_archive(ref: ImageRef, plat: Platform | None = None) -> Resolved:
    assert ref.path is not None
    what = ref.canonical
    plat = plat or host_platform()
    stamp = _stamp(ref.path, what)
    with _archive(ref.path, what) as idx:
        index = idx.read_json("index.json")

        def read_blob(digest: str) -> bytes:
            if not DIGEST_RE.match(digest):
                raise ImageError(f"{what}: bad digest {digest!r}")
            return idx.read("blobs/" + digest.replace(":", "/", 1))

        desc = _pick_from_index(index, ref, what)
        manifest, config = _resolve_descriptor(desc, read_blob, plat, what)
        several = len(index.get("manifests", [])) > 1 or desc["digest"] != manifest
    # apptainer cannot pick one image out of an archive (oci-archive:F:TAG fails): extract it then
    return Resolved(
        ref,
        config,
        "config",
        BuildSource("oci-archive", ref.path, pin=manifest, extract=several),
        manifest=manifest,
        index=str(desc["digest"]) if desc["digest"] != manifest else None,
        stamp=stamp,
    )


def read_docker_archive(ref: ImageRef) -> Resolved:
    assert ref.path is not None
    what = ref.canonical
    stamp = _stamp(ref.path, what)
    with _archive(ref.path, what) as idx:
        manifest = idx.read_json("manifest.json")
        if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
            raise ImageError(f"{what}: manifest.json lists no images")
        if len(manifest) > 1:
            tags = [t for m in manifest if isinstance(m, dict) for t in (m.get("RepoTags") or [])]
            raise ImageError(
                f"{what}: holds {len(manifest)} images ({', '.join(tags) or 'untagged'}); "
                "save one image per archive"
            )
        cfg_name = manifest[0].get("Config")
        if not isinstance(cfg_name, str):
            raise ImageError(f"{what}: manifest.json names no Config")
        config = digest_of(idx.read(cfg_name, 64 * 1024 * 1024), "sha256")
    return Resolved(ref, config, "config", BuildSource("docker-archive", ref.path), stamp=stamp)


def _stamp(path: str, what: str) -> FileStamp:
    try:
        return FileStamp.of(path)
    except OSError as exc:
        raise ImageError(f"{what}: archive not found") from exc
