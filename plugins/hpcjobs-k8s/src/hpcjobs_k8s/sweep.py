"""A sweep as a ``v1`` List: a ConfigMap holding the points and an Indexed Job, one pod per point.

Kubernetes cannot index a file into ``argv``, so the pod runs a bash wrapper that reads its point
from the ConfigMap (the NUL-delimited records of the Slurm path, :mod:`hpcjobs.sweep.pointfile`)
with ``mapfile -d ''`` and ``exec``s the job's program with the point's words appended: no value
is ever parsed by a shell. The image needs bash 4.4 or later; the wrapper says so when it is older,
and Kubernetes reports a missing ``bash`` as the container's start error. Pure.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from hpcjobs.errors import ConfigError
from hpcjobs.plugin_api import ResolvedJob
from hpcjobs.sweep.pointfile import GROUP, encode_points
from hpcjobs.sweep.points import Point
from hpcjobs_k8s.manifest import CONTAINER, k8s_literal, manifest
from hpcjobs_k8s.settings import KubernetesSettings

__all__ = ["MAX_CONFIGMAP_BYTES", "MAX_INDEXED_COMPLETIONS", "POINTS_DIR", "WRAPPER", "sweep_manifest"]

# the API server refuses a ConfigMap whose data and binaryData hold more (core/v1 validation)
MAX_CONFIGMAP_BYTES = 1024 * 1024
# an Indexed Job with backoffLimitPerIndex takes at most this many completions (batch/v1 validation)
MAX_INDEXED_COMPLETIONS = 100_000
POINTS_DIR = "/hpcjobs-sweep"
BAD_RECORD_EXIT = 97
_VOLUME = "hpcjobs-points"

_BAD = f'{{ echo "hpcjobs: no valid record for point $p in $d" >&2; exit {BAD_RECORD_EXIT}; }}'
# ``bash -c WRAPPER hpcjobs-sweep DIR PROGRAM…``: $1 is the points directory, then the job's
# program (entrypoint + command) as separate words.
# Numbers read from the file are checked to be digits before arithmetic sees them (it evaluates).
WRAPPER = "\n".join([
    "if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then",
    f'  echo "hpcjobs: the sweep reader needs bash 4.4 or later (mapfile -d), the image has $BASH_VERSION" >&2'
    f"; exit {BAD_RECORD_EXIT}",
    "fi",
    'd=$1; shift',
    "p=${JOB_COMPLETION_INDEX-}",
    f"[[ $p =~ ^[0-9]+$ ]] || {_BAD}",
    f"mapfile -d '' -t f <\"$d/$((p / {GROUP})).rec\" || {_BAD}",
    f"k=$((p % {GROUP}))",
    "i=${f[1 + k]-}",
    '[[ ${f[0]-} =~ ^[0-9]+$ && $i =~ ^[0-9]+$ ]] && ((k < f[0])) && [ "${f[i]-}" = "$p" ] || ' + _BAD,
    "n=${f[i + 1]-}",
    f"[[ $n =~ ^[0-9]+$ ]] || {_BAD}",
    'a=("${f[@]:i + 2:n}")',
    "i=$((i + 2 + n))",
    "n=${f[i]-}",
    f"[[ $n =~ ^[0-9]+$ ]] || {_BAD}",
    'for e in "${f[@]:i + 1:n}"; do export "${e?}"; done',
    "unset d f i k n e p",
    'exec "$@" "${a[@]}"',
])  # fmt: skip


def _carry(name: str, value: str) -> str:
    return f"{name}={value}"  # exported by bash as one word: NAME=VALUE, the value literal


def point_files(points: Sequence[Point]) -> dict[str, bytes]:
    """The ConfigMap's files: ``K.rec`` holds points K*GROUP … (K+1)*GROUP-1."""
    return {f"{k}.rec": data for k, data in enumerate(encode_points(points, _carry))}


def _check_size(files: dict[str, bytes], n: int) -> None:
    size = sum(len(k) + len(v) for k, v in files.items())
    if size > MAX_CONFIGMAP_BYTES:
        fit = max(1, n * MAX_CONFIGMAP_BYTES // size)
        raise ConfigError(
            f"the {n} points take {size} bytes; a ConfigMap holds at most {MAX_CONFIGMAP_BYTES} (1 MiB): "
            f"split the sweep into parts of about {fit} points, or shorten the values (target k8s)"
        )


def sweep_manifest(job: ResolvedJob, settings: KubernetesSettings, points: Sequence[Point]) -> dict[str, Any]:
    """``v1`` List: the ConfigMap ``NAME-points`` and the Indexed Job ``NAME``."""
    if not points:
        raise ConfigError("a sweep needs at least one point")
    if len(points) > MAX_INDEXED_COMPLETIONS:
        raise ConfigError(
            f"{len(points)} points: an Indexed Job runs at most {MAX_INDEXED_COMPLETIONS}; split the sweep (target k8s)"
        )
    if job.array is not None:
        raise ConfigError(f"a sweep makes its own indexes; remove array {job.array!r} from the job (target k8s)")
    if job.mode != "exec":
        raise ConfigError(
            "target k8s runs a sweep's points through a bash wrapper that replaces the image ENTRYPOINT: "
            "set the job's entrypoint (the program each point's arguments follow)"
        )
    clash = [b.dst for b in job.binds if (b.dst.rstrip("/") + "/").startswith(POINTS_DIR + "/")]
    clash += [v.name for v in settings.volumes if v.name == _VOLUME]
    if clash:
        raise ConfigError(f"{clash[0]!r}: {POINTS_DIR} and the volume name {_VOLUME} are the sweep's (target k8s)")
    files = point_files(points)
    _check_size(files, len(points))
    doc = manifest(job, settings)
    name = doc["metadata"]["name"]
    labels = {"app.kubernetes.io/managed-by": "hpcjobs", "hpcjobs/job": name}
    cm_meta: dict[str, Any] = {"name": f"{name}-points"}
    if "namespace" in doc["metadata"]:
        cm_meta["namespace"] = doc["metadata"]["namespace"]
    cm_meta["labels"] = labels
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": cm_meta, "immutable": True,
        "binaryData": {k: base64.b64encode(v).decode("ascii") for k, v in files.items()},
    }  # fmt: skip
    spec = doc["spec"]
    del spec["backoffLimit"]
    n = len(points)
    parallel = min(job.array_throttle or n, n)
    indexed = {"completionMode": "Indexed", "completions": n, "parallelism": parallel, "backoffLimitPerIndex": 0}
    doc["spec"] = {**indexed, **spec}
    pod = spec["template"]["spec"]
    (k,) = [i for i, c in enumerate(pod["containers"]) if c["name"] == CONTAINER]
    job_container = pod["containers"][k]
    program = job_container.pop("command") + job_container.pop("args", [])
    container = {"name": CONTAINER, "image": job_container.pop("image"),
                 "command": ["bash", "-c", k8s_literal(WRAPPER), "hpcjobs-sweep", POINTS_DIR, *program]}  # fmt: skip
    container.update(job_container)
    pod["containers"][k] = container
    container["volumeMounts"] = [*container.get("volumeMounts", []),
                                 {"name": _VOLUME, "mountPath": POINTS_DIR, "readOnly": True}]  # fmt: skip
    pod["volumes"] = [*pod.get("volumes", []), {"name": _VOLUME, "configMap": {"name": cm_meta["name"]}}]
    return {"apiVersion": "v1", "kind": "List", "items": [config_map, doc]}
