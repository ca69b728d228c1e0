"""One verdict from the table: the conditions that hold for (launch, image, host), then the first
row of :data:`hpcjobs.mpi.table.ROWS` that matches. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcjobs.mpi.host import MpirunInfo, SrunOffer
from hpcjobs.mpi.probe import ImageMpi
from hpcjobs.mpi.table import PMIX_CROSS_VERSION_FROM, ROWS, Level, Row

SRUN_KINDS = ("pmix", "pmi2", "none")


@dataclass(frozen=True)
class Verdict:
    level: Level
    line: str
    condition: str
    sources: tuple[str, ...] = ()

    def note(self) -> str:
        return f"MPI check: {self.level}: {self.line}"


def launch_of(mpi: str) -> str | None:
    """The table's launch for a job's ``mpi`` (None: a plugin's launcher, not in the table)."""
    if mpi in SRUN_KINDS:
        return f"srun:{mpi}"
    return "mpirun" if mpi == "mpirun" else None


def conditions(launch: str, image: ImageMpi, host: SrunOffer | MpirunInfo) -> list[str]:
    """What holds, most decisive first (the rows' order decides among them)."""
    out: list[str] = []
    if isinstance(host, SrunOffer):
        kind = launch.split(":", 1)[1]
        if kind != "none":
            offered = host.offers(kind)
            out += ["host-lacks"] if offered is False else ["host-unknown"] if offered is None else []
    elif host.error is not None:
        out.append("not-found")
    if image.has_mpi is False:
        return [*out, "no-mpi"]
    if image.has_mpi is None:
        return [*out, "unknown"]
    out.append("has-mpi")
    if isinstance(host, SrunOffer):
        kind = launch.split(":", 1)[1]
        if kind == "none":
            return out
        speaks = image.speaks(kind)
        out.append("speaks" if speaks else "lacks" if speaks is False else "unsure")
        if speaks and kind == "pmix" and _pmix_old(image.pmix_version, host.pmix_major):
            out.insert(-1, "pmix-old")
        return out
    if host.error is not None:
        return out  # "not-found": nothing to compare the image with
    if host.impl is None or host.impl == "unknown" or image.impl in ("unknown", "mpich-abi"):
        return [*out, "unsure"]
    if host.impl != image.impl:
        return [*out, "other-impl"]
    mine, theirs = _numbers(image.version), _numbers(host.version)
    if not mine or not theirs:
        return [*out, "same-major"]
    if mine[0] != theirs[0]:
        return [*out, "other-major"]
    return [*out, "same-minor" if mine[:2] == theirs[:2] else "same-major"]


def decide(launch: str, image: ImageMpi, host: SrunOffer | MpirunInfo, ntasks: int) -> Verdict:
    held = conditions(launch, image, host)
    for row in ROWS:
        if row.image in held and _launch_matches(row, launch):
            return Verdict(row.level, _fill(row, launch, image, host, ntasks), row.image, row.sources)
    return Verdict("warn", f"image has {image.describe()}; no rule for {launch_text(launch)}", "none")


def launch_text(launch: str) -> str:
    return "the host's mpirun" if launch == "mpirun" else f"srun --mpi={launch.split(':', 1)[1]}"


def _launch_matches(row: Row, launch: str) -> bool:
    return row.launch in ("*", launch)


def _fill(row: Row, launch: str, image: ImageMpi, host: SrunOffer | MpirunInfo, ntasks: int) -> str:
    return row.text.format(image=image.describe(), host=host.describe(), n=ntasks, launch=launch_text(launch),
                           alt=advice(row, launch, image, host))  # fmt: skip


def advice(row: Row, launch: str, image: ImageMpi, host: SrunOffer | MpirunInfo) -> str:
    """What to change, from what each side offers."""
    if isinstance(host, MpirunInfo):
        srun_kind = "pmix" if image.speaks("pmix") else "pmi2" if image.speaks("pmi2") else None
        other = f"mpi: {srun_kind} (srun starts the ranks; no host MPI needed)" if srun_kind else None
        same = f"an image with the host's {host.describe().removeprefix('host mpirun is ')}"
        return f"use {same}" + (f", or {other}" if other else "")
    kind = launch.split(":", 1)[1]
    usable = [k for k in ("pmix", "pmi2") if image.speaks(k) and host.offers(k) is not False and k != kind]
    if usable:
        return f"use mpi: {usable[0]}"
    if row.image == "host-lacks":
        return f"ask the admins for Slurm's {kind} plugin, or use an image whose MPI speaks what srun offers"
    if kind == "none":
        return "use mpi: pmix (or pmi2 for MPICH)"
    if row.image == "unsure":
        return f"try mpi: {'pmi2' if kind == 'pmix' else 'pmix'}"
    need = "PMIx" if kind == "pmix" else "PMI-1/PMI-2"
    return f"use an image whose MPI speaks {need}, or mpi: none for independent tasks"


def _numbers(version: str | None) -> tuple[int, ...]:
    m = re.match(r"(\d+(?:\.\d+)*)", version or "")
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def _pmix_old(image_version: str | None, host_major: int | None) -> bool:
    mine = _numbers(image_version)
    if not mine or host_major is None or mine[0] == host_major:
        return False  # same series on both sides: no cross-version talk needed
    return mine < PMIX_CROSS_VERSION_FROM or host_major < PMIX_CROSS_VERSION_FROM[0]
