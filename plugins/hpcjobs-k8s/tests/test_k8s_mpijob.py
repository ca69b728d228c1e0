"""Multi-task jobs on target k8s: a Kubeflow ``MPIJob`` (kubeflow.org/v2beta1) when the site names the
operator, refused clearly when it does not. Validated offline against the operator's own CRD schema
(tests/data/mpi-operator, Apache-2.0) with jsonschema, unknown fields rejected as kubectl's strict
field validation does, and each replica's pod against the Kubernetes schemas."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hpcjobs_k8s import kubectl
from hpcjobs_k8s.settings import KubernetesSettings
from hpcjobs_k8s.target import KubernetesTarget
from test_k8s_manifest import GOLDEN, HOSTILE, K8S_VERSION, unexpand

from hpcjobs.config.loader import load_site_text
from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import ConfigError, HpcjobsError
from hpcjobs.resolve import resolve
from hpcjobs.spec import JobSpec

HERE_SITE = Path(__file__).parent / "site.yaml"
SCHEMA_FILE = Path(__file__).parent / "data" / "mpi-operator" / "mpijob-v2beta1.openapi.json"


def _strict(schema: Any) -> Any:
    """Unknown fields rejected (kubectl --validate=strict) where the schema lists the fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        lists_fields = "properties" in out and "additionalProperties" not in out
        if lists_fields and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


VALIDATOR = jsonschema.Draft7Validator(_strict(json.loads(SCHEMA_FILE.read_text())))


def validate_mpijob(doc: dict[str, Any]) -> None:
    VALIDATOR.validate(doc)
    assert (doc["apiVersion"], doc["kind"]) == ("kubeflow.org/v2beta1", "MPIJob")
    for role in ("Launcher", "Worker"):
        template = doc["spec"]["mpiReplicaSpecs"][role]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **template["metadata"]},
               "spec": template["spec"]}  # fmt: skip
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def mpi_site() -> SiteConfig:
    data = yaml.safe_load(HERE_SITE.read_text())
    data["plugins"]["kubernetes"]["mpi_operator"] = "kubeflow.org/v2beta1"
    return load_site_text(yaml.safe_dump(data))


def render(spec: JobSpec, site: SiteConfig) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(KubernetesTarget().render(resolve(spec, site)))
    validate_mpijob(doc)
    return doc


MPI = JobSpec(image="docker://registry.example/lab/lammps:2024", name="lammps", nodes=2, ntasks=8, cpus_per_task=2,
              mem_gb=16, gpus=1, partition="gpu", time_min=30, entrypoint=["lmp", "-in"], command=["in.lj"],
              binds=["/scratch/alice:/out"], workdir="/out", env={"OMP_NUM_THREADS": "2"})  # fmt: skip


def test_golden_mpijob(mpi_site: SiteConfig) -> None:
    text = KubernetesTarget().render(resolve(MPI, mpi_site))
    validate_mpijob(yaml.safe_load(text))
    path = GOLDEN / "mpijob.yaml"
    if os.environ.get("HPCJOBS_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), (
        f"{path} differs; if the change is intended: HPCJOBS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest {__file__}"
    )


def test_mapping(mpi_site: SiteConfig) -> None:
    spec = yaml.safe_load(KubernetesTarget().render(resolve(MPI, mpi_site)))["spec"]
    assert (spec["slotsPerWorker"], spec["mpiReplicaSpecs"]["Worker"]["replicas"]) == (4, 2)
    (launcher,) = spec["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"]
    assert launcher["command"] == ["mpirun", "-n", "8", "-x", "OMP_PROC_BIND", "-x", "OMP_NUM_THREADS",
                                   "-wdir", "/out", "lmp", "-in", "in.lj"]  # fmt: skip
    (worker,) = spec["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert worker["command"] == ["/usr/sbin/sshd", "-De"]
    assert worker["resources"]["limits"] == {"cpu": "8", "memory": "16384Mi", "nvidia.com/gpu": 1}
    assert worker["volumeMounts"] == [{"name": "scratch", "mountPath": "/out", "subPath": "alice"}]
    assert spec["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 0, "activeDeadlineSeconds": 1800}


def test_intel_and_mpich_forward_env_with_genvlist(mpi_site: SiteConfig) -> None:
    data = yaml.safe_load(HERE_SITE.read_text())
    data["plugins"]["kubernetes"].update(mpi_operator="kubeflow.org/v2beta1", mpi_implementation="MPICH",
                                         mpi_worker_command=["/usr/sbin/sshd", "-De", "-f", "/home/u/sshd_config"])
    doc = render(JobSpec(image="docker://a:1", ntasks=3, entrypoint=["prog"], env={"A": "1"}),
                 load_site_text(yaml.safe_dump(data)))  # fmt: skip
    assert doc["spec"]["mpiImplementation"] == "MPICH"
    (launcher,) = doc["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"]
    assert launcher["command"] == ["mpirun", "-n", "3", "-genvlist", "OMP_PROC_BIND,A", "prog"]
    (worker,) = doc["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert worker["command"] == ["/usr/sbin/sshd", "-De", "-f", "/home/u/sshd_config"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_literal(value: str, mpi_site: SiteConfig) -> None:
    doc = render(JobSpec(image="docker://a:1", name="mpi", ntasks=2, entrypoint=["prog", value], command=[value],
                         env={"V": value}, workdir="/w"), mpi_site)  # fmt: skip
    (launcher,) = doc["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"]
    assert [unexpand(w) for w in launcher["command"][-3:]] == ["prog", value, value]
    assert unexpand(next(e["value"] for e in launcher["env"] if e["name"] == "V")) == value


def test_the_strict_schema_check_can_fail(mpi_site: SiteConfig) -> None:
    doc = yaml.safe_load(KubernetesTarget().render(resolve(MPI, mpi_site)))
    for path, value in ((("spec", "slotsPerWorker"), "4"), (("spec", "mpiImplementation"), "LAM"),
                        (("spec", "slotPerWorker"), 4), (("spec", "mpiReplicaSpecs", "Worker", "replica"), 2)):
        bad = copy.deepcopy(doc)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            validate_mpijob(bad)
    bad = copy.deepcopy(doc)
    del bad["spec"]["mpiReplicaSpecs"]
    with pytest.raises(jsonschema.ValidationError, match="mpiReplicaSpecs"):
        validate_mpijob(bad)


def test_refusals(k8s_site: SiteConfig, mpi_site: SiteConfig) -> None:
    with pytest.raises(ConfigError, match=r"ntasks=4 \(MPI\) and the site names no MPI operator \(plugins.kubernetes"
                                          r".mpi_operator: kubeflow.org/v2beta1"):  # fmt: skip
        KubernetesTarget().render(resolve(JobSpec(image="docker://a:1", ntasks=4, entrypoint=["p"]), k8s_site))
    with pytest.raises(ConfigError, match="ntasks=5 is not a multiple of nodes=2"):
        render(JobSpec(image="docker://a:1", nodes=2, ntasks=5, entrypoint=["p"]), mpi_site)
    with pytest.raises(ConfigError, match="set the job's entrypoint"):
        render(JobSpec(image="docker://a:1", ntasks=2, command=["p"]), mpi_site)
    with pytest.raises(ConfigError, match="no array indexes"):
        render(JobSpec(image="docker://a:1", ntasks=2, entrypoint=["p"], array="0-3"), mpi_site)
    with pytest.raises(ConfigError, match="cannot carry launcher_options"):  # srun's options: no srun in a pod
        render(JobSpec(image="docker://a:1", ntasks=2, entrypoint=["p"],
                       launcher_options={"srun": ["--cpu-bind=cores"]}), mpi_site)  # fmt: skip
    with pytest.raises(ValueError, match="mpi_operator"):
        KubernetesSettings.model_validate({"mpi_operator": "kubeflow.org/v1"})


def test_kubectl_lines_for_an_mpijob() -> None:
    s = KubernetesSettings(namespace="research")
    assert kubectl.parse_submit("mpijob.kubeflow.org/lammps\n") == "mpijob/lammps"
    assert kubectl.status_argv(s, ["mpijob/lammps", "sim"]) == [
        "kubectl", "--namespace=research", "get", "mpijob.kubeflow.org/lammps", "job/sim", "--ignore-not-found",
        "--output=json"]  # fmt: skip
    assert kubectl.logs_argv(s, "mpijob/lammps")[3] == (
        "--selector=training.kubeflow.org/job-name=lammps,training.kubeflow.org/job-role=launcher")
    for bad in ("mpijob/a,b", "mpijob/", "mpi/x"):
        with pytest.raises(HpcjobsError, match="not a Kubernetes Job name"):
            kubectl.logs_argv(s, bad)
    items = [
        {"kind": "MPIJob", "metadata": {"name": "a"}, "status": {"conditions": [
            {"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]}},
        {"kind": "MPIJob", "metadata": {"name": "b"}, "status": {"conditions": [
            {"type": "Created", "status": "True"}, {"type": "Running", "status": "False"},
            {"type": "Succeeded", "status": "True"}]}},
        {"kind": "MPIJob", "metadata": {"name": "c"}, "status": {"conditions": [
            {"type": "Created", "status": "True"},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}},
        {"kind": "MPIJob", "metadata": {"name": "d"}, "status": {}},
    ]  # fmt: skip
    got = kubectl.parse_status(json.dumps({"kind": "List", "items": items}), ["mpijob/a", "mpijob/b", "mpijob/c",
                                                                               "mpijob/d", "a"])  # fmt: skip
    assert {k: v.state for k, v in got.items()} == {"mpijob/a": "RUNNING", "mpijob/b": "COMPLETED",
                                                    "mpijob/c": "TIMEOUT", "mpijob/d": "PENDING", "a": "UNKNOWN"}
