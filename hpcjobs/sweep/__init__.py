"""Sweeps: one submission for a parameter study of many points (``ContainerJob.map``,
``sweep:`` in a job file). See docs/sweeps.md.

Modules, one job each: ``points`` (what a point is, grids, CSV/JSONL), ``plan`` (arrays within the
cluster's limits, pure), ``envcarry`` (how the runtime plugin exports a point's variable),
``pointfile`` (the NUL-delimited records tasks read), ``script`` (the task's bash lines), ``arrays``
(one script per array, submitted), ``record`` (sweep.json and the per-user index), ``submit``,
``handle`` (``Sweep``), ``progress``, ``spec`` (the job file's ``sweep:`` section).
"""
