"""What works together: the image's MPI against the launch a job asks for. Data, with its sources.

Each :class:`Row` says, for one launch (``srun --mpi=pmix``, ``srun --mpi=pmi2``, ``srun --mpi=none``,
the host's ``mpirun``) and one condition on the image's MPI, whether the job will wire up
(``ok``), will not (``refuse``: one line with what was found and what to change) or may not
(``warn``). The first row whose launch and condition match decides. :mod:`hpcjobs.mpi.verdict`
evaluates the rows; ``docs/admin-guide.md`` prints them.

Sources (keys of :data:`SOURCES`, cited by each row):

* ``slurm-mpi``: Slurm's MPI Users Guide (https://slurm.schedmd.com/mpi_guide.html): srun wires
  the tasks up through PMI-1/PMI-2 (``--mpi=pmi2``) or PMIx (``--mpi=pmix``); ``--mpi=none`` gives
  them no PMI at all.
* ``ompi5-slurm``: Open MPI 5 "Launching with Slurm"
  (https://docs.open-mpi.org/en/v5.0.x/launching-apps/slurm.html): direct launch needs
  ``srun --mpi=pmix``; Open MPI 5 has no PMI-1/PMI-2 support (singletons under ``--mpi=pmi2``,
  open-mpi/ompi#13523).
* ``ompi4-slurm``: Open MPI 4.x FAQ "Running jobs under Slurm"
  (https://www.open-mpi.org/faq/?category=slurm): ``srun --mpi=pmix`` with a PMIx component
  (``ext3x``, ``pmix3x``), ``--mpi=pmi2`` only when built ``--with-pmi`` (components ``s1``/``s2``).
* ``mpich-pmi``: MPICH's README / "Using MPICH with Slurm"
  (https://github.com/pmodels/mpich/blob/main/doc/wiki/how_to/Using_MPICH_with_Slurm.md): MPICH's
  own PMI client speaks PMI-1/PMI-2 (``srun --mpi=pmi2``; Slurm's pmi2 plugin also answers the PMI-1
  wire protocol, verified on Slurm 22.05 and 24.11); PMIx only when built ``--with-pmix``.
* ``pmix-xver``: OpenPMIx cross-version compatibility
  (https://docs.openpmix.org/en/latest/history.html and the Open MPI/PMIx cross-version matrix,
  https://github.com/open-mpi/ompi/wiki): clients and servers of different PMIx versions
  interoperate from v2.1.1 (v1.2.5/v2.0.3 only in part).
* ``apptainer-hybrid``: Apptainer's MPI guide, the hybrid model
  (https://apptainer.org/docs/user/latest/mpi.html): the host's mpirun starts the containers, so
  the MPI inside must be the same implementation and a compatible version ("ideally the same").
* ``verified``: this project's own cluster tests (tests/cluster/test_mpi_preflight_cluster.py):
  an MPICH image under ``srun --mpi=pmix`` prints ``rank 0 of 1`` per task, under ``--mpi=pmi2``
  ``rank R of 2``; Debian's Open MPI 4 image under ``--mpi=pmi2`` fails in MPI_Init; under the
  host's Open MPI ``mpirun`` the MPICH image starts singletons, the Open MPI image two ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["ok", "warn", "refuse"]

SOURCES = {
    "slurm-mpi": "https://slurm.schedmd.com/mpi_guide.html",
    "ompi5-slurm": "https://docs.open-mpi.org/en/v5.0.x/launching-apps/slurm.html",
    "ompi4-slurm": "https://www.open-mpi.org/faq/?category=slurm",
    "mpich-pmi": "https://github.com/pmodels/mpich/blob/main/doc/wiki/how_to/Using_MPICH_with_Slurm.md",
    "pmix-xver": "https://docs.openpmix.org/en/latest/history.html",
    "apptainer-hybrid": "https://apptainer.org/docs/user/latest/mpi.html",
    "verified": "tests/cluster/test_mpi_preflight_cluster.py",
}

PMIX_CROSS_VERSION_FROM = (2, 1, 1)
"""PMIx clients and servers of different versions interoperate from this version on (pmix-xver)."""


@dataclass(frozen=True)
class Row:
    """``launch``: ``srun:pmix``, ``srun:pmi2``, ``srun:none``, ``mpirun:<host impl>`` or ``*``.
    ``image``: a condition :mod:`hpcjobs.mpi.verdict` computes (see :data:`CONDITIONS`).
    ``text``: the verdict's line; ``{image}``, ``{host}``, ``{n}``, ``{launch}``, ``{alt}`` are filled in."""

    launch: str
    image: str
    level: Level
    text: str
    sources: tuple[str, ...]


CONDITIONS = {
    "host-lacks": "the host's srun does not offer the plugin asked for (srun --mpi=list)",
    "host-unknown": "srun --mpi=list could not be asked",
    "no-mpi": "the image has no MPI library",
    "unknown": "the image's MPI could not be probed",
    "speaks": "the image's MPI speaks the launch's PMI",
    "lacks": "the image's MPI does not speak it",
    "unsure": "it is not known whether it does",
    "pmix-old": "PMIx below 2.1.1 on one side (no cross-version support)",
    "has-mpi": "the image has an MPI library",
    "same-minor": "host and image: same implementation, same major.minor version",
    "same-major": "same implementation and major version, another minor",
    "other-major": "same implementation, another major version",
    "other-impl": "another implementation",
    "not-found": "the host has no such mpirun",
}

ROWS: tuple[Row, ...] = (
    # --- srun: what Slurm offers first
    Row("srun:pmix", "host-lacks", "refuse",
        "srun on this host has no --mpi=pmix ({host}): {alt}", ("slurm-mpi",)),
    Row("srun:pmi2", "host-lacks", "refuse",
        "srun on this host has no --mpi=pmi2 ({host}): {alt}", ("slurm-mpi",)),
    Row("srun:none", "no-mpi", "ok", "image has no MPI library; srun --mpi=none starts {n} independent tasks",
        ("slurm-mpi",)),
    Row("srun:none", "unknown", "ok", "{image}; srun --mpi=none starts {n} tasks without PMI", ("slurm-mpi",)),
    Row("srun:none", "has-mpi", "warn",
        "image has {image} but mpi: none gives the tasks no PMI: each MPI_Init makes a singleton (rank 0 of 1) "
        "instead of one job of {n} ranks; for MPI ranks {alt}", ("slurm-mpi", "verified")),
    Row("*", "host-unknown", "warn", "{host}: the launch cannot be checked against {image}", ("slurm-mpi",)),
    # --- srun: the image's side
    Row("*", "no-mpi", "refuse",
        "image has no MPI library (no libmpi/libmpich, ompi_info or mpichversion); {launch} would start {n} "
        "unconnected copies: use mpi: none for independent tasks, or an image with MPI", ("slurm-mpi", "verified")),
    Row("*", "unknown", "warn", "{image}; {launch} not checked against it", ("slurm-mpi",)),
    Row("srun:pmix", "lacks", "refuse",
        "image has {image}; srun --mpi=pmix would start {n} singletons (each rank 0 of 1): {alt}",
        ("slurm-mpi", "mpich-pmi", "verified")),
    Row("srun:pmi2", "lacks", "refuse",
        "image has {image}, which speaks neither PMI-1 nor PMI-2; srun --mpi=pmi2 would start {n} singletons "
        "or fail in MPI_Init: {alt}", ("slurm-mpi", "ompi5-slurm", "ompi4-slurm", "verified")),
    Row("srun:pmix", "pmix-old", "warn",
        "image has {image} and Slurm's pmix plugin is {host}: PMIx versions below 2.1.1 do not talk across "
        "versions; the job may hang in MPI_Init", ("pmix-xver",)),
    Row("srun:pmix", "speaks", "ok", "image has {image}; {host}", ("slurm-mpi", "pmix-xver", "verified")),
    Row("srun:pmi2", "speaks", "ok", "image has {image}; {host}", ("slurm-mpi", "mpich-pmi", "verified")),
    Row("*", "unsure", "warn",
        "image has {image}; whether it speaks what {launch} offers is not known: if the ranks report size 1, "
        "{alt}", ("slurm-mpi",)),
    # --- the hybrid model: the host's mpirun starts the containers
    Row("mpirun", "not-found", "warn",
        "{host}: the image's {image} cannot be compared with it (mpi.mpirun names the binary)",
        ("apptainer-hybrid",)),
    Row("mpirun", "same-minor", "ok", "image has {image}; {host}", ("apptainer-hybrid", "verified")),
    Row("mpirun", "same-major", "warn",
        "image has {image}; {host}: same major version, another minor; the hybrid model works best with the "
        "same version", ("apptainer-hybrid", "pmix-xver")),
    Row("mpirun", "other-major", "refuse",
        "image has {image} but {host}: the hybrid model needs the same MPI in and outside the container: "
        "{alt}", ("apptainer-hybrid",)),
    Row("mpirun", "other-impl", "refuse",
        "image has {image} but {host}: one MPI's mpirun cannot wire up another's ranks: {alt}",
        ("apptainer-hybrid", "verified")),
)
