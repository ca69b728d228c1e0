"""The site config's ``plugins.kubernetes`` section: where and how jobs run on Kubernetes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SECTION = "kubernetes"

# RFC 1123 label (namespaces, volume names) and subdomain (secret, claim names)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# an extended resource name as Kubernetes accepts it in resources.limits: DOMAIN/NAME
RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class _Strict(BaseModel):
    # validators built on first use: loading the plugin (every render and submit) builds none
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _name(value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    if value is not None and not pattern.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes {what} (lower-case letters, digits and '-')")
    return value


class VolumeMap(_Strict):
    """Binds whose host source is ``host_path`` or below it are mounted from this volume."""

    host_path: str = Field(description="Host path (absolute) as binds name it; binds below it use a subPath.")
    name: str = Field(description="Volume name in the pod (RFC 1123 label).")
    kind: Literal["hostPath", "persistentVolumeClaim", "emptyDir"]
    claim_name: str | None = Field(None, description="persistentVolumeClaim: the claim's name.")
    node_path: str | None = Field(None, description="hostPath: the path on the node (default: host_path).")
    read_only: bool = Field(False, description="Mount read-only whatever the bind says.")

    @field_validator("host_path", "node_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\0" in value):
            raise ValueError(f"expected an absolute path, got {value!r}")
        return value

    @field_validator("name")
    @classmethod
    def _label(cls, value: str) -> str:
        return _name(value, DNS_LABEL, "volume name") or value

    @field_validator("claim_name")
    @classmethod
    def _claim(cls, value: str | None) -> str | None:
        return _name(value, DNS_SUBDOMAIN, "claim name")

    @model_validator(mode="after")
    def _kind_fields(self) -> VolumeMap:
        if self.kind == "persistentVolumeClaim" and self.claim_name is None:
            raise ValueError("kind persistentVolumeClaim needs claim_name")
        if self.kind != "persistentVolumeClaim" and self.claim_name is not None:
            raise ValueError(f"claim_name is only for kind persistentVolumeClaim, not {self.kind}")
        if self.kind != "hostPath" and self.node_path is not None:
            raise ValueError(f"node_path is only for kind hostPath, not {self.kind}")
        return self


class KubernetesSettings(_Strict):
    """Where and how hpcjobs runs jobs on Kubernetes (target k8s)."""

    namespace: str | None = Field(None, description="Namespace of the Jobs (default: the kubeconfig context's).")
    context: str | None = Field(None, description="kubeconfig context for kubectl (default: the current one).")
    kubectl: str = Field("kubectl", min_length=1, description="The kubectl program.")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource a GPU is requested as.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets (by name) to pull images.")
    volumes: list[VolumeMap] = Field(default_factory=list, description="Host paths binds may use, as volumes.")
    mpi_operator: Literal["kubeflow.org/v2beta1"] | None = Field(
        None, description="The MPI operator's API version: multi-task jobs become its MPIJob (default: refused)."
    )
    mpi_implementation: Literal["OpenMPI", "Intel", "MPICH"] = Field(
        "OpenMPI", description="MPIJob spec.mpiImplementation: the MPI in the images."
    )
    mpi_worker_command: list[str] = Field(
        default_factory=lambda: ["/usr/sbin/sshd", "-De"], min_length=1,
        description="What MPIJob workers run (the launcher's mpirun reaches them over ssh).",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return _name(value, DNS_LABEL, "namespace")

    @field_validator("gpu_resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        if not RESOURCE_NAME.match(value):
            raise ValueError(f"{value!r} is not an extended resource name like nvidia.com/gpu")
        return value

    @field_validator("image_pull_secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        for name in value:
            _name(name, DNS_SUBDOMAIN, "secret name")
        return value

    @field_validator("volumes")
    @classmethod
    def _unique(cls, value: list[VolumeMap]) -> list[VolumeMap]:
        for attr in ("name", "host_path"):
            seen = [getattr(v, attr) for v in value]
            dup = next((x for x in seen if seen.count(x) > 1), None)
            if dup is not None:
                raise ValueError(f"two volumes share the {attr.replace('_', ' ')} {dup!r}")
        return value


def settings_of(plugin_settings: Mapping[str, Mapping[str, Any]]) -> KubernetesSettings:
    """The site's ``plugins.kubernetes`` section (defaults when the site has none)."""
    return KubernetesSettings.model_validate(dict(plugin_settings.get(SECTION) or {}))
