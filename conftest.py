"""Settings for every test of the repository (tests/ and plugins/*/tests)."""

from __future__ import annotations

import os

# The warm server (hpcjobs.warm) is off for the suite unless asked (HPCJOBS_WARM=1 runs every CLI call
# of the suite through it): a server outlives the test that started it, and a test that counts what a
# fresh `hpcjobs` process imports must get one. tests/unit/test_warm.py and
# tests/cluster/test_warm_cluster.py turn it on, each with its own socket folder, and stop their servers.
os.environ.setdefault("HPCJOBS_WARM", "0")
