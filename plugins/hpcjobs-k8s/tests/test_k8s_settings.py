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
