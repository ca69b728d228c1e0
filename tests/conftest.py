"""Settings for every test under tests/."""

from __future__ import annotations

from hypothesis import settings

# Hypothesis' default 200 ms deadline is a timing assertion: on a loaded 2-core CI machine a test
# case that starts bash or Apptainer took 257 ms once and 4 ms when replayed, and failed as "flaky".
# Timings are measured in benchmarks/, never asserted in tests.
settings.register_profile("hpcjobs", deadline=None)
settings.load_profile("hpcjobs")
