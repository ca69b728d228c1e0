#!/usr/bin/env python3
"""Write the dev cluster's tiny test image, offline, with the standard library only.

The image is a single layer holding a static busybox (all applets as symlinks), an
entrypoint script and a working directory. It is written three ways, all from the same
bytes, so their contents (and the OCI manifest digest) are identical on every run:

    OUT/tiny-oci/         OCI image layout directory   (apptainer: oci:OUT/tiny-oci)
    OUT/tiny.oci.tar      OCI layout as a tar          (apptainer: oci-archive:OUT/tiny.oci.tar)
    OUT/tiny.docker.tar   `docker save` format         (apptainer: docker-archive:OUT/tiny.docker.tar)
    OUT/tiny.json         metadata: entrypoint, cmd, env, workdir, digests

Image config (what the tests rely on):
    Entrypoint ["/bin/sh", "/usr/local/bin/entry.sh"]   prints "entry-argc: N", then each
                                                        argument as "entry: ARG", then
                                                        "entry-pwd: CWD"
    Cmd        ["default-cmd"]
    Env        PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin, TINY_VAR=from-image
    WorkingDir /opt/work   (contains marker.txt with the line "tiny-workdir")

Usage: make-oci-image.py --busybox /bin/busybox --out DIR [--repo test/tiny] [--tag 1]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENTRYPOINT = ["/bin/sh", "/usr/local/bin/entry.sh"]
CMD = ["default-cmd"]
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "TINY_VAR": "from-image"}
WORKDIR = "/opt/work"
ENTRY_PREFIX = "entry: "
ENTRY_SH = """#!/bin/sh
# Entrypoint of the hpcjobs tiny test image: prints its arguments, one per line.
echo "entry-argc: $#"
for a in "$@"; do
  echo "entry: $a"
done
echo "entry-pwd: $(pwd)"
"""
# Fixed timestamps make every build byte-identical (same digests, no needless re-push).
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1704067200"))  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _info(name: str, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0,
          link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


class TarWriter:
    """Deterministic tar writer (sorted input is the caller's job)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def dir(self, name: str, mode: int = 0o755) -> None:
        self.tar.addfile(_info(name.rstrip("/") + "/", kind=tarfile.DIRTYPE, mode=mode))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.tar.addfile(_info(name, mode=mode, size=len(data)), io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        self.tar.addfile(_info(name, kind=tarfile.SYMTYPE, mode=0o777, link=target))

    def close(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def busybox_applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout
    names = sorted({a.strip() for a in out.split() if a.strip() and "/" not in a})
    return [a for a in names if a != "busybox"]


def build_layer(busybox: Path) -> bytes:
    bb = busybox.read_bytes()
    t = TarWriter()
    for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("opt", 0o755),
                    ("opt/work", 0o755), ("proc", 0o755), ("root", 0o700), ("sys", 0o755),
                    ("tmp", 0o1777), ("usr", 0o755), ("usr/bin", 0o755), ("usr/local", 0o755),
                    ("usr/local/bin", 0o755), ("usr/sbin", 0o755), ("var", 0o755),
                    ("var/tmp", 0o1777)]:
        t.dir(d, mode)
    t.file("bin/busybox", bb, 0o755)
    for applet in busybox_applets(busybox):
        t.symlink(f"bin/{applet}", "busybox")
    t.symlink("usr/bin/env", "../../bin/busybox")
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
           b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    t.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    t.file("etc/os-release", b'ID=hpcjobs-tiny\nNAME="hpcjobs tiny test image"\nVERSION_ID=1\n')
    t.file("opt/work/marker.txt", b"tiny-workdir\n")
    t.file("usr/local/bin/entry.sh", ENTRY_SH.encode(), 0o755)
    return t.close()


def go_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x"}.get(m, m)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@dataclass(frozen=True)
class OciImage:
    diff_id: str
    config_digest: str
    config_bytes: bytes
    manifest_digest: str
    index_bytes: bytes
    oci_layout: bytes
    blobs: dict[str, bytes]


def oci_image(layer: bytes, config: dict[str, object], tag: str, *, gzip_level: int) -> OciImage:
    """Config, manifest and index for a single-layer image; blobs by digest."""
    layer_gz = gzip.compress(layer, compresslevel=gzip_level, mtime=0)
    diff_id = "sha256:" + sha256(layer)
    layer_digest = "sha256:" + sha256(layer_gz)
    config_bytes = canonical_json({
        "architecture": go_arch(),
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "scripts/make-oci-image.py"}],
    })
    config_digest = "sha256:" + sha256(config_bytes)
    manifest_bytes = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MT_OCI_LAYER_GZ, "digest": layer_digest, "size": len(layer_gz)}],
    })
    manifest_digest = "sha256:" + sha256(manifest_bytes)
    index_bytes = canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [{
            "mediaType": MT_OCI_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    })
    return OciImage(diff_id, config_digest, config_bytes, manifest_digest, index_bytes,
                    canonical_json({"imageLayoutVersion": "1.0.0"}),
                    {manifest_digest: manifest_bytes, config_digest: config_bytes, layer_digest: layer_gz})


def write_layout_dir(img: OciImage, out: Path, name: str) -> Path:
    """OUT/NAME as an OCI image layout directory, built aside and swapped in."""
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    (tmpdir / "blobs" / "sha256").mkdir(parents=True)
    (tmpdir / "oci-layout").write_bytes(img.oci_layout)
    (tmpdir / "index.json").write_bytes(img.index_bytes)
    for digest, data in img.blobs.items():
        (tmpdir / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
    for root, _dirs, files in os.walk(tmpdir):
        os.chmod(root, 0o755)  # noqa: S103 (images must be readable by the unprivileged test user)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    final = out / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmpdir, final)
    return final


def rootfs_layer(rootfs: Path) -> bytes:
    """A deterministic tar of a root filesystem: sorted, owned by root, mtime 0, hard links kept."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            return info

        paths = sorted(p for p in rootfs.rglob("*"))
        for path in paths:
            tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False, filter=reset)
    return buf.getvalue()


def main_rootfs(rootfs: Path, out: Path, name: str, tag: str) -> int:
    """OUT/NAME-oci (OCI layout) and OUT/NAME.json from a root filesystem directory."""
    out.mkdir(parents=True, exist_ok=True)
    img = oci_image(rootfs_layer(rootfs), {
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"],
        "Cmd": ["/bin/bash"],
        "Labels": {"org.opencontainers.image.title": f"hpcjobs {name} test image"},
    }, tag, gzip_level=1)
    final = write_layout_dir(img, out, f"{name}-oci")
    meta = {"manifest_digest": img.manifest_digest, "config_digest": img.config_digest, "tag": tag}
    write_atomic(out / f"{name}.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    print(f"wrote {final} (manifest {img.manifest_digest})")
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busybox", default=shutil.which("busybox") or "/bin/busybox",
                    help="a STATIC busybox binary (Debian: busybox-static)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--repo", default="test/tiny", help="repository name recorded in the archives")
    ap.add_argument("--tag", default="1", help="tag recorded in the archives")
    ap.add_argument("--rootfs", help="instead: write OUT/NAME-oci from this root filesystem directory")
    ap.add_argument("--name", default="mpi", help="with --rootfs: the image's file name")
    args = ap.parse_args(argv)
    if args.rootfs:
        return main_rootfs(Path(args.rootfs), Path(args.out), args.name, args.tag)

    busybox = Path(args.busybox)
    if not busybox.is_file():
        ap.error(f"busybox not found: {busybox}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    layer = build_layer(busybox)
    img = oci_image(layer, {
        "Entrypoint": ENTRYPOINT,
        "Cmd": CMD,
        "Env": [f"{k}={v}" for k, v in ENV.items()],
        "WorkingDir": WORKDIR,
        "Labels": {"org.opencontainers.image.title": "hpcjobs tiny test image"},
    }, args.tag, gzip_level=6)
    diff_id, config_digest, config_bytes, manifest_digest = (
        img.diff_id, img.config_digest, img.config_bytes, img.manifest_digest)
    oci_layout, index_bytes, blobs = img.oci_layout, img.index_bytes, img.blobs

    # 1. OCI layout directory (built aside, then swapped in)
    final = write_layout_dir(img, out, "tiny-oci")

    # 2. oci-archive: the same layout as a tar, WITH directory entries blobs/ and blobs/sha256/
    t = TarWriter()
    t.file("oci-layout", oci_layout)
    t.file("index.json", index_bytes)
    t.dir("blobs")
    t.dir("blobs/sha256")
    for digest in sorted(blobs):
        t.file("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
    write_atomic(out / "tiny.oci.tar", t.close())

    # 3. docker-archive (docker save format, uncompressed layer)
    layer_id = diff_id.split(":", 1)[1]
    config_name = config_digest.split(":", 1)[1] + ".json"
    docker_manifest = [{"Config": config_name, "RepoTags": [f"{args.repo}:{args.tag}"],
                        "Layers": [f"{layer_id}/layer.tar"]}]
    t = TarWriter()
    t.file(config_name, config_bytes)
    t.dir(layer_id)
    t.file(f"{layer_id}/VERSION", b"1.0")
    t.file(f"{layer_id}/json", canonical_json({"id": layer_id, "created": CREATED}))
    t.file(f"{layer_id}/layer.tar", layer)
    t.file("manifest.json", canonical_json(docker_manifest))
    t.file("repositories", canonical_json({args.repo: {args.tag: layer_id}}))
    write_atomic(out / "tiny.docker.tar", t.close())

    meta = {
        "entrypoint": ENTRYPOINT,
        "cmd": CMD,
        "env": ENV,
        "workdir": WORKDIR,
        "entry_prefix": ENTRY_PREFIX,
        "manifest_digest": manifest_digest,
        "config_digest": config_digest,
        "repo": args.repo,
        "tag": args.tag,
    }
    write_atomic(out / "tiny.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    print(f"wrote {final}, {out / 'tiny.oci.tar'}, {out / 'tiny.docker.tar'} (manifest {manifest_digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
