"""Image reference parsing: registries, tags, digests, local transports, hostile file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcjobs.errors import ImageError
from hpcjobs.images.refs import parse_ref
from hpcjobs.images.sif import write_test_sif

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest"),
    [
        ("docker://ubuntu", "docker.io", "library/ubuntu", "latest", None),
        ("docker://ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
        ("docker://org/tool:1", "docker.io", "org/tool", "1", None),
        ("docker://index.docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None),
        ("docker://ghcr.io/org/sub/tool:v1.2", "ghcr.io", "org/sub/tool", "v1.2", None),
        ("docker://127.0.0.1:5000/test/tiny:1", "127.0.0.1:5000", "test/tiny", "1", None),
        ("docker://localhost/x", "localhost", "x", "latest", None),
        ("docker://localhost:5000/x@" + D, "localhost:5000", "x", None, D),
        ("docker://reg.example:443/a/b:t@" + D, "reg.example:443", "a/b", "t", D),
        ("docker://[::1]:5000/x:1", "[::1]:5000", "x", "1", None),
    ],
)
def test_docker_refs(text: str, registry: str, repo: str, tag: str | None, digest: str | None) -> None:
    r = parse_ref(text)
    assert (r.kind, r.registry, r.repository, r.tag, r.digest) == ("docker", registry, repo, tag, digest)
    assert parse_ref(r.canonical) == parse_ref(r.canonical)  # canonical form parses again
    assert parse_ref(r.canonical).canonical == r.canonical


@pytest.mark.parametrize(
    "text",
    [
        "docker://",
        "docker://org/Tool:1",  # repositories are lowercase
        "docker://x:bad tag",
        "docker://x@sha256:short",
        "docker://x@md5:" + "a" * 32,
        "docker://a//b",
        "library://lib/x",
        "oras://reg/x:1",
        "https://example.org/x.sif",
        "oci:",
        "ubuntu:22.04",
    ],
)
def test_bad_refs(text: str) -> None:
    with pytest.raises(ImageError):
        parse_ref(text)


def test_bare_name_suggests_docker(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"docker://ubuntu:22\.04"):
        parse_ref("ubuntu:22.04", cwd=str(tmp_path))


def test_local_transports_make_paths_absolute(tmp_path: Path) -> None:
    (tmp_path / "lay").mkdir()
    (tmp_path / "a.tar").write_bytes(b"")
    r = parse_ref("oci:lay", cwd=str(tmp_path))
    assert (r.kind, r.path, r.tag, r.digest) == ("oci", str(tmp_path / "lay"), None, None)
    assert parse_ref("oci:lay:1", cwd=str(tmp_path)).tag == "1"
    pinned = parse_ref(f"oci:lay@{D}", cwd=str(tmp_path))
    assert (pinned.path, pinned.digest) == (str(tmp_path / "lay"), D)
    assert parse_ref("oci-archive:a.tar", cwd=str(tmp_path)).path == str(tmp_path / "a.tar")
    assert parse_ref("docker-archive:./a.tar", cwd=str(tmp_path)).path == str(tmp_path / "a.tar")


def test_directory_with_colon_is_not_a_tag(tmp_path: Path) -> None:
    odd = tmp_path / "img:1"
    odd.mkdir()
    r = parse_ref(f"oci:{odd}")
    assert (r.path, r.tag) == (str(odd), None)
    (tmp_path / "arch:v2.tar").write_bytes(b"")
    r = parse_ref(f"oci-archive:{tmp_path}/arch:v2.tar")
    assert (r.path, r.tag) == (f"{tmp_path}/arch:v2.tar", None)
    # a docker-archive path is always the whole string
    assert parse_ref(f"docker-archive:{tmp_path}/x:y.tar").path == f"{tmp_path}/x:y.tar"


@pytest.mark.parametrize(
    "name",
    [
        "with space.tar",
        "quote'd\".tar",
        "new\nline.tar",
        "semi;$(x)`y`.tar",
        "ünïcode.tar",
        "-dash.tar",
        "at@sign.tar",
    ],
)
def test_hostile_file_names(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"")
    for kind in ("oci-archive", "docker-archive"):
        r = parse_ref(f"{kind}:{p}")
        assert (r.kind, r.path, r.tag) == (kind, str(p), None)
    d = tmp_path / ("dir " + name)
    d.mkdir()
    assert parse_ref(f"oci:{d}").path == str(d)


def test_nul_byte_refused() -> None:
    with pytest.raises(ImageError, match="NUL"):
        parse_ref("oci-archive:/x\0y")


def test_sif_and_def_files(tmp_path: Path) -> None:
    sif = tmp_path / "my image.sif"
    write_test_sif(sif)
    assert parse_ref(str(sif)).kind == "sif"
    noext = tmp_path / "image-without-suffix"
    write_test_sif(noext)
    assert parse_ref(str(noext)).kind == "sif"
    d = tmp_path / "recipe"
    d.write_text("# comment\n\nBootstrap: docker\nFrom: alpine\n")
    assert parse_ref(str(d)).kind == "def"
    assert parse_ref(str(tmp_path / "x.def")).kind == "def"  # by name, even before it exists
    assert parse_ref("rel.sif", cwd=str(tmp_path)).path == str(tmp_path / "rel.sif")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ImageError, match="neither"):
        parse_ref(str(other))
    with pytest.raises(ImageError, match="not found"):
        parse_ref(str(tmp_path / "missing" / "file.tar"))
