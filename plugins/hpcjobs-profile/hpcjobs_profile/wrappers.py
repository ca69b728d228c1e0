"""The profiler wrappers and their site settings (``plugins.profile``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hpcjobs.plugin_api import LaunchPlan, ResolvedJob, Words

Placement = Literal["outside", "inside"]

# perf and strace name their reports in a small shell, from the task's own SLURM_JOB_ID and
# SLURM_PROCID (set per task by srun). Constant text: the binary, directory and options arrive as
# positional parameters, never inside the script. Outside Slurm (local runs) they read "local"/0.
_PER_RANK = '"$d/{tool}-${{SLURM_JOB_ID:-local}}-rank${{SLURM_PROCID:-0}}.txt"'
# perf stat exits 0 whatever the program's status (perf 6.1): the program's status goes through a file
PERF_SCRIPT = (
    'b=$1 d=$2 e=$3; shift 3; r=$(mktemp "${TMPDIR:-/tmp}/hpcjobs-perf.XXXXXX") || exit 127; '
    '"$b" stat -o ' + _PER_RANK.format(tool="perf") + ' -e "$e" -- '
    "/bin/sh -c '\"$@\"; echo $? >\"$0\"' \"$r\" \"$@\"; "
    's=$(cat "$r"); rm -f "$r"; exit "${s:-127}"'
)
STRACE_SCRIPT = 'b=$1 d=$2; shift 2; exec "$b" -o ' + _PER_RANK.format(tool="strace") + ' "$@"'


class _Tool(BaseModel):
    # validators built on first use: loading the plugin (every render and submit) builds none
    model_config = ConfigDict(extra="forbid", defer_build=True)

    output_dir: str = Field(
        ".",
        description="Directory for the per-rank reports (relative: the task's working directory; with "
        "placement inside, a path bound into the container).",
    )


class NsysSettings(_Tool):
    """``nsys profile`` (Nsight Systems)."""

    binary: str = Field("nsys", description="nsys executable (inside the image with placement inside).")
    options: list[str] = Field(
        default_factory=list, description="More `nsys profile` options, long form with '=' (--sample=none)."
    )
    placement: Placement = Field("inside", description="inside: nsys in the image profiles the program.")
    trace: list[str] = Field(
        default_factory=lambda: ["cuda", "nvtx", "osrt"], description="--trace APIs, e.g. cuda, nvtx, osrt, mpi."
    )


class PerfSettings(_Tool):
    """``perf stat`` (counting; software events work in VMs without hardware counters)."""

    binary: str = Field("perf", description="perf executable.")
    placement: Placement = Field("outside", description="outside: counts the runtime and the program it starts.")
    events: list[str] = Field(
        default_factory=lambda: ["task-clock", "context-switches", "cpu-migrations", "page-faults"],
        min_length=1,
        description="-e events.",
    )


class StraceSettings(_Tool):
    """``strace -c -f`` (a system call summary per task)."""

    binary: str = Field("strace", description="strace executable.")
    options: list[str] = Field(default_factory=list, description="More strace options, e.g. -e trace=file.")
    placement: Placement = Field("outside", description="outside: traces the runtime and its children.")


class ProfileSettings(BaseModel):
    """``plugins.profile`` in a site config: one section per profiler."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    nsys: NsysSettings = Field(default_factory=NsysSettings)
    perf: PerfSettings = Field(default_factory=PerfSettings)
    strace: StraceSettings = Field(default_factory=StraceSettings)


def settings_of(job: ResolvedJob) -> ProfileSettings:
    return ProfileSettings.model_validate(job.plugin_settings.get("profile") or {})


def _place(plan: LaunchPlan, placement: Placement, words: Words) -> None:
    if placement == "inside":
        plan.wrap_inside(words)
    else:
        plan.wrap_outside(words)


def _why(job: ResolvedJob, name: str, placement: Placement) -> str:
    where = "inside the container" if placement == "inside" else "on the host, around the container"
    return f"wrapper {name} ({job.source('wrappers')}), {where}: plugins.profile of site {job.site}"


class NsysWrapper:
    """``nsys profile --trace=… --output=DIR/nsys-%q{SLURM_JOB_ID}-rank%q{SLURM_PROCID} …``: nsys
    itself expands ``%q{VAR}`` from the task's environment, so no shell is needed."""

    name = "nsys"

    def argv(self, job: ResolvedJob) -> tuple[str, ...]:
        cfg = settings_of(job).nsys
        out = f"{cfg.output_dir.rstrip('/') or '/'}/nsys-%q{{SLURM_JOB_ID}}-rank%q{{SLURM_PROCID}}"
        argv = [cfg.binary, "profile"]
        if cfg.trace:
            argv.append(f"--trace={','.join(cfg.trace)}")
        argv += [f"--output={out}", "--force-overwrite=true", *cfg.options]
        return tuple(argv)

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        cfg = settings_of(job).nsys
        _place(plan, cfg.placement, Words(self.argv(job), _why(job, self.name, cfg.placement), "wrapper", self.name))


class PerfStatWrapper:
    """``perf stat -o DIR/perf-JOBID-rankR.txt -e EVENTS -- …`` per task, keeping the program's exit status."""

    name = "perf-stat"

    def argv(self, job: ResolvedJob) -> tuple[str, ...]:
        cfg = settings_of(job).perf
        return ("/bin/sh", "-c", PERF_SCRIPT, "hpcjobs-perf", cfg.binary, cfg.output_dir, ",".join(cfg.events))

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        cfg = settings_of(job).perf
        _place(plan, cfg.placement, Words(self.argv(job), _why(job, self.name, cfg.placement), "wrapper", self.name))


class StraceWrapper:
    """``strace -o DIR/strace-JOBID-rankR.txt -c -f -- …`` per task."""

    name = "strace"

    def argv(self, job: ResolvedJob) -> tuple[str, ...]:
        cfg = settings_of(job).strace
        return ("/bin/sh", "-c", STRACE_SCRIPT, "hpcjobs-strace", cfg.binary, cfg.output_dir, "-c", "-f",
                *cfg.options, "--")  # fmt: skip

    def contribute(self, job: ResolvedJob, plan: LaunchPlan) -> None:
        cfg = settings_of(job).strace
        _place(plan, cfg.placement, Words(self.argv(job), _why(job, self.name, cfg.placement), "wrapper", self.name))
