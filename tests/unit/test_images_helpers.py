"""Helpers for the image cache tests (no tests here): tiny images written with tarfile, a fake
Runner that "builds" SIFs, a local HTTP registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hpcjobs.images.sif import write_test_sif
from hpcjobs.runner import Call, Completed, RecordingRunner

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cj(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _tar(files: Mapping[str, bytes], dirs: Sequence[str] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in dirs:
            ti = tarfile.TarInfo(d.rstrip("/") + "/")
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            t.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class TinyImage:
    config: str
    manifest: str
    layer: bytes
    config_bytes: bytes
    manifest_bytes: bytes
    layer_gz: bytes
    blobs: dict[str, bytes] = field(default_factory=dict)


def tiny_image(content: bytes = b"hello", *, arch: str | None = None) -> TinyImage:
    from hpcjobs.images.digest import host_platform

    layer = _tar({"hello.txt": content})
    layer_gz = gzip.compress(layer, mtime=0)
    config = {
        "architecture": arch or host_platform().architecture,
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
    }
    config_bytes = cj(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha(layer_gz),
                "size": len(layer_gz),
            }
        ],
    }
    manifest_bytes = cj(manifest)
    img = TinyImage(sha(config_bytes), sha(manifest_bytes), layer, config_bytes, manifest_bytes, layer_gz)
    img.blobs = {img.manifest: manifest_bytes, img.config: config_bytes, sha(layer_gz): layer_gz}
    return img


def index_for(images: Sequence[tuple[TinyImage, str | None]]) -> bytes:
    manifests = []
    for img, tag in images:
        d: dict[str, Any] = {
            "mediaType": MT_MANIFEST,
            "digest": img.manifest,
            "size": len(img.manifest_bytes),
        }
        if tag is not None:
            d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        manifests.append(d)
    return cj({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests})


def write_oci_dir(path: Path, images: Sequence[tuple[TinyImage, str | None]]) -> Path:
    (path / "blobs" / "sha256").mkdir(parents=True)
    (path / "oci-layout").write_bytes(cj({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_bytes(index_for(images))
    for img, _ in images:
        for digest, data in img.blobs.items():
            (path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
    return path


def write_oci_archive(
    path: Path, images: Sequence[tuple[TinyImage, str | None]], *, dot_slash: bool = False
) -> Path:
    prefix = "./" if dot_slash else ""
    files = {
        f"{prefix}oci-layout": cj({"imageLayoutVersion": "1.0.0"}),
        f"{prefix}index.json": index_for(images),
    }
    for img, _ in images:
        for digest, data in img.blobs.items():
            files[f"{prefix}blobs/sha256/" + digest.split(":", 1)[1]] = data
    path.write_bytes(_tar(files, dirs=[f"{prefix}blobs", f"{prefix}blobs/sha256"]))
    return path


def write_docker_archive(path: Path, img: TinyImage, tag: str = "test/tiny:1") -> Path:
    layer_id = hashlib.sha256(img.layer).hexdigest()
    cfg_name = img.config.split(":", 1)[1] + ".json"
    files = {
        cfg_name: img.config_bytes,
        f"{layer_id}/layer.tar": img.layer,
        "manifest.json": cj([{"Config": cfg_name, "RepoTags": [tag], "Layers": [f"{layer_id}/layer.tar"]}]),
    }
    path.write_bytes(_tar(files))
    return path


class FakeRunner(RecordingRunner):
    """Answers ``apptainer build DEST SRC`` by writing a valid SIF (after ``delay_s``), counting
    builds in ``count_file``; other argv from ``answers`` (first matching prefix) or exit 0."""

    def __init__(
        self,
        count_file: Path | None = None,
        delay_s: float = 0.0,
        fail: bool = False,
        answers: Mapping[tuple[str, ...], Completed] | None = None,
        write_invalid: bool = False,
    ) -> None:
        super().__init__(answer=self._answer)
        self.count_file = count_file
        self.delay_s = delay_s
        self.fail = fail
        self.answers = dict(answers or {})
        self.write_invalid = write_invalid

    def _answer(self, call: Call) -> Completed:
        args = call.argv
        for prefix, answer in self.answers.items():
            if args[: len(prefix)] == prefix:
                return answer
        if len(args) >= 4 and args[1] == "build":
            dest, src = args[-2], args[-1]
            if self.count_file is not None:
                with open(self.count_file, "a") as f:
                    f.write(f"{os.getpid()} {src}\n")
            # like apptainer: the output file appears early and grows
            with open(dest, "wb") as f:
                f.write(b"partial")
            time.sleep(self.delay_s)
            if self.fail:
                return Completed(args, 255, "", "FATAL: build failed")
            if self.write_invalid:
                write_test_sif(dest, b"x" * 100, truncate_to=700)
            else:
                write_test_sif(dest, src.encode())
            return Completed(args, 0, "", "")
        return Completed(args, 0, "", "")

    def builds(self) -> list[tuple[str, ...]]:
        return [a for a in self.argvs() if len(a) > 1 and a[1] == "build"]


class _RegistryHandler(BaseHTTPRequestHandler):
    server: _RegistryServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        parts = self.path.split("/manifests/")
        if len(parts) != 2 or not parts[0].startswith("/v2/"):
            self.send_response(404)
            self.end_headers()
            return
        repo, ref = parts[0][4:], parts[1]
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self.send_response(401)
            port = self.server.server_address[1]
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="http://127.0.0.1:{port}/token",service="test",scope="repository:{repo}:pull"',
            )
            self.end_headers()
            return
        data = self.server.manifests.get(repo, {}).get(ref)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        mt = json.loads(data).get("mediaType", MT_MANIFEST)
        self.send_response(200)
        self.send_header("Content-Type", mt)
        self.send_header("Docker-Content-Digest", sha(data))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            self.server.requests.append((self.command, self.path))
            data = cj({"token": self.server.token})
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._answer(True)


class _RegistryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RegistryHandler)
        self.manifests: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.token: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def push(self, repo: str, tag: str, manifest: bytes) -> None:
        tags = self.manifests.setdefault(repo, {})
        tags[tag] = manifest
        tags[sha(manifest)] = manifest


def start_registry() -> _RegistryServer:
    srv = _RegistryServer()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv
