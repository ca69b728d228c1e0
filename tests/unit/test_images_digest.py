"""Digest resolution before conversion: local archives read with tarfile, OCI layouts, registries
(HTTP API against a local test server, skopeo as the fallback), definition files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcjobs.errors import ImageError
from hpcjobs.images.deffile import def_digest, files_sources
from hpcjobs.images.digest import Platform, Resolver, host_platform
from hpcjobs.images.refs import parse_ref
from hpcjobs.images.registry import InsecureRegistries
from hpcjobs.runner import Completed

from .test_images_helpers import (
    MT_INDEX,
    FakeRunner,
    cj,
    sha,
    start_registry,
    tiny_image,
    write_docker_archive,
    write_oci_archive,
    write_oci_dir,
)


def resolver(runner: FakeRunner | None = None, **kw: object) -> Resolver:
    return Resolver(runner or FakeRunner(), **kw)  # type: ignore[arg-type]


def test_same_image_three_local_ways_one_key(tmp_path: Path) -> None:
    img = tiny_image()
    r = resolver()
    lay = r.resolve(parse_ref(f"oci:{write_oci_dir(tmp_path / 'lay', [(img, '1')])}"))
    arc = r.resolve(parse_ref(f"oci-archive:{write_oci_archive(tmp_path / 'a.tar', [(img, '1')])}"))
    dock = r.resolve(parse_ref(f"docker-archive:{write_docker_archive(tmp_path / 'd.tar', img)}"))
    assert lay.key == arc.key == dock.key == img.config
    assert lay.manifest == arc.manifest == img.manifest
    assert dock.manifest is None  # a docker save archive has no manifest digest of its own
    assert lay.build.pin == img.manifest and lay.build.transport == "oci"
    assert arc.build.extract is False


def test_oci_archive_with_dot_slash_names(tmp_path: Path) -> None:
    img = tiny_image()
    res = resolver().resolve(
        parse_ref(f"oci-archive:{write_oci_archive(tmp_path / 'a.tar', [(img, None)], dot_slash=True)}")
    )
    assert res.key == img.config


def test_tags_resolved_from_index_annotations(tmp_path: Path) -> None:
    one, two = tiny_image(b"one"), tiny_image(b"two")
    lay = write_oci_dir(tmp_path / "lay", [(one, "1"), (two, "2")])
    r = resolver()
    assert r.resolve(parse_ref(f"oci:{lay}:1")).key == one.config
    res2 = r.resolve(parse_ref(f"oci:{lay}:2"))
    assert res2.key == two.config and res2.build.pin == two.manifest  # apptainer gets oci:DIR@digest
    assert r.resolve(parse_ref(f"oci:{lay}@{two.manifest}")).key == two.config
    with pytest.raises(ImageError, match="holds 2 images"):
        r.resolve(parse_ref(f"oci:{lay}"))
    with pytest.raises(ImageError, match="no image tagged '3'"):
        r.resolve(parse_ref(f"oci:{lay}:3"))
    arc = write_oci_archive(tmp_path / "two.tar", [(one, "1"), (two, "2")])
    res = r.resolve(parse_ref(f"oci-archive:{arc}:2"))
    assert res.key == two.config and res.build.extract  # convert extracts the one image first


def test_platform_index_in_layout(tmp_path: Path) -> None:
    amd, arm = tiny_image(b"a", arch="amd64"), tiny_image(b"b", arch="arm64")
    lay = tmp_path / "lay"
    write_oci_dir(lay, [(amd, None), (arm, None)])
    inner = cj(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": amd.manifest,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": arm.manifest,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                },
            ],
        }
    )
    (lay / "blobs" / "sha256" / sha(inner).split(":")[1]).write_bytes(inner)
    (lay / "index.json").write_bytes(
        cj(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": MT_INDEX,
                        "digest": sha(inner),
                        "size": len(inner),
                        "annotations": {"org.opencontainers.image.ref.name": "multi"},
                    }
                ],
            }
        )
    )
    ref = parse_ref(f"oci:{lay}:multi")
    assert resolver(platform=Platform("linux", "amd64")).resolve(ref).key == amd.config
    res = resolver(platform=Platform("linux", "arm64", "v8")).resolve(ref)
    assert (res.key, res.manifest, res.index) == (arm.config, arm.manifest, sha(inner))
    with pytest.raises(ImageError, match="no image for linux/s390x"):
        resolver(platform=Platform("linux", "s390x")).resolve(ref)


def test_corrupt_blob_detected(tmp_path: Path) -> None:
    img = tiny_image()
    lay = write_oci_dir(tmp_path / "lay", [(img, None)])
    (lay / "blobs" / "sha256" / img.manifest.split(":")[1]).write_bytes(b'{"tampered": true}')
    with pytest.raises(ImageError, match="corrupt"):
        resolver().resolve(parse_ref(f"oci:{lay}"))


def test_broken_archives(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar file at all" * 100)
    for kind in ("oci-archive", "docker-archive"):
        with pytest.raises(ImageError):
            resolver().resolve(parse_ref(f"{kind}:{bad}"))
    with pytest.raises(ImageError, match="not found"):
        resolver().resolve(parse_ref(f"docker-archive:{tmp_path}/missing.tar"))


def test_hostile_archive_names(tmp_path: Path) -> None:
    img = tiny_image()
    name = tmp_path / 'we\'ird "name"\nwith:colon@at.tar'
    write_oci_archive(name, [(img, "1")])
    assert resolver().resolve(parse_ref(f"oci-archive:{name}")).key == img.config


# -- registries -------------------------------------------------------------------------------
@pytest.fixture
def registry() -> Iterator[object]:
    srv = start_registry()
    yield srv
    srv.shutdown()


class MemoDict:
    def __init__(self) -> None:
        self.d: dict[tuple[str, str], tuple[str, str]] = {}

    def memo_get(self, top: str, platform: str) -> tuple[str, str] | None:
        return self.d.get((top, platform))

    def memo_put(self, top: str, platform: str, manifest: str, config: str) -> None:
        self.d[(top, platform)] = (manifest, config)


def test_registry_tag_digest_and_memo(registry: object) -> None:
    srv = registry
    img = tiny_image()
    srv.push("test/tiny", "1", img.manifest_bytes)  # type: ignore[attr-defined]
    memo = MemoDict()
    r = resolver(memo=memo)
    ref = parse_ref(f"docker://{srv.address}/test/tiny:1")  # type: ignore[attr-defined]
    res = r.resolve(ref)
    assert (res.key, res.manifest, res.index) == (img.config, img.manifest, None)
    assert res.build.location == f"{srv.address}/test/tiny" and res.build.pin == img.manifest  # type: ignore[attr-defined]
    srv.requests.clear()  # type: ignore[attr-defined]
    assert r.resolve(ref).key == img.config
    assert [m for m, _ in srv.requests] == ["HEAD"]  # type: ignore[attr-defined]  # warm: one HEAD, memo for the rest
    srv.requests.clear()  # type: ignore[attr-defined]
    pinned = parse_ref(f"docker://{srv.address}/test/tiny@{img.manifest}")  # type: ignore[attr-defined]
    assert r.resolve(pinned).key == img.config
    assert srv.requests == []  # type: ignore[attr-defined]  # pinned and memoised: no network at all


def test_registry_tag_moves(registry: object) -> None:
    srv = registry
    old, new = tiny_image(b"old"), tiny_image(b"new")
    srv.push("t/x", "1", old.manifest_bytes)  # type: ignore[attr-defined]
    r = resolver(memo=MemoDict())
    ref = parse_ref(f"docker://{srv.address}/t/x:1")  # type: ignore[attr-defined]
    assert r.resolve(ref).key == old.config
    srv.push("t/x", "1", new.manifest_bytes)  # type: ignore[attr-defined]
    assert r.resolve(ref).key == new.config


def test_registry_multiarch_and_token(registry: object) -> None:
    srv = registry
    amd, arm = tiny_image(b"a", arch="amd64"), tiny_image(b"b", arch="arm64")
    index = cj(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": m.manifest,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": a},
                }
                for m, a in ((amd, "amd64"), (arm, "arm64"))
            ],
        }
    )
    srv.push("m/x", "1", index)  # type: ignore[attr-defined]
    srv.push("m/x", "a", amd.manifest_bytes)  # type: ignore[attr-defined]
    srv.push("m/x", "b", arm.manifest_bytes)  # type: ignore[attr-defined]
    srv.token = "tok123"  # type: ignore[attr-defined]
    res = resolver(platform=Platform("linux", "arm64")).resolve(parse_ref(f"docker://{srv.address}/m/x:1"))  # type: ignore[attr-defined]
    assert (res.key, res.manifest, res.index) == (arm.config, arm.manifest, sha(index))
    assert any(p.startswith("/token") for _, p in srv.requests)  # type: ignore[attr-defined]


def test_registry_not_found(registry: object) -> None:
    with pytest.raises(ImageError, match="not found"):
        resolver().resolve(parse_ref(f"docker://{registry.address}/no/such:1"))  # type: ignore[attr-defined]


def test_skopeo_fallback_when_credentials_needed() -> None:
    img = tiny_image()
    manifest_json = img.manifest_bytes.decode()
    runner = FakeRunner(
        answers={
            ("skopeo", "inspect", "--no-tags"): Completed((), 0, img.manifest + "\n", ""),
            ("skopeo", "inspect", "--raw"): Completed((), 0, manifest_json, ""),
        }
    )

    class NoHttp(Resolver):
        pass

    r = NoHttp(runner, use_http=False)  # as if the registry wanted credentials
    res = r.resolve(parse_ref("docker://registry.example.org/private/tool:2"))
    assert res.key == img.config and res.manifest == img.manifest
    argvs = runner.argvs()
    assert argvs[0][:3] == ("skopeo", "inspect", "--no-tags")
    assert argvs[0][-1] == "docker://registry.example.org/private/tool:2"
    assert "--tls-verify=false" not in argvs[0]  # a real https registry
    assert argvs[1][-1] == f"docker://registry.example.org/private/tool@{img.manifest}"


def test_skopeo_failure_is_an_image_error() -> None:
    runner = FakeRunner(answers={("skopeo",): Completed((), 1, "", 'time=x level=fatal msg="unauthorized"')})
    with pytest.raises(ImageError, match="unauthorized"):
        Resolver(runner, use_http=False).resolve(parse_ref("docker://reg.example/x:1"))


def test_insecure_registries() -> None:
    ins = InsecureRegistries(["reg.internal:5000"], env={"HPCJOBS_INSECURE_REGISTRIES": "a.lan, b.lan:81"})
    assert ins("127.0.0.1:5000") and ins("localhost") and ins("[::1]:5000")
    assert ins("reg.internal:5000") and ins("a.lan:5000") and ins("b.lan:81")
    assert not ins("ghcr.io") and not ins("reg.internal:6000") and not ins("10.0.0.1:5000")
    assert not InsecureRegistries(loopback=False, env={})("127.0.0.1:5000")


def test_skopeo_gets_tls_verify_false_for_insecure() -> None:
    img = tiny_image()
    runner = FakeRunner(
        answers={
            ("skopeo", "inspect", "--no-tags"): Completed((), 0, img.manifest, ""),
            ("skopeo", "inspect", "--raw"): Completed((), 0, img.manifest_bytes.decode(), ""),
        }
    )
    Resolver(runner, use_http=False).resolve(parse_ref("docker://127.0.0.1:5999/x:1"))
    assert all("--tls-verify=false" in a for a in runner.argvs())


def test_host_platform() -> None:
    p = host_platform()
    assert p.os == "linux" and p.architecture in (
        "amd64",
        "arm64",
        "ppc64le",
        "s390x",
        "riscv64",
        "arm",
        "386",
    )


# -- definition files -------------------------------------------------------------------------
def test_def_digest_tracks_text_and_files(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    d = tmp_path / "tool.def"
    d.write_text(
        "Bootstrap: docker\nFrom: alpine\n\n%files\n    app.py /opt/app.py\n    data /opt/data\n"
        "%files from build\n    /x /y\n%post\n    echo hi\n"
    )
    assert files_sources(d.read_text()) == ["app.py", "data"]
    k1 = def_digest(str(d))
    assert def_digest(str(d)) == k1
    (tmp_path / "app.py").write_text("print(2)\n")
    k2 = def_digest(str(d))
    assert k2 != k1
    (tmp_path / "data" / "b.txt").write_text("b")
    k3 = def_digest(str(d))
    assert k3 != k2
    (tmp_path / "data" / "b.txt").chmod(0o755)
    assert def_digest(str(d)) != k3  # executable bit matters
    d.write_text(d.read_text() + "\n")
    assert def_digest(str(d)) not in (k1, k2, k3)
    res = Resolver(FakeRunner()).resolve(parse_ref(str(d)))  # type: ignore[arg-type]
    assert res.key_kind == "def" and res.build.transport == "def"


def test_def_digest_globs_and_missing(tmp_path: Path) -> None:
    (tmp_path / "a.cfg").write_text("1")
    d = tmp_path / "g.def"
    d.write_text("Bootstrap: docker\nFrom: alpine\n%files\n    *.cfg /etc/\n    'missing file' /x\n")
    assert files_sources(d.read_text()) == ["*.cfg", "missing file"]
    k1 = def_digest(str(d))
    (tmp_path / "b.cfg").write_text("2")
    assert def_digest(str(d)) != k1


def test_resolved_metadata_is_json_friendly(tmp_path: Path) -> None:
    img = tiny_image()
    res = resolver().resolve(parse_ref(f"oci:{write_oci_dir(tmp_path / 'l', [(img, None)])}"))
    json.dumps({"key": res.key, "manifest": res.manifest, "file_key": res.file_key})
    assert res.file_key == img.config.replace(":", "-")


def test_def_digest_tracks_a_localimage_base(tmp_path: Path) -> None:
    base = tmp_path / "base.sif"
    base.write_bytes(b"one")
    d = tmp_path / "l.def"
    d.write_text(f"Bootstrap: localimage\nFrom: {base}\n%post\n  true\n")
    k1 = def_digest(str(d))
    base.write_bytes(b"two, longer")
    assert def_digest(str(d)) != k1
