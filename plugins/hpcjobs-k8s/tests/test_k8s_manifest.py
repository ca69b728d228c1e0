"""The k8s target's manifests: goldens, the mapping of each field, refusals, and validation
against the Kubernetes schemas of a pinned version (kubernetes-validate, offline)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hpcjobs_k8s.manifest import MAX_NAME, job_name, k8s_literal
from hpcjobs_k8s.settings import DNS_LABEL
from hpcjobs_k8s.target import KubernetesTarget
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcjobs.config.loader import load_site_text
from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import ConfigError
from hpcjobs.plugin_api import ResolvedJob
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

GOLDEN = Path(__file__).parent / "golden"
K8S_VERSION = "1.33.0"  # the schemas the manifests must satisfy (kubernetes-validate pinned in [test])
HOSTILE = ["a b", "it's", 'say "hi"', "$HOME", "$(HOME)", "$$(HOME)", "$$", "`id`", "; echo pwned", "x\ny",
           "tab\there", "", "yes", "0123", "1:20", "~", "null", "- item", "#c", "ünï©ødé", "\\", "{a: b}",
           "nel\x85x", "ls\u2028x"]  # fmt: skip


def render(spec: JobSpec, site: SiteConfig, **sets: Any) -> str:
    return KubernetesTarget().render(resolve(spec, site, sets))


def doc_of(spec: JobSpec, site: SiteConfig, **sets: Any) -> dict[str, Any]:
    text = render(spec, site, **sets)
    doc: dict[str, Any] = yaml.safe_load(text)
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return doc


def container(doc: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return c


def unexpand(value: str) -> str:
    """What Kubernetes makes of a command/args/env value: $(NAME) expanded (here: to X), $$ → $."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(" and ")" in value[i + 2:]:
                out.append("X")
                i = value.index(")", i + 2) + 1
                continue
        out.append(value[i])
        i += 1
    return "".join(out)


CASES = {
    "cpu-command": JobSpec(image="docker://registry.example/lab/sim:2.1", name="sim", command=["sim", "--steps", "10"]),
    "gpu-entrypoint-binds": JobSpec(
        image="docker://nvcr.io/nvidia/pytorch:24.05-py3", name="Train ResNet", entrypoint=["python", "-u"],
        command=["train.py", "--data", "/data"], gpus=2, cpus_per_task=8, mem_gb=64.5, time_min=120,
        binds=["/datasets/imagenet:/data:ro", "/scratch/alice/run1:/out", "/tmp:/tmp"], workdir="/out",
        env={"WANDB_MODE": "offline", "PATTERN": "$(HOME)/x"},
    ),
    "array": JobSpec(image="docker://python:3.12", name="sweep", command=["python", "point.py"], array="0-9%3"),
    "image-entrypoint": JobSpec(image="docker://busybox:1.36", name="plain"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_manifests(case: str, k8s_site: SiteConfig) -> None:
    text = render(CASES[case], k8s_site)
    kubernetes_validate.validate(yaml.safe_load(text), K8S_VERSION, strict=True)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("HPCJOBS_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), (
        f"{path} differs; if the change is intended: HPCJOBS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest {__file__}"
    )


def test_entrypoint_and_command_follow_docker_rules(k8s_site: SiteConfig) -> None:
    both = container(doc_of(JobSpec(image="docker://a:1", entrypoint=["/bin/run", "-x"], command=["c1"]), k8s_site))
    assert (both["command"], both["args"]) == (["/bin/run", "-x"], ["c1"])
    only_entry = container(doc_of(JobSpec(image="docker://a:1", entrypoint=["/bin/run"]), k8s_site))
    assert only_entry["command"] == ["/bin/run"] and "args" not in only_entry  # image CMD dropped, as in Docker
    only_cmd = container(doc_of(JobSpec(image="docker://a:1", command=["c1", "c2"]), k8s_site))
    assert only_cmd["args"] == ["c1", "c2"] and "command" not in only_cmd  # image ENTRYPOINT kept
    neither = container(doc_of(JobSpec(image="docker://a:1"), k8s_site))
    assert "command" not in neither and "args" not in neither
    # a string is split like a shell, as on the Slurm path (the same resolve)
    split = container(doc_of(JobSpec(image="docker://a:1", entrypoint="sh -c", command="'echo a; b'"), k8s_site))
    assert (split["command"], split["args"]) == (["sh", "-c"], ["echo a; b"])


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_args_and_env_stay_literal(value: str, k8s_site: SiteConfig) -> None:
    # the core refuses some job names (what an #SBATCH line cannot carry): those fail before any target
    try:
        name = resolve(JobSpec(image="docker://a:1", name=value), k8s_site).name if value else "plain"
    except ConfigError:
        name = "plain"
    spec = JobSpec(image="docker://a:1", name=name, entrypoint=["prog", value], command=[value], env={"V": value})
    doc = doc_of(spec, k8s_site)
    c = container(doc)
    assert [unexpand(w) for w in c["command"] + c["args"]] == ["prog", value, value]
    assert unexpand(next(e["value"] for e in c["env"] if e["name"] == "V")) == value
    assert doc["metadata"]["annotations"]["hpcjobs/name"] == name
    assert doc["metadata"]["name"] == job_name(name)


def test_dollar_escaping_matches_the_api_reference() -> None:
    # EnvVar.value: "Double $$ are reduced to a single $ ... "$$(VAR_NAME)" will produce "$(VAR_NAME)""
    assert k8s_literal("$(HOME)") == "$$(HOME)"
    assert k8s_literal("a$$b") == "a$$$$b"
    assert unexpand("$$(HOME)") == "$(HOME)" and unexpand("$(HOME)") == "X"
    with pytest.raises(ConfigError, match="NUL"):
        k8s_literal("a\0b")


@pytest.mark.parametrize("name", ["sim", "Train ResNet", "a" * 80, "--", "x.y_z", "ÄÖÜ", "ok-name-" + "9" * 44])
def test_derived_names_are_valid_labels(name: str) -> None:
    derived = job_name(name)
    assert len(derived) <= MAX_NAME
    kubernetes_validate.validate({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": derived},
                                  "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}],
                                                                  "restartPolicy": "Never"}}}}, K8S_VERSION)
    # the JSON schemas do not check name syntax: the RFC 1123 label rule is checked here
    assert DNS_LABEL.match(derived), derived


def test_valid_names_are_kept_and_cleaned_names_do_not_collide() -> None:
    assert job_name("sim") == "sim"
    assert job_name("My Job") != job_name("my-job") == "my-job"
    assert job_name("My Job").startswith("my-job-")


def test_resources_and_deadline(k8s_site: SiteConfig) -> None:
    doc = doc_of(JobSpec(image="docker://a:1", gpus=1, cpus_per_task=3, mem_gb=1.5, time_min=7), k8s_site)
    res = container(doc)["resources"]
    assert res == {"requests": {"cpu": "3", "memory": "1536Mi"},
                   "limits": {"cpu": "3", "memory": "1536Mi", "nvidia.com/gpu": 1}}  # fmt: skip
    assert doc["spec"]["activeDeadlineSeconds"] == 420
    assert doc["metadata"]["annotations"]["hpcjobs/partition"] == "gpu"  # site gpu_partition, as for Slurm


def test_gpu_resource_name_comes_from_the_site(k8s_site: SiteConfig) -> None:
    data = k8s_site.model_dump(exclude_unset=True)
    data["plugins"]["kubernetes"]["gpu_resource"] = "amd.com/gpu"
    site = load_site_text(yaml.safe_dump(data))
    assert container(doc_of(JobSpec(image="docker://a:1", gpus=2), site))["resources"]["limits"]["amd.com/gpu"] == 2


def test_limits_are_the_sites(k8s_site: SiteConfig) -> None:
    with pytest.raises(Exception, match="max_gpus_per_node"):
        render(JobSpec(image="docker://a:1", gpus=8), k8s_site)


def test_binds_map_through_volumes(k8s_site: SiteConfig) -> None:
    doc = doc_of(JobSpec(image="docker://a:1", binds=["/scratch:/s", "/datasets/x/y:/d", "/tmp/t:/t:ro"]), k8s_site)
    assert container(doc)["volumeMounts"] == [
        {"name": "scratch", "mountPath": "/s"},
        {"name": "datasets", "mountPath": "/d", "subPath": "x/y", "readOnly": True},
        {"name": "tmp", "mountPath": "/t", "subPath": "t", "readOnly": True},
    ]
    assert doc["spec"]["template"]["spec"]["volumes"] == [
        {"name": "scratch", "persistentVolumeClaim": {"claimName": "scratch-claim"}},
        {"name": "datasets", "hostPath": {"path": "/mnt/datasets"}},
        {"name": "tmp", "emptyDir": {}},
    ]


@pytest.mark.parametrize("bind", ["/home/alice:/h", "/scratchy:/s", "/scratch/../etc:/e"])
def test_unmapped_binds_are_refused(bind: str, k8s_site: SiteConfig) -> None:
    with pytest.raises(ConfigError, match="under no volume"):
        render(JobSpec(image="docker://a:1", binds=[bind]), k8s_site)


def test_arrays_are_indexed_jobs(k8s_site: SiteConfig) -> None:
    doc = doc_of(JobSpec(image="docker://a:1", array="0-4"), k8s_site)
    assert {k: doc["spec"][k] for k in ("completionMode", "completions", "parallelism", "backoffLimitPerIndex")} == {
        "completionMode": "Indexed", "completions": 5, "parallelism": 5, "backoffLimitPerIndex": 0}
    env = container(doc)["env"]
    assert {"name": "SLURM_ARRAY_TASK_ID", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in env
    for bad in ("1-5", "0,2,4", "0-8:2"):
        with pytest.raises(ConfigError, match="0-N or 0-N%P"):
            render(JobSpec(image="docker://a:1", array=bad), k8s_site)


@pytest.mark.parametrize(("image", "what"), [("/images/x.sif", "a SIF file"), ("oci-archive:/x.tar", "a local image"),
                                             ("python:3.12", "a local image"), ("docker://", "a local image")])
def test_images_other_than_registry_references_are_refused(image: str, what: str, k8s_site: SiteConfig) -> None:
    with pytest.raises(ConfigError, match=f"is {what}.*docker://REGISTRY/REPO"):
        render(JobSpec(image=image), k8s_site)


@pytest.mark.parametrize(("spec", "message"), [
    (JobSpec(image="docker://a:1", ntasks=4), "ntasks=4 .MPI."),
    (JobSpec(image="docker://a:1", nodes=2), "nodes=2"),
    (JobSpec(image="docker://a:1", extra_sbatch=["--exclusive"]), "cannot carry extra_sbatch"),
    (JobSpec(image="docker://a:1", runtime_flags=["--writable-tmpfs"]), "cannot carry runtime_flags"),
    (JobSpec(image="docker://a:1", dependency="afterok:12"), "cannot carry dependency"),
    (JobSpec(image="docker://a:1", output="x.out", account="proj"), "cannot carry output, account"),
])  # fmt: skip
def test_slurm_only_settings_are_refused_not_dropped(spec: JobSpec, message: str, k8s_site: SiteConfig) -> None:
    with pytest.raises(ConfigError, match=message):
        render(spec, k8s_site)


def test_resolved_job_is_the_slurm_paths(k8s_site: SiteConfig) -> None:
    job: ResolvedJob = resolve(CASES["gpu-entrypoint-binds"], k8s_site)
    assert job.entrypoint_len == 2 and job.mode == "exec"
    assert container(doc_of(CASES["gpu-entrypoint-binds"], k8s_site))["command"] == list(job.args[:2])


@settings(max_examples=150, deadline=None)
@given(words=st.lists(st.text(st.characters(blacklist_characters="\0")), min_size=1, max_size=4),
       value=st.text(st.characters(blacklist_characters="\0")))  # fmt: skip
def test_any_text_survives_yaml_and_kubernetes_expansion(words: list[str], value: str) -> None:
    site = load_site_text("name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n")
    job = resolve(JobSpec(image="docker://a:1", name="p", entrypoint=words[:1], command=words[1:],
                          env={"V": value}), site)  # fmt: skip
    doc = yaml.safe_load(KubernetesTarget().render(job))
    c = container(doc)
    assert [unexpand(w) for w in c["command"] + c.get("args", [])] == words
    assert unexpand(c["env"][0]["value"]) == value


def test_site_wrappers_are_the_slurm_paths_job_wrappers_are_refused(k8s_site: SiteConfig) -> None:
    from dataclasses import replace

    job = resolve(JobSpec(image="docker://a:1"), k8s_site)
    site_wrapped = replace(job, wrappers=("nsys",), provenance={**job.provenance, "wrappers": "site defaults"})
    assert "command" not in container(yaml.safe_load(KubernetesTarget().render(site_wrapped)))
    job_wrapped = replace(job, wrappers=("nsys",), provenance={**job.provenance, "wrappers": "job spec"})
    with pytest.raises(ConfigError, match="cannot carry wrappers"):
        KubernetesTarget().render(job_wrapped)


def test_exec_without_the_split_runs_all_words_as_the_program(k8s_site: SiteConfig) -> None:
    from dataclasses import replace

    job = replace(resolve(JobSpec(image="docker://a:1", entrypoint=["a", "b"]), k8s_site), entrypoint_len=0)
    c = container(yaml.safe_load(KubernetesTarget().render(job)))
    assert c["command"] == ["a", "b"] and "args" not in c
