"""What MPI an image carries, read from the image's own files by one short container run.

The probe is one ``apptainer exec --contain --cleanenv IMAGE /bin/sh -c PROBE_SCRIPT``:
:data:`PROBE_SCRIPT` is a constant (no value of a job, an image or a path is ever put into it), and
it is a shell snippet rather than one runner call per question because every container start costs
about 0.3-0.6 s, and the answers (which libraries exist, what ``ompi_info``/``mpichversion`` say,
what dpkg/rpm have installed) come from one start. It needs only ``/bin/sh`` (busybox will do);
``grep``, ``dpkg-query`` and ``rpm`` are used where the image has them. :func:`parse` turns its
output into an :class:`ImageMpi`; it is pure and tested against recorded outputs of Debian 12 and 13
images.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpcjobs.runner import Runner

SCHEMA = 1
"""Version of the record :meth:`ImageMpi.to_record` writes; a record of another version is probed again."""

PROBE_TIMEOUT_S = 120.0

# Library folders of distributions (Debian multiarch, RHEL's /usr/lib64/<mpi>/lib), /usr/local,
# /opt installs (Intel oneAPI's mpi/<version>/lib[/release]) and the image's own LD_LIBRARY_PATH;
# /lib only where it is not merged into /usr. Only a library's soname file (libmpich.so.12, not
# libmpich.so.12.2.2) is searched for PMI markers: MPICH's is 40 MB.
PROBE_SCRIPT = r"""
dirs=''
for d in /usr/lib64 /usr/lib /usr/local/lib /usr/local/lib64 /usr/lib/*-linux-gnu /usr/lib64/*/lib /usr/lib/*/lib \
         /opt/*/lib /opt/*/lib64 /opt/*/*/lib /opt/*/*/lib64 /opt/intel/oneapi/mpi/*/lib \
         /opt/intel/oneapi/mpi/*/lib/release; do
  [ -d "$d" ] && dirs="$dirs $d"
done
[ -L /lib ] || for d in /lib /lib/*-linux-gnu; do [ -d "$d" ] && dirs="$dirs $d"; done
[ -L /lib64 ] || { [ -d /lib64 ] && dirs="$dirs /lib64"; }
IFS=:
for d in ${LD_LIBRARY_PATH:-}; do [ -d "$d" ] && dirs="$dirs $d"; done
unset IFS
echo '@@ tools'
command -v grep >/dev/null 2>&1 && echo grep
echo '@@ libs'
for d in $dirs; do
  for f in "$d"/libmpi.so.[0-9]* "$d"/libmpich.so.[0-9]* "$d"/libpmix.so.[0-9]* "$d"/libpmi2.so.[0-9]* \
           "$d"/libpmi.so.[0-9]*; do
    [ -f "$f" ] || continue
    echo "$f"
    case "$f" in
      */libmpi.so.[0-9]|*/libmpi.so.[0-9][0-9]|*/libmpich.so.[0-9]|*/libmpich.so.[0-9][0-9])
        if command -v grep >/dev/null 2>&1; then
          grep -qa 'libpmix\.so' "$f" && echo "mark pmix $f"
          grep -qaE 'cmd=fullinit|PMI2_Init' "$f" && echo "mark pmi2 $f"
          grep -qa 'cmd=init pmi_version' "$f" && echo "mark pmi1 $f"
        fi ;;
    esac
  done
done
echo '@@ ompi_info'
command -v ompi_info >/dev/null 2>&1 && ompi_info --parsable 2>/dev/null
echo '@@ mpichversion'
command -v mpichversion >/dev/null 2>&1 && mpichversion 2>/dev/null
echo '@@ mpiname'
command -v mpiname >/dev/null 2>&1 && mpiname -a 2>/dev/null
echo '@@ mpirun'
command -v mpirun >/dev/null 2>&1 && mpirun --version 2>&1
echo '@@ dpkg'
command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' \
  'libopenmpi*' openmpi-bin 'libmpich*' mpich 'libpmix*' 'libpmi*' 'mvapich*' 'libmvapich*' 2>/dev/null
echo '@@ rpm'
command -v rpm >/dev/null 2>&1 && rpm -qa --qf '%{NAME} %{VERSION}\n' 'openmpi*' 'mpich*' 'pmix*' 'mvapich*' \
  'intel-oneapi-mpi*' 'slurm-libpmi*' 2>/dev/null
echo '@@ end'
exit 0
"""

IMPL_NAMES = {
    "openmpi": "Open MPI",
    "mpich": "MPICH",
    "mvapich": "MVAPICH",
    "intel-mpi": "Intel MPI",
    "mpich-abi": "an MPICH-ABI MPI (libmpi.so.12)",
    "none": "no MPI",
    "unknown": "an unknown MPI",
}


@dataclass(frozen=True)
class ImageMpi:
    """An image's MPI as the probe saw it. ``pmix``/``pmi2``/``pmi1``: True, False or None (not known).

    ``pmi2`` and ``pmi1`` say which PMI wire protocols the MPI library speaks by itself (Slurm's
    ``--mpi=pmi2`` plugin answers both)."""

    impl: str
    version: str | None = None
    pmix: bool | None = None
    pmix_version: str | None = None
    pmi2: bool | None = None
    pmi1: bool | None = None
    evidence: tuple[str, ...] = ()
    probe_s: float | None = None
    error: str | None = None
    schema: int = SCHEMA

    @property
    def has_mpi(self) -> bool | None:
        if self.impl == "none":
            return False
        return None if self.impl == "unknown" and self.error is not None else True

    def speaks(self, wire: str) -> bool | None:
        """Whether the image's MPI can be wired up by Slurm's ``--mpi=WIRE`` plugin."""
        if wire == "pmix":
            return self.pmix
        if wire == "pmi2":
            if self.pmi2 or self.pmi1:
                return True
            return False if (self.pmi2 is False and self.pmi1 is False) else None
        return None

    def describe(self) -> str:
        """``Open MPI 4.1.4 with PMIx 4.2.2``, ``MPICH 4.0.2 without PMIx (PMI-1)``, ``no MPI``."""
        if self.impl == "none":
            return "no MPI library"
        if self.impl == "unknown" and self.error:
            return f"an MPI not known ({self.error})"
        name = IMPL_NAMES.get(self.impl, self.impl)
        text = f"{name} {self.version}" if self.version else name
        if self.pmix:
            text += f" with PMIx {self.pmix_version}" if self.pmix_version else " with PMIx"
        elif self.pmix is False:
            text += " without PMIx"
        pmis = [n for n, v in (("PMI-2", self.pmi2), ("PMI-1", self.pmi1)) if v]
        if pmis and self.pmix is not True:
            text += f" ({', '.join(pmis)})"
        return text

    def to_record(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "impl": self.impl, "version": self.version, "pmix": self.pmix,
            "pmix_version": self.pmix_version, "pmi2": self.pmi2, "pmi1": self.pmi1,
            "evidence": list(self.evidence), "probe_s": self.probe_s, "error": self.error,
        }  # fmt: skip

    @classmethod
    def from_record(cls, rec: Any) -> ImageMpi | None:
        """The record written by :meth:`to_record`, or None when it is not one (or of another schema)."""
        if not isinstance(rec, Mapping) or rec.get("schema") != SCHEMA or not isinstance(rec.get("impl"), str):
            return None

        def opt_str(key: str) -> str | None:
            v = rec.get(key)
            return v if isinstance(v, str) else None

        def tri(key: str) -> bool | None:
            v = rec.get(key)
            return v if isinstance(v, bool) else None

        ev = rec.get("evidence")
        probe_s = rec.get("probe_s")
        return cls(
            impl=rec["impl"], version=opt_str("version"), pmix=tri("pmix"), pmix_version=opt_str("pmix_version"),
            pmi2=tri("pmi2"), pmi1=tri("pmi1"),
            evidence=tuple(str(e) for e in ev) if isinstance(ev, list) else (),
            probe_s=float(probe_s) if isinstance(probe_s, (int, float)) else None, error=opt_str("error"),
        )  # fmt: skip


def unknown(why: str) -> ImageMpi:
    return ImageMpi(impl="unknown", error=why)


def probe_argv(binary: str, image: str) -> list[str]:
    """``--contain``: nothing of the host's home or /tmp; ``--cleanenv``: the image's environment only."""
    return [binary, "exec", "--contain", "--cleanenv", image, "/bin/sh", "-c", PROBE_SCRIPT]


def probe_image(runner: Runner, binary: str, image: str) -> ImageMpi:
    """Run the probe in ``image``; never raises (a failed probe is an ``unknown`` record saying why)."""
    from hpcjobs.errors import RunnerError

    started = time.monotonic()
    try:
        done = runner(probe_argv(binary, image), timeout_s=PROBE_TIMEOUT_S)
    except RunnerError as exc:
        return unknown(f"probe could not run: {exc}")
    took = round(time.monotonic() - started, 3)
    if "@@ end" not in done.stdout:
        tail = " ".join((done.stderr or done.stdout).split())[-200:] or f"exit {done.returncode}"
        return ImageMpi(impl="unknown", error=f"probe failed: {tail}", probe_s=took)
    found = parse(done.stdout)
    return replace(found, probe_s=took)


# ---------------------------------------------------------------------------------------- parsing
_SONAME = re.compile(r"/(lib(?:mpi|mpich|pmix|pmi2|pmi))\.so\.(\d+)")
_DEB_VERSION = re.compile(r"^(?:\d+:)?([0-9][0-9A-Za-z.+~]*?)(?:-[^-]*)?$")
_NUM_VERSION = re.compile(r"(\d+(?:\.\d+)+)")


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@ "):
            current = out.setdefault(line[3:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return out


def _upstream(deb_version: str) -> str:
    m = _DEB_VERSION.match(deb_version.strip())
    return m.group(1) if m else deb_version.strip()


def packages(sec: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Installed package → upstream version, from dpkg (``ii`` only) and rpm."""
    out: dict[str, str] = {}
    for line in sec.get("dpkg", ()):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ii":
            out[parts[1].split(":", 1)[0]] = _upstream(parts[2])
    for line in sec.get("rpm", ()):
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def parse(text: str) -> ImageMpi:
    """The probe's output → what MPI the image has. Pure."""
    sec = sections(text)
    libs = [ln for ln in sec.get("libs", ()) if not ln.startswith("mark ")]
    marks = {tuple(ln.split(" ", 2)[1:3]) for ln in sec.get("libs", ()) if ln.startswith("mark ")}
    sonames = sorted({f"{m.group(1)}.so.{m.group(2)}" for ln in libs if (m := _SONAME.search(ln))})
    pkgs = packages(sec)
    evidence: list[str] = [*sonames]
    evidence += [f"{name} {ver}" for name, ver in sorted(pkgs.items())]

    def marked(kind: str) -> bool | None:
        """Whether the MPI library itself names libpmix / speaks a PMI wire protocol (None: grep missing)."""
        mpi_libs = [ln for ln in libs if "/libmpi.so." in ln or "/libmpich.so." in ln]
        if not mpi_libs or "grep" not in sec.get("tools", ()):
            return None
        return any(k == kind for k, _ in marks)

    pmix_version = _pmix_version(pkgs)
    ompi = _ompi_info(sec.get("ompi_info", ()))
    if ompi is not None or any(s.startswith("libmpi.so.4") for s in sonames) or "openmpi-bin" in pkgs:
        version = (ompi or {}).get("version") or pkgs.get("openmpi-bin") or _pkg_prefix(pkgs, "libopenmpi", "openmpi")
        if ompi is not None:
            evidence.insert(0, f"ompi_info: Open MPI {version}")
        comps = (ompi or {}).get("pmix_components")
        major = _major(version)
        pmix: bool | None
        pmi2: bool | None
        pmi1: bool | None
        if major is not None and major >= 5:
            pmix, pmi2, pmi1 = True, False, False  # Open MPI 5 speaks PMIx only (PRRTE); PMI-1/2 were removed
        elif isinstance(comps, list):
            pmix = any(c.startswith("ext") or re.fullmatch(r"pmix\d+x", c) for c in comps)
            pmi2, pmi1 = "s2" in comps, "s1" in comps
        else:
            pmix = True if marked("pmix") else None
            pmi2 = pmi1 = None
        return ImageMpi("openmpi", version, pmix, pmix_version if pmix else None, pmi2, pmi1, tuple(evidence))
    mv = _mpichversion(sec.get("mpichversion", ()))
    mpiname = " ".join(sec.get("mpiname", ()))
    if "MVAPICH" in mpiname.upper() or (mv or {}).get("impl") == "mvapich":
        m = _NUM_VERSION.search(mpiname)
        version = (mv or {}).get("version") or (m.group(1) if m else None)
        return ImageMpi("mvapich", version, marked("pmix"), None, marked("pmi2"), marked("pmi1"), tuple(evidence))
    if mv is not None or any(s.startswith("libmpich.so.") for s in sonames) or "mpich" in pkgs:
        version = (mv or {}).get("version") or pkgs.get("mpich") or _pkg_prefix(pkgs, "libmpich")
        if mv is not None:
            evidence.insert(0, f"mpichversion: MPICH {version}")
        configure = (mv or {}).get("configure", "")
        pmix = marked("pmix")
        if pmix is None and mv is not None:
            pmix = bool(re.search(r"--with-pmix(?!=no)|--with-pmi=pmix", configure))
        pmi2, pmi1 = marked("pmi2"), marked("pmi1")
        if pmi1 is None and pmi2 is None and pmix is False:
            pmi1 = True  # MPICH's own simple PMI client is built in unless PMIx replaces it
        return ImageMpi("mpich", version, pmix, pmix_version if pmix else None, pmi2, pmi1, tuple(evidence))
    mpirun = " ".join(sec.get("mpirun", ()))
    if "Intel(R) MPI" in mpirun or any("intel-oneapi-mpi" in p for p in pkgs):
        m = re.search(r"Version (\S+)", mpirun)
        version = m.group(1).rstrip(",") if m else _pkg_prefix(pkgs, "intel-oneapi-mpi")
        return ImageMpi("intel-mpi", version, None, None, None, None, tuple(evidence))
    if any(s.startswith("libmpi.so.") for s in sonames):
        return ImageMpi("mpich-abi", None, marked("pmix"), None, marked("pmi2"), marked("pmi1"), tuple(evidence))
    return ImageMpi("none", evidence=tuple(evidence))


def _pkg_prefix(pkgs: Mapping[str, str], *prefixes: str) -> str | None:
    for name in sorted(pkgs):
        if name.startswith(prefixes) and not name.endswith(("-dev", "-devel", "-doc")):
            return pkgs[name]
    return None


def _pmix_version(pkgs: Mapping[str, str]) -> str | None:
    for name in sorted(pkgs):
        if re.fullmatch(r"libpmix\d+(t64)?|pmix", name):
            return pkgs[name]
    return None


def _major(version: str | None) -> int | None:
    m = re.match(r"(\d+)", version or "")
    return int(m.group(1)) if m else None


def _ompi_info(lines: Sequence[str]) -> dict[str, Any] | None:
    """``ompi_info --parsable``: the full version and the pmix framework's components (Open MPI < 5)."""
    version = None
    comps: list[str] = []
    for line in lines:
        if line.startswith("ompi:version:full:"):
            version = line.split(":", 3)[3].strip()
        elif line.startswith("mca:pmix:"):
            name = line.split(":")[2]
            if name not in comps:
                comps.append(name)
    if version is None:
        return None
    return {"version": version, "pmix_components": comps}


def _mpichversion(lines: Sequence[str]) -> dict[str, str] | None:
    """``mpichversion``: ``MPICH Version: 4.0.2`` (MVAPICH2: ``MVAPICH2 Version: 2.3.7``) and the configure line."""
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key.endswith("Version") and "version" not in out:
            out["version"] = value
            out["impl"] = "mvapich" if key.upper().startswith("MVAPICH") else "mpich"
        elif key.endswith("configure"):
            out["configure"] = value
    return out if "version" in out else None
