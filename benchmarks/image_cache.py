"""Image cache numbers on the dev cluster (real apptainer, real registry). Prints; asserts nothing.

(1) warm lookup: ``pull`` of an already-cached image, in process, per source kind — median and p95
    in ms, and the number of conversions it started (must be 0);
(2) cold conversion ÷ bare ``apptainer build`` of the same source, same run, alternating runs, each
    cold (fresh cache, fresh APPTAINER_CACHEDIR for both) — medians and their ratio, for the tiny
    test image and for a synthetic image of --size-mb MB;
(1b) the cost of ``images.verify: always`` (sha256 of the SIF on every hit) against the default
    lookup, interleaved in the same run — for the tiny image and the synthetic one;
(3) the 16-way race: 16 ``python -m hpcjobs.images pull`` processes, one cold image → conversions
    counted by a wrapper around apptainer (must be 1), and the race's wall time.

    .venv/bin/python benchmarks/image_cache.py [--runs 7] [--lookups 200] [--size-mb 64] [--race 16]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpcjobs.images import open_cache
from hpcjobs.runner import RecordingRunner

CLUSTER_JSON = Path(os.environ.get("HPCJOBS_CLUSTER_JSON", "/var/lib/hpcjobs-dev/cluster.json"))
APPTAINER = shutil.which("apptainer") or "/usr/bin/apptainer"


def builds(runner: RecordingRunner) -> int:
    """How many ``apptainer build`` processes ``runner`` has started."""
    return sum(1 for argv in runner.argvs() if len(argv) > 1 and argv[1] == "build")


def synthetic_docker_archive(path: Path, size_mb: int, seed: int = 1) -> None:
    """A docker-save archive: busybox-less rootfs of files with half-compressible content."""
    rnd = random.Random(seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("data", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        chunk = 1 << 20
        for i in range(size_mb):
            data = rnd.randbytes(chunk // 2) + bytes(chunk // 2)
            ti = tarfile.TarInfo(f"data/file{i:04d}.bin")
            ti.size, ti.mode = len(data), 0o644
            t.addfile(ti, io.BytesIO(data))
    layer = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_id = diff_id.split(":")[1]
    manifest = json.dumps(
        [{"Config": cfg_name, "RepoTags": ["bench/synthetic:1"], "Layers": [f"{layer_id}/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as t:
        for name, data in ((cfg_name, config), (f"{layer_id}/layer.tar", layer), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def ms(xs: Sequence[float]) -> str:
    s = sorted(xs)
    p95 = s[min(len(s) - 1, int(len(s) * 0.95))]
    return f"median {statistics.median(s) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"


def warm_lookups(work: Path, refs: Sequence[str], n: int) -> None:
    print(f"\n(1) warm lookup, in process, {n} pulls per ref (cache: {work / 'warm'})")
    runner = RecordingRunner()
    cache = open_cache(runner=runner, cache_dir=str(work / "warm"))
    cache.pull(refs[0])  # one conversion serves all the refs below (same content digest)
    before = builds(runner)
    for ref in refs:
        cache.pull(ref)  # resolver state (registry scheme, tokens) as in any long-lived process
        times = []
        for _ in range(n):
            t = time.perf_counter()
            cache.pull(ref)
            times.append(time.perf_counter() - t)
        print(f"    {ref[:72]:72}  {ms(times)}")
    print(f"    conversions during the lookups: {builds(runner) - before}")
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "hpcjobs.images", "--cache-dir", str(work / "warm"), "pull", refs[0]],
        capture_output=True,
        text=True,
    )
    print(
        f"    for comparison, a whole `python -m hpcjobs.images pull` process (warm): "
        f"{(time.perf_counter() - t) * 1000:.0f} ms (rc {r.returncode})"
    )


def verify_cost(work: Path, ref: str, n: int, label: str) -> None:
    print(f"\n(1b) warm lookup with and without images.verify: always, {label}, {n} interleaved pulls each")
    d = Path(tempfile.mkdtemp(dir=work, prefix="verify-"))
    plain = open_cache(runner=RecordingRunner(), cache_dir=str(d))
    entry = plain.pull(ref)
    verified = open_cache(runner=RecordingRunner(), cache_dir=str(d), verify_hits=True)
    verified.pull(ref)
    times: dict[str, list[float]] = {"default": [], "verify": []}
    for i in range(n):
        for which in ("default", "verify") if i % 2 == 0 else ("verify", "default"):
            cache = plain if which == "default" else verified
            t = time.perf_counter()
            cache.pull(ref)
            times[which].append(time.perf_counter() - t)
    print(f"    SIF size {entry.size / 2**20:.1f} MiB")
    for which, xs in times.items():
        print(f"    {which:8}  {ms(xs)}")
    ratio = statistics.median(times["verify"]) / statistics.median(times["default"])
    print(f"    ratio verify/default (median/median): {ratio:.2f}")
    shutil.rmtree(d, ignore_errors=True)


def cold_ratio(work: Path, ref: str, source: str, runs: int, label: str) -> None:
    print(f"\n(2) cold conversion vs bare `apptainer build`, {label}, {runs} alternating runs each")
    ours: list[float] = []
    bare: list[float] = []
    for i in range(runs):
        for which in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):
            d = Path(tempfile.mkdtemp(dir=work, prefix=f"cold-{which}-"))
            if which == "ours":
                runner = RecordingRunner()
                cache = open_cache(runner=runner, cache_dir=str(d / "cache"))
                t = time.perf_counter()
                entry = cache.pull(ref)
                ours.append(time.perf_counter() - t)
                assert builds(runner) == 1 and entry.origin == "converted"
            else:
                env = {**os.environ, "APPTAINER_CACHEDIR": str(d / "ac"), "APPTAINER_TMPDIR": str(d)}
                t = time.perf_counter()
                r = subprocess.run(
                    [APPTAINER, "build", str(d / "bare.sif"), source],
                    capture_output=True,
                    env=env,
                    stdin=subprocess.DEVNULL,
                )
                bare.append(time.perf_counter() - t)
                assert r.returncode == 0, r.stderr
            shutil.rmtree(d, ignore_errors=True)
    mo, mb = statistics.median(ours), statistics.median(bare)
    print(f"    hpcjobs pull (resolve+lock+build+verify+publish): median {mo:.3f} s  {[round(x, 3) for x in ours]}")
    print(f"    bare apptainer build:                             median {mb:.3f} s  {[round(x, 3) for x in bare]}")
    print(f"    ratio (median/median): {mo / mb:.3f}")


def race(work: Path, ref: str, n: int) -> None:
    print(f"\n(3) {n}-way race: {n} `python -m hpcjobs.images pull` processes, one cold image")
    d = Path(tempfile.mkdtemp(dir=work, prefix="race-"))
    count = d / "builds"
    wrapper = d / "apptainer"
    wrapper.write_text(f'#!/bin/bash\n[ "$1" = build ] && echo "$$" >> {count}\nexec {APPTAINER} "$@"\n')
    wrapper.chmod(0o755)
    argv = [
        sys.executable,
        "-m",
        "hpcjobs.images",
        "--cache-dir",
        str(d / "cache"),
        "pull",
        "--json",
        "--apptainer",
        str(wrapper),
        ref,
    ]
    t = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t
    ok = [json.loads(o) for (o, _), p in zip(outs, procs, strict=True) if p.returncode == 0]
    conversions = len(count.read_text().splitlines()) if count.exists() else 0
    origins = {o: sum(1 for e in ok if e["origin"] == o) for o in ("converted", "waited", "hit")}
    print(
        f"    succeeded: {len(ok)}/{n}   distinct paths: {len({e['path'] for e in ok})}   "
        f"conversions: {conversions}   origins: {origins}   wall: {wall:.2f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--race", type=int, default=16)
    args = ap.parse_args(argv)
    if not CLUSTER_JSON.is_file():
        print(f"{CLUSTER_JSON} not found: run scripts/dev-cluster up", file=sys.stderr)
        return 2
    info = json.loads(CLUSTER_JSON.read_text())
    imgs = info["images"]
    r = subprocess.run([APPTAINER, "version"], capture_output=True, text=True)
    print(f"apptainer {r.stdout.strip()}, python {sys.version.split()[0]}, host {os.uname().nodename}")
    work = Path(tempfile.mkdtemp(prefix="hpcjobs-bench-images-"))
    try:
        refs = [
            f"oci-archive:{imgs['tiny_oci_archive']}",
            f"oci:{imgs['tiny_oci_dir']}",
            f"docker-archive:{imgs['tiny_docker_archive']}",
            info["tiny_ref"],
            info["tiny_ref"].rsplit(":", 1)[0] + "@" + info["tiny_manifest_digest"],
        ]
        warm_lookups(work, refs, args.lookups)
        verify_cost(work, refs[2], args.lookups, "tiny image")
        tiny = imgs["tiny_docker_archive"]
        cold_ratio(work, f"docker-archive:{tiny}", f"docker-archive:{tiny}", args.runs, "tiny image (1 MB)")
        synth = work / "synthetic.docker.tar"
        synthetic_docker_archive(synth, args.size_mb)
        cold_ratio(
            work,
            f"docker-archive:{synth}",
            f"docker-archive:{synth}",
            args.runs,
            f"synthetic image ({args.size_mb} MB)",
        )
        verify_cost(
            work, f"docker-archive:{synth}", max(10, args.lookups // 10), f"synthetic image ({args.size_mb} MB)"
        )
        race(work, f"docker-archive:{synth}", args.race)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
