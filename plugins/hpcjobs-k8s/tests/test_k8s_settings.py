"""The ``plugins.kubernetes`` site section is validated like every other section: errors name the
file and the key path; unknown keys list the valid ones."""

from __future__ import annotations

import pytest

from hpcjobs.config.loader import load_site_text
from hpcjobs.errors import ConfigError

BASE = "name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\nplugins:\n  kubernetes:\n"


@pytest.mark.parametrize(("section", "message"), [
    ("    namespace: Research\n", r"site\.yaml: plugins\.kubernetes\.namespace: .*'Research' is not a valid Kubernetes "
                                 "namespace"),
    ("    gpu_resource: gpu\n", r"plugins\.kubernetes\.gpu_resource: .*not an extended resource name"),
    ("    image_pull_secrets: [Bad_Secret]\n", r"plugins\.kubernetes\.image_pull_secrets: .*secret name"),
    ("    volumes: [{host_path: /s, name: s, kind: persistentVolumeClaim}]\n",
     r"plugins\.kubernetes\.volumes\.0: .*needs claim_name"),
    ("    volumes: [{host_path: rel, name: s, kind: emptyDir}]\n",
     r"plugins\.kubernetes\.volumes\.0\.host_path: .*absolute path"),
    ("    volumes: [{host_path: /a, name: s, kind: emptyDir}, {host_path: /b, name: s, kind: emptyDir}]\n",
     r"plugins\.kubernetes\.volumes: .*two volumes share the name 's'"),
    ("    volumes: [{host_path: /a, name: s, kind: nfs}]\n", r"plugins\.kubernetes\.volumes\.0\.kind"),
    ("    namspace: x\n", r"plugins\.kubernetes\.namspace: .*namespace"),
])  # fmt: skip
def test_section_errors_name_file_and_key(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_site_text(BASE + section, "site.yaml")


def test_a_valid_section_loads() -> None:
    site = load_site_text(BASE + "    namespace: lab\n    volumes: [{host_path: /s, name: s, kind: emptyDir}]\n")
    assert site.plugins["kubernetes"]["namespace"] == "lab"


def test_loading_the_plugin_builds_no_validator_and_imports_no_target_module() -> None:
    """hpcjobs loads every plugin on each render and submit: the target and the settings are imported
    when a hook asks for them, the section's validators are built on first use, and the manifest,
    sweep and kubectl modules are imported by the target method that uses them (checked in a fresh
    interpreter, by what exists, not by timing)."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys, hpcjobs_k8s\n"
        "ours = lambda: sorted(m for m in sys.modules if m.startswith(('hpcjobs_k8s.', 'hpcjobs.sweep')))\n"
        "loaded = ours()\n"
        "[target] = hpcjobs_k8s.hpcjobs_targets()\n"
        "from hpcjobs_k8s.settings import KubernetesSettings, VolumeMap\n"
        "print(json.dumps([loaded, ours(), KubernetesSettings.__pydantic_complete__, "
        "VolumeMap.__pydantic_complete__, type(target) is hpcjobs_k8s.KubernetesTarget]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded, with_target, complete, complete_volume, same_class = json.loads(out)
    assert loaded == []
    assert with_target == ["hpcjobs_k8s.settings", "hpcjobs_k8s.target"]
    assert (complete, complete_volume, same_class) == (False, False, True)
    with pytest.raises(ConfigError, match="namespace"):  # built on first use, and still validating
        load_site_text(BASE + "    namespace: Research\n", "site.yaml")
