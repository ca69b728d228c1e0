"""The pull path with a fake apptainer: one conversion per digest across processes, kill -9 at
several points never serves a partial entry, verification before publish, events, prepare_job
(on the submitting host and as a dependent Slurm job), the CLI."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcjobs import images
from hpcjobs.api import plan_submitter
from hpcjobs.cli_images import images as images_cli
from hpcjobs.cli_images import parse_size
from hpcjobs.config import load_site_text
from hpcjobs.errors import ImageConversionError, ImageError
from hpcjobs.images.cache import ImageCache
from hpcjobs.images.options import CacheOptions
from hpcjobs.images.sif import verify_sif, write_test_sif
from hpcjobs.render import render, render_plan
from hpcjobs.resolve import resolve
from hpcjobs.runner import Completed
from hpcjobs.spec import JobSpec

from .test_images_helpers import (
    FakeRunner,
    tiny_image,
    write_docker_archive,
    write_oci_archive,
    write_oci_dir,
)

CTX = mp.get_context("fork")
SITE_YAML = """
name: t
default_partition: cpu
partitions:
  cpu: {}
  build: {}
images:
  convert_on: {convert_on}
  build_partition: build
  build_time_min: 20
"""


def site(convert_on: str = "submit") -> Any:
    return load_site_text(SITE_YAML.replace("{convert_on}", convert_on), "t.yaml")


def cache(tmp_path: Path, runner: FakeRunner, **kw: Any) -> ImageCache:
    opts = CacheOptions.from_site(
        None,
        env={},
        cache_dir=str(tmp_path / "cache"),
        heartbeat_s=0.05,
        stale_after_s=kw.pop("stale_after_s", 2.0),
        **kw,
    )
    return ImageCache(opts, runner)  # type: ignore[arg-type]


@pytest.fixture
def image(tmp_path: Path) -> dict[str, Any]:
    img = tiny_image()
    return {
        "img": img,
        "oci": f"oci:{write_oci_dir(tmp_path / 'lay', [(img, '1')])}",
        "archive": f"oci-archive:{write_oci_archive(tmp_path / 'img.tar', [(img, '1')])}",
        "docker": f"docker-archive:{write_docker_archive(tmp_path / 'img.docker.tar', img)}",
    }


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = [re.search(r"event='?([\w.]+)", r.getMessage()) for r in caplog.records if r.name == "hpcjobs.images"]
    caplog.clear()
    return [m.group(1) for m in out if m]


def test_pull_converts_once_then_hits(tmp_path: Path, image: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hpcjobs.images")
    runner = FakeRunner(tmp_path / "count")
    c = cache(tmp_path, runner)
    seen: list[str] = []
    c.on_event = lambda name, fields: seen.append(name)
    first = c.pull(image["archive"])
    assert first.origin == "converted" and first.digest == image["img"].config
    assert events(caplog) == ["image.resolve", "image.miss", "image.convert", "image.publish"]
    assert seen == ["resolve", "miss", "convert", "publish"]
    verify_sif(first.path)
    for ref in (image["archive"], image["oci"], image["oci"] + ":1", image["docker"]):
        e = c.pull(ref)
        assert (e.path, e.origin) == (first.path, "hit")
        assert e.last_used is not None and e.last_used >= first.created  # the use is recorded and reported
        assert events(caplog) == ["image.resolve", "image.hit"]
    assert count(tmp_path / "count") == 1
    listed = images.list_entries(cache_dir=str(tmp_path / "cache"))
    assert len(listed) == 1 and len(listed[0].refs) == 4


def test_build_argv_and_environment(tmp_path: Path, image: dict[str, Any]) -> None:
    runner = FakeRunner()
    c = cache(tmp_path, runner, mksquashfs_args="-comp gzip -Xcompression-level 1", binary="/opt/apptainer")
    c.pull(image["oci"])
    ((argv, env),) = [(c.argv, c.env or {}) for c in runner.calls if c.argv[1] == "build"]
    assert argv[:4] == ("/opt/apptainer", "build", "--mksquashfs-args", "-comp gzip -Xcompression-level 1")
    assert argv[-1] == f"{image['oci']}@{image['img'].manifest}"  # oci:DIR@digest, never oci:DIR:TAG
    dest = Path(argv[-2])
    assert dest.parent == tmp_path / "cache" / "sif" and dest.name.startswith(".")  # temp beside the entry
    root = str(tmp_path / "cache")
    assert env["APPTAINER_CACHEDIR"] == f"{root}/apptainer-cache/{os.getuid()}"
    assert env["APPTAINER_TMPDIR"].startswith(f"{root}/tmp/")
    assert os.listdir(tmp_path / "cache" / "tmp") == []  # the conversion's temp dir is cleaned up


def test_hostile_source_path_reaches_apptainer_through_a_symlink(tmp_path: Path) -> None:
    img = tiny_image()
    weird = tmp_path / "my 'image'\n:v1@x.tar"
    write_oci_archive(weird, [(img, None)])
    seen: list[str] = []

    class Recording(FakeRunner):
        def __call__(self, argv: Sequence[str], **kw: Any) -> Completed:
            if argv[1] == "build":
                link = str(argv[-1]).split(":", 1)[1]
                seen.append(os.readlink(link))
            return super().__call__(argv, **kw)

    runner = Recording()
    e = cache(tmp_path, runner).pull(f"oci-archive:{weird}")
    assert seen == [str(weird)] and e.digest == img.config
    src = runner.builds()[0][-1]
    assert src.startswith("oci-archive:") and "\n" not in src and " " not in src


def test_multi_image_archive_is_extracted_for_the_tag(tmp_path: Path) -> None:
    one, two = tiny_image(b"1"), tiny_image(b"2")
    arc = write_oci_archive(tmp_path / "two.tar", [(one, "1"), (two, "2")])
    runner = FakeRunner()
    e = cache(tmp_path, runner).pull(f"oci-archive:{arc}:2")
    assert e.digest == two.config
    src = runner.builds()[0][-1]
    assert src.startswith("oci:") and src.endswith(f"/layout@{two.manifest}")


def test_docker_build_is_pinned_and_insecure_gets_no_https(tmp_path: Path) -> None:
    img = tiny_image()
    runner = FakeRunner(
        answers={
            ("skopeo", "inspect", "--no-tags"): Completed((), 0, img.manifest, ""),
            ("skopeo", "inspect", "--raw"): Completed((), 0, img.manifest_bytes.decode(), ""),
        }
    )
    c = cache(tmp_path, runner)
    c.resolver.http = None  # no HTTP API: skopeo answers
    e = c.pull("docker://127.0.0.1:5999/test/tiny:1")
    assert e.digest == img.config
    build = runner.builds()[0]
    assert "--no-https" in build
    assert build[-1] == f"docker://127.0.0.1:5999/test/tiny@{img.manifest}"  # not the tag: it may move


def test_failed_build_publishes_nothing_and_next_pull_converts(tmp_path: Path, image: dict[str, Any]) -> None:
    c = cache(tmp_path, FakeRunner(fail=True))
    with pytest.raises(ImageConversionError, match="FATAL: build failed"):
        c.pull(image["oci"])
    assert images.list_entries(cache_dir=str(tmp_path / "cache")) == []
    assert [n for n in os.listdir(tmp_path / "cache" / "sif")] == []
    assert os.listdir(tmp_path / "cache" / "locks") == []
    assert cache(tmp_path, FakeRunner()).pull(image["oci"]).origin == "converted"


def test_invalid_sif_never_published(tmp_path: Path, image: dict[str, Any]) -> None:
    c = cache(tmp_path, FakeRunner(write_invalid=True))
    with pytest.raises(ImageConversionError, match="invalid SIF"):
        c.pull(image["oci"])
    assert os.listdir(tmp_path / "cache" / "sif") == []


def test_inspect_verification_mode(tmp_path: Path, image: dict[str, Any]) -> None:
    runner = FakeRunner(answers={("apptainer", "inspect"): Completed((), 255, "", "FATAL: not a SIF")})
    c = cache(tmp_path, runner, verify="inspect")
    with pytest.raises(ImageConversionError, match="inspect rejects"):
        c.pull(image["oci"])
    assert os.listdir(tmp_path / "cache" / "sif") == []


def test_source_changed_during_conversion(tmp_path: Path, image: dict[str, Any]) -> None:
    path = Path(image["archive"].split(":", 1)[1])

    class Touching(FakeRunner):
        def __call__(self, argv: Sequence[str], **kw: Any) -> Completed:
            if argv[1] == "build":
                path.write_bytes(path.read_bytes() + b"\0" * 1024)
            return super().__call__(argv, **kw)

    with pytest.raises(ImageConversionError, match="changed while"):
        cache(tmp_path, Touching()).pull(image["archive"])
    assert os.listdir(tmp_path / "cache" / "sif") == []


def test_expect_digest_and_sif_in_place(tmp_path: Path, image: dict[str, Any]) -> None:
    c = cache(tmp_path, FakeRunner())
    with pytest.raises(ImageError, match="not the expected"):
        c.pull(image["oci"], expect_digest="sha256:" + "0" * 64)
    sif = tmp_path / "local image.sif"
    write_test_sif(sif)
    e = c.pull(str(sif))
    assert (e.path, e.digest, e.layer) == (str(sif), None, "in-place")
    assert not (tmp_path / "cache" / "sif").exists() or os.listdir(tmp_path / "cache" / "sif") == []


def test_def_file_built_from_its_directory(tmp_path: Path) -> None:
    d = tmp_path / "defs dir"
    d.mkdir()
    (d / "app.txt").write_text("x")
    (d / "tool.def").write_text("Bootstrap: docker\nFrom: alpine\n%files\n  app.txt /app.txt\n")
    seen: list[tuple[str, str | None]] = []

    class Recording(FakeRunner):
        def __call__(self, argv: Sequence[str], **kw: Any) -> Completed:
            if argv[1] == "build":
                seen.append((os.readlink(argv[-1]), kw.get("cwd")))
            return super().__call__(argv, **kw)

    runner = Recording()
    c = cache(tmp_path, runner)
    e1 = c.pull(str(d / "tool.def"))
    assert e1.origin == "converted" and c.pull(str(d / "tool.def")).origin == "hit"
    (d / "app.txt").write_text("y")
    assert c.pull(str(d / "tool.def")).digest != e1.digest
    assert seen == [(str(d / "tool.def"), str(d))] * 2  # symlinked (space in the path), built from its dir


# -- many processes, one conversion ----------------------------------------------------------
def _pull_in_child(cache_dir: str, ref: str, counter: str, out: str, delay: float) -> None:
    opts = CacheOptions.from_site(None, env={}, cache_dir=cache_dir, heartbeat_s=0.05, stale_after_s=5.0)
    e = ImageCache(opts, FakeRunner(Path(counter), delay_s=delay)).pull(ref)  # type: ignore[arg-type]
    with open(out, "a") as f:
        f.write(json.dumps({"path": e.path, "origin": e.origin}) + "\n")


def test_sixteen_processes_one_conversion(tmp_path: Path, image: dict[str, Any]) -> None:
    counter, out = tmp_path / "count", tmp_path / "out"
    refs = [image["oci"], image["archive"], image["docker"], image["oci"] + ":1"]
    procs = [
        CTX.Process(target=_pull_in_child, args=(str(tmp_path / "cache"), refs[i % 4], str(counter), str(out), 0.5))
        for i in range(16)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 16
    assert count(counter) == 1
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 16 and len({r["path"] for r in results}) == 1
    assert sorted(r["origin"] for r in results).count("converted") == 1
    verify_sif(results[0]["path"])


# -- kill -9 at several points ----------------------------------------------------------------
def _convert_and_hang(cache_dir: str, ref: str, where: str, ready: str) -> None:
    opts = CacheOptions.from_site(None, env={}, cache_dir=cache_dir, heartbeat_s=0.05, stale_after_s=30.0)
    runner = FakeRunner(delay_s=600 if where == "build" else 0)
    c = ImageCache(opts, runner)  # type: ignore[arg-type]

    def hang(*_a: Any, **_k: Any) -> Any:
        Path(ready).write_text(where)
        time.sleep(600)

    if where == "locked":
        c.store.remove_temps = hang  # type: ignore[method-assign]
    elif where == "build":
        orig = runner.__call__

        def signal_then_build(argv: Sequence[str], **kw: Any) -> Completed:
            if argv[1] == "build":
                Path(ready).write_text(where)
            return orig(argv, **kw)

        c.converter.runner = signal_then_build  # type: ignore[assignment]
    elif where == "verified":
        real_verify = c.converter.verify

        def verify_then_hang(path: Path) -> Any:
            real_verify(path)
            hang()

        c.converter.verify = verify_then_hang  # type: ignore[method-assign]
    c.pull(ref)


@pytest.mark.parametrize("where", ["locked", "build", "verified"])
def test_kill_9_never_leaves_a_served_entry(tmp_path: Path, image: dict[str, Any], where: str) -> None:
    ready = tmp_path / "ready"
    p = CTX.Process(target=_convert_and_hang, args=(str(tmp_path / "cache"), image["oci"], where, str(ready)))
    p.start()
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    c = cache(tmp_path, FakeRunner(tmp_path / "count"), stale_after_s=30.0)
    assert c.store.find(image["img"].config) is None  # nothing half-made is ever served
    assert images.list_entries(cache_dir=str(tmp_path / "cache")) == []
    t0 = time.monotonic()
    e = c.pull(image["oci"])  # the dead holder's lock is taken over at once (same host, pid gone)
    assert time.monotonic() - t0 < 5
    assert e.origin == "converted" and count(tmp_path / "count") == 1
    verify_sif(e.path)
    hidden = [n for n in os.listdir(tmp_path / "cache" / "sif") if n.startswith(".")]
    assert hidden == []  # the killed conversion's temp file was cleaned up


# -- prepare_job ------------------------------------------------------------------------------
class FakeScheduler:
    name = "fake"

    def __init__(self, state: str = "PENDING") -> None:
        self.scripts: list[str] = []
        self.state = state

    def submit(self, script: str, *, cwd: str | None = None) -> str:
        self.scripts.append(script)
        return str(100 + len(self.scripts))

    def status(self, job_ids: Sequence[str]) -> Mapping[str, Any]:
        from hpcjobs.schedulers.states import JobState

        class St:
            state = JobState.from_slurm(self.state)

        return {j: St() for j in job_ids}


def test_prepare_job_on_submit_host(tmp_path: Path, image: dict[str, Any]) -> None:
    job = resolve(JobSpec(image=image["archive"], command=["true"]), site())
    runner = FakeRunner()
    out = images.prepare_job(job, site(), runner=runner, cache_dir=str(tmp_path / "cache"))  # type: ignore[arg-type]
    assert out.image.endswith(image["img"].config.replace(":", "-") + ".sif") and os.path.exists(out.image)
    assert (out.image_ref, out.image_digest, out.dependency) == (image["archive"], image["img"].config, None)
    text = render(out)
    assert f"# image digest: {image['img'].config}" in text and image["archive"] in text
    assert out.image in text
    # the entry is leased for the queued job: gc leaves it alone
    report = images.gc(max_size_bytes=0, cache_dir=str(tmp_path / "cache"), in_use_grace_s=0)
    assert report.removed == [] and report.kept[0][1] == "leased"


def test_prepare_job_sif_in_place(tmp_path: Path) -> None:
    sif = tmp_path / "a.sif"
    write_test_sif(sif)
    job = resolve(JobSpec(image=str(sif)), site())
    out = images.prepare_job(job, site(), runner=FakeRunner(), cache_dir=str(tmp_path / "c"))  # type: ignore[arg-type]
    assert (out.image, out.image_digest) == (str(sif), None)


def test_prepare_job_as_dependent_slurm_job(tmp_path: Path, image: dict[str, Any]) -> None:
    s = site("slurm")
    job = resolve(JobSpec(image=image["oci"] + ":1", command=["true"]), s)
    runner, sched = FakeRunner(), FakeScheduler()
    out = images.prepare_job(job, s, runner=runner, submitter=plan_submitter(sched), cache_dir=str(tmp_path / "cache"))  # type: ignore[arg-type]
    assert runner.builds() == []  # nothing converted on the submitting host
    assert out.dependency == "afterok:101"
    assert out.image == str(tmp_path / "cache" / "sif" / (image["img"].config.replace(":", "-") + ".sif"))
    assert "#SBATCH --dependency=afterok:101\n#SBATCH --kill-on-invalid-dep=yes\n" in render(out)
    script = sched.scripts[0]
    assert "#SBATCH --partition=build" in script and "#SBATCH --time=20" in script
    assert f"exec {sys.executable} -m hpcjobs.images pull --cache-dir {tmp_path}/cache" in script
    assert f"--expect-digest {image['img'].config} -- " in script
    # a second workload while that conversion job is still queued depends on the same job
    again = images.prepare_job(
        replace(job, dependency="afterok:7"),
        s,
        runner=runner,
        submitter=plan_submitter(sched),  # type: ignore[arg-type]
        cache_dir=str(tmp_path / "cache"),
    )
    assert again.dependency == "afterok:7,afterok:101" and len(sched.scripts) == 1
    # once the conversion job has ended (and failed), a new one is submitted
    sched.state = "FAILED"
    third = images.prepare_job(
        job, s, runner=runner, submitter=plan_submitter(sched), cache_dir=str(tmp_path / "cache")
    )  # type: ignore[arg-type]
    assert third.dependency == "afterok:102"


def test_conversion_script_runs(tmp_path: Path, image: dict[str, Any]) -> None:
    """Run the conversion job's script (no Slurm) with a fake apptainer that copies a SIF."""
    import subprocess

    from hpcjobs.images.jobs import conversion_plan

    prebuilt = tmp_path / "prebuilt.sif"
    write_test_sif(prebuilt, b"from the conversion job")
    fake = tmp_path / "fake-apptainer"
    fake.write_text(f'#!/bin/bash\n[ "$1" = build ] && cp {prebuilt} "${{@: -2:1}}"\n')
    fake.chmod(0o755)
    c = cache(tmp_path, FakeRunner(), binary=str(fake))
    res = c.resolve(image["archive"])
    script = render_plan(conversion_plan(res, c.opts, partition=None, time_min=5, log_dir=str(tmp_path)))
    assert "--partition" not in script and f"#SBATCH --output={tmp_path}/hpcjobs-convert-%j.out" in script
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HOME": str(tmp_path)}
    env.pop("HPCJOBS_SITE", None)
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(c.planned_path(res))
    assert b"from the conversion job" in Path(r.stdout.strip()).read_bytes()
    # a source that no longer has the digest the workload was prepared for: the job fails
    other = tiny_image(b"changed")
    write_oci_archive(Path(image["archive"].split(":", 1)[1]), [(other, "1")])
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "not the expected" in r.stderr


# -- CLI --------------------------------------------------------------------------------------
def invoke(args: list[str], monkeypatch: pytest.MonkeyPatch, runner: FakeRunner | None = None) -> Any:
    monkeypatch.delenv("HPCJOBS_SITE", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-home-for-test")
    if runner is not None:
        monkeypatch.setattr("hpcjobs.images.cache.default_runner", lambda: runner)
    return CliRunner().invoke(images_cli, args, catch_exceptions=False)


def test_cli_pull_list_inspect_gc(tmp_path: Path, image: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cd = ["--cache-dir", str(tmp_path / "cache")]
    runner = FakeRunner()
    r = invoke([*cd, "pull", image["docker"]], monkeypatch, runner)
    assert r.exit_code == 0, r.output
    path = r.stdout.strip()
    assert path.endswith(".sif") and os.path.exists(path), (path, r.output)
    r = invoke([*cd, "pull", "--json", image["oci"]], monkeypatch, runner)
    assert json.loads(r.stdout)["path"] == path and json.loads(r.stdout)["origin"] == "hit"
    r = invoke([*cd, "list", "--json"], monkeypatch)
    assert [e["path"] for e in json.loads(r.stdout)] == [path]
    r = invoke([*cd, "list"], monkeypatch)
    assert "DIGEST" in r.stdout and image["docker"] in r.stdout
    r = invoke([*cd, "inspect", "--no-labels", image["archive"]], monkeypatch)
    info = json.loads(r.stdout)
    assert info["cached"] and info["digest"] == image["img"].config and info["manifest"] == image["img"].manifest
    r = invoke([*cd, "gc", "--max-size", "0", "--dry-run"], monkeypatch)
    assert r.exit_code == 0 and "kept" in r.stdout  # just used: in use
    r = invoke([*cd, "gc"], monkeypatch)
    assert r.exit_code != 0 and "--max-size" in r.output


def test_cli_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcjobs.images.__main__ import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HPCJOBS_SITE", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--cache-dir", str(tmp_path / "c"), "pull", f"oci-archive:{tmp_path}/missing.tar"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("0", 0),
        ("512", 512),
        ("1K", 1024),
        ("10G", 10 * 2**30),
        ("1.5g", int(1.5 * 2**30)),
        ("2TiB", 2 * 2**40),
        ("3 MB", 3 * 2**20),
    ],
)
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


def test_parse_size_rejects() -> None:
    import click

    with pytest.raises(click.BadParameter):
        parse_size("ten gigs")


def test_options_precedence(tmp_path: Path) -> None:
    s = load_site_text(
        "name: t\ndefault_partition: a\npartitions: {a: {}}\n"
        "images: {cache_dir: /site/cache, shared: true, site_caches: [/ro/one]}\n",
        "t.yaml",
    )
    o = CacheOptions.from_site(s, env={})
    assert (o.cache_dir, o.shared, o.site_caches) == ("/site/cache", True, ("/ro/one",))
    o = CacheOptions.from_site(s, env={"HPCJOBS_IMAGE_CACHE": str(tmp_path)})
    assert o.cache_dir == str(tmp_path)
    o = CacheOptions.from_site(s, env={"HPCJOBS_IMAGE_CACHE": str(tmp_path)}, cache_dir="/explicit")
    assert o.cache_dir == "/explicit"
    assert CacheOptions.from_site(None, env={"HOME": "/h"}).cache_dir.endswith("/.cache/hpcjobs/images")


def test_spython_system_exit_never_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcjobs.images.convert import no_exit

    def bails() -> None:
        raise SystemExit(1)

    with pytest.raises(ImageError, match="spython gave up"):
        no_exit(bails)
    fn: Callable[[], int] = lambda: 3  # noqa: E731
    assert no_exit(fn) == 3


def test_build_tmpdir_elsewhere(tmp_path: Path, image: dict[str, Any]) -> None:
    runner = FakeRunner()
    scratch = tmp_path / "node-local"
    c = cache(tmp_path, runner, build_tmpdir=str(scratch))
    c.pull(image["oci"])
    ((_argv, env),) = [(c.argv, c.env or {}) for c in runner.calls if c.argv[1] == "build"]
    assert env["APPTAINER_TMPDIR"].startswith(f"{scratch}/hpcjobs-build-")
    assert os.listdir(scratch) == []  # removed after the build


def test_inspect_labels_through_the_runner(tmp_path: Path, image: dict[str, Any]) -> None:
    labels = {"data": {"attributes": {"labels": {"org.opencontainers.image.title": "tiny"}}}}
    runner = FakeRunner(answers={("apptainer", "inspect", "--json"): Completed((), 0, json.dumps(labels), "")})
    c = cache(tmp_path, runner)
    assert c.inspect(image["oci"])["cached"] is False
    c.pull(image["oci"])
    info = c.inspect(image["docker"], use_spython=False)
    assert info["cached"] and info["labels"] == {"org.opencontainers.image.title": "tiny"}
    assert info["digest"] == image["img"].config and info["kind"] == "docker-archive"


def test_any_of_dependency_refused_before_a_conversion_job_is_submitted(tmp_path: Path, image: dict[str, Any]) -> None:
    s = site("slurm")
    job = resolve(JobSpec(image=image["oci"] + ":1", dependency="afterok:1?afterok:2"), s)
    runner, sched = FakeRunner(), FakeScheduler()
    with pytest.raises(ImageError, match="any-of"):
        images.prepare_job(job, s, runner=runner, submitter=plan_submitter(sched), cache_dir=str(tmp_path / "cache"))  # type: ignore[arg-type]
    assert sched.scripts == []


def test_pin_job_names_the_sif_submit_would_use_without_converting(tmp_path: Path, image: dict[str, Any]) -> None:
    s = site("slurm")
    job = resolve(JobSpec(image=image["oci"] + ":1"), s)
    runner, sched = FakeRunner(), FakeScheduler()
    pinned = images.pin_job(job, s, runner=runner, cache_dir=str(tmp_path / "cache"))
    assert runner.builds() == [] and sched.scripts == []
    assert pinned.image_digest == image["img"].config and pinned.dependency is None
    prepared = images.prepare_job(
        job, s, runner=runner, submitter=plan_submitter(sched), cache_dir=str(tmp_path / "cache")
    )
    assert prepared.image == pinned.image  # the planned path is where the conversion job publishes
    sif = tmp_path / "x.sif"
    sif.write_bytes(b"")
    local = resolve(JobSpec(image=str(sif)), s)
    assert images.pin_job(local, s, runner=runner, cache_dir=str(tmp_path / "cache")) is local
