"""A sweep on target k8s: the ConfigMap + Indexed Job List validates offline, and the generated bash
wrapper, run here with bash against the ConfigMap's own bytes, hands each point's words to the
program byte for byte (the program is this Python, printing its argv and environment)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hpcjobs_k8s.kubectl import parse_submit
from hpcjobs_k8s.sweep import MAX_CONFIGMAP_BYTES, POINTS_DIR
from hpcjobs_k8s.target import KubernetesTarget
from hypothesis import given, settings
from hypothesis import strategies as st
from test_k8s_manifest import GOLDEN, HOSTILE, K8S_VERSION, unexpand

from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import ConfigError, HpcjobsError
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec
from hpcjobs.sweep.pointfile import GROUP
from hpcjobs.sweep.points import Point, to_point

SHOW = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ.get('V'), os.environ.get('W')]))"


def sweep_doc(spec: JobSpec, site: SiteConfig, points: list[Point], **sets: Any) -> dict[str, Any]:
    text = KubernetesTarget().render_sweep(resolve(spec, site, sets), points)
    doc: dict[str, Any] = yaml.safe_load(text)
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "List")
    for item in doc["items"]:
        kubernetes_validate.validate(item, K8S_VERSION, strict=True)
    return doc


def run_point(doc: dict[str, Any], index: int, tmp_path: Path) -> list[Any]:
    """Pod ``index`` as Kubernetes would start it, here: the ConfigMap's files in a directory, the
    container's command and env after Kubernetes' $(…)/$$ pass, JOB_COMPLETION_INDEX set."""
    config_map, job = doc["items"]
    points = tmp_path / "points"
    points.mkdir(exist_ok=True)
    for key, data in config_map["binaryData"].items():
        (points / key).write_bytes(base64.b64decode(data))
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    argv = [unexpand(w) for w in c["command"]]
    assert argv[:2] == ["bash", "-c"] and argv[3:5] == ["hpcjobs-sweep", POINTS_DIR]
    assert {"name": "hpcjobs-points", "mountPath": POINTS_DIR, "readOnly": True} in c["volumeMounts"]
    assert {"name": "hpcjobs-points", "configMap": {"name": config_map["metadata"]["name"]}} in pod["volumes"]
    argv[4] = str(points)  # the mount point, here
    env = {e["name"]: unexpand(e["value"]) for e in c.get("env", [])}
    env.update(PATH=os.environ["PATH"], JOB_COMPLETION_INDEX=str(index))
    done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    out: list[Any] = json.loads(done.stdout)
    return out


def test_golden_sweep_list(k8s_site: SiteConfig) -> None:
    spec = JobSpec(image="docker://python:3.12", name="fit", entrypoint=["python", "fit.py"], command=["--data", "/d"],
                   array_throttle=2, binds=["/scratch/alice:/out"], env={"V": "job"})  # fmt: skip
    points = [to_point(p) for p in (["--lr", "0.1"], {"args": ["--lr", "$(HOME)"], "env": {"W": "a b"}},
                                    ["--lr", "; echo x\n"])]  # fmt: skip
    text = KubernetesTarget().render_sweep(resolve(spec, k8s_site), points)
    for item in yaml.safe_load(text)["items"]:
        kubernetes_validate.validate(item, K8S_VERSION, strict=True)
    path = GOLDEN / "sweep.yaml"
    if os.environ.get("HPCJOBS_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), (
        f"{path} differs; if the change is intended: HPCJOBS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest {__file__}"
    )
    job = yaml.safe_load(text)["items"][1]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"], job["backoffLimitPerIndex"]) == (
        "Indexed", 3, 2, 0)


def test_hostile_points_reach_the_program_byte_for_byte(k8s_site: SiteConfig, tmp_path: Path) -> None:
    spec = JobSpec(image="docker://python:3.12", name="fit", entrypoint=[sys.executable, "-c", SHOW],
                   command=["job-$(HOME)", "b c"], env={"V": "$$x"})  # fmt: skip
    points = [Point((v, "--k=" + v), {"W": v}) for v in HOSTILE] + [Point((), {})]
    doc = sweep_doc(spec, k8s_site, points)
    assert doc["items"][1]["spec"]["parallelism"] == len(points)  # no throttle: all at once
    for i, p in enumerate(points):
        assert run_point(doc, i, tmp_path) == [["job-$(HOME)", "b c", *p.args], "$$x", p.env.get("W")]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
                         max_size=4), min_size=1, max_size=3))  # fmt: skip
def test_any_point_text_arrives_unchanged(k8s_site: SiteConfig, tmp_path_factory: pytest.TempPathFactory,
                                          words: list[list[str]]) -> None:  # fmt: skip
    spec = JobSpec(image="docker://a:1", name="p", entrypoint=[sys.executable, "-c", SHOW])
    points = [Point(tuple(w), {"W": "".join(w)}) for w in words]
    doc = sweep_doc(spec, k8s_site, points)
    tmp = tmp_path_factory.mktemp("p")
    for i, p in enumerate(points):
        assert run_point(doc, i, tmp) == [list(p.args), None, "".join(p.args)]


def test_points_past_the_first_file(k8s_site: SiteConfig, tmp_path: Path) -> None:
    spec = JobSpec(image="docker://a:1", name="many", entrypoint=[sys.executable, "-c", SHOW], array_throttle=50)
    points = [Point((str(i), f"x{i}")) for i in range(GROUP + 5)]
    doc = sweep_doc(spec, k8s_site, points)
    assert sorted(doc["items"][0]["binaryData"]) == ["0.rec", "1.rec"]
    assert doc["items"][1]["spec"]["parallelism"] == 50
    for i in (0, GROUP - 1, GROUP, GROUP + 4):
        assert run_point(doc, i, tmp_path)[0] == [str(i), f"x{i}"]


def test_a_bad_index_fails_clearly(k8s_site: SiteConfig, tmp_path: Path) -> None:
    doc = sweep_doc(JobSpec(image="docker://a:1", entrypoint=[sys.executable, "-c", SHOW]), k8s_site, [Point(("a",))])
    with pytest.raises(AssertionError, match="no valid record for point 1 in"):
        run_point(doc, 1, tmp_path)
    with pytest.raises(AssertionError, match="no valid record for point 1x"):
        config_map = doc["items"][0]
        (tmp_path / "points").mkdir(exist_ok=True)
        (tmp_path / "points" / "0.rec").write_bytes(base64.b64decode(config_map["binaryData"]["0.rec"]))
        c = doc["items"][1]["spec"]["template"]["spec"]["containers"][0]
        argv = [unexpand(w) for w in c["command"]]
        argv[4] = str(tmp_path / "points")
        done = subprocess.run(argv, env={"PATH": os.environ["PATH"], "JOB_COMPLETION_INDEX": "1x"},
                              capture_output=True, check=False, timeout=60)  # fmt: skip
        assert (done.returncode, done.stdout) == (0, b""), done.stderr.decode()


def test_refusals(k8s_site: SiteConfig) -> None:
    one = [Point(("a",))]
    with pytest.raises(ConfigError, match="set the job's entrypoint"):
        sweep_doc(JobSpec(image="docker://a:1", command=["run"]), k8s_site, one)
    with pytest.raises(ConfigError, match="at least one point"):
        sweep_doc(JobSpec(image="docker://a:1", entrypoint=["run"]), k8s_site, [])
    with pytest.raises(ConfigError, match="remove array"):
        sweep_doc(JobSpec(image="docker://a:1", entrypoint=["run"], array="0-3"), k8s_site, one)
    with pytest.raises(ConfigError, match=r"a ConfigMap holds at most 1048576 \(1 MiB\): split the sweep into parts"):
        sweep_doc(JobSpec(image="docker://a:1", entrypoint=["run"]), k8s_site,
                  [Point(("x" * 1000, str(i))) for i in range(MAX_CONFIGMAP_BYTES // 1000)])  # fmt: skip
    with pytest.raises(ConfigError, match="are the sweep's"):
        sweep_doc(JobSpec(image="docker://a:1", entrypoint=["run"], binds=["/tmp:/hpcjobs-sweep/x"]), k8s_site, one)
    with pytest.raises(ConfigError, match="is a SIF file"):
        sweep_doc(JobSpec(image="/images/a.sif", entrypoint=["run"]), k8s_site, one)


def test_just_under_the_limit_is_accepted(k8s_site: SiteConfig) -> None:
    points = [Point(("x" * 1000,)) for _ in range(1000)]  # ~1 MB in one file
    doc = sweep_doc(JobSpec(image="docker://a:1", entrypoint=["run"]), k8s_site, points)
    assert len(base64.b64decode(doc["items"][0]["binaryData"]["0.rec"])) <= MAX_CONFIGMAP_BYTES


def test_kubectl_answer_for_the_list() -> None:
    assert parse_submit("configmap/fit-points\njob.batch/fit\n") == "fit"
    for bad in ("configmap/fit-points\n", "job.batch/a\njob.batch/b\n", "configmap/x\nservice/y\njob.batch/a\n"):
        with pytest.raises(HpcjobsError, match=r"not job\.batch/NAME"):
            parse_submit(bad)
