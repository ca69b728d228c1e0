"""How srun reads an option a job, partition or site gives it (``launcher_options: {srun: [...]}``),
so that every entry is one option srun knows and none sets what hpcjobs writes itself.

srun reads its arguments with glibc ``getopt_long``: a long option may be shortened to any prefix
that names one option (``--cpu-b=cores`` is ``--cpu-bind=cores``), its value follows ``=`` or is
the next word, short options glue (``-ln4`` is ``-l -n 4``) and an unknown option ends srun with an
error once the job runs. The tables below are srun's own, probed from the real binaries of Slurm
22.05.8 and 24.11.5 with ``scripts/srun-options`` (glibc's "ambiguous; possibilities" answer to
every one- and two-letter prefix, then "doesn't allow"/"requires an argument" per option); a
cluster test compares them with the srun of the cluster it runs on. An option only one of the two
versions has is accepted (a site may run either); srun itself refuses it on the other.
"""

from __future__ import annotations

# name → 0: no value, 1: a value (=VALUE or the next word), 2: an optional value (=VALUE only)
LONG: dict[str, int] = {
    "accel-bind": 1, "account": 1, "acctg-freq": 1, "bb": 1, "bbf": 1, "bcast": 2, "bcast-exclude": 1,
    "begin": 1, "chdir": 1, "cluster": 1, "cluster-constraint": 1, "clusters": 1, "comment": 1, "compress": 2,
    "constraint": 1, "container": 1, "context": 1, "contiguous": 0, "core-spec": 1, "cores-per-socket": 1,
    "cpu-bind": 1, "cpu-freq": 1, "cpu_bind": 1, "cpus-per-gpu": 1, "cpus-per-task": 1, "deadline": 1,
    "debugger-test": 0, "delay-boot": 1, "dependency": 1, "disable-status": 0, "distribution": 1, "epilog": 1,
    "error": 1, "exact": 0, "exclude": 1, "exclusive": 2, "export": 1, "extra-node-info": 1, "gpu-bind": 1,
    "gpu-freq": 1, "gpus": 1, "gpus-per-node": 1, "gpus-per-socket": 1, "gpus-per-task": 1, "gres": 1,
    "gres-flags": 1, "help": 0, "het-group": 1, "hint": 1, "hold": 0, "immediate": 2, "input": 1,
    "interactive": 0, "job-name": 1, "jobid": 1, "kill-on-bad-exit": 2, "label": 0, "licenses": 1,
    "mail-type": 1, "mail-user": 1,
    "mcs-label": 1, "mem": 1, "mem-bind": 1, "mem-per-cpu": 1, "mem-per-gpu": 1, "mincpus": 1, "mpi": 1,
    "msg-timeout": 1, "multi-prog": 0, "network": 1, "nice": 2, "no-allocate": 0, "no-kill": 2, "nodefile": 1,
    "nodelist": 1, "nodes": 1, "ntasks": 1, "ntasks-per-core": 1, "ntasks-per-gpu": 1, "ntasks-per-node": 1,
    "ntasks-per-socket": 1, "ntasks-per-tres": 1, "open-mode": 1, "output": 1, "overcommit": 0, "overlap": 2,
    "oversubscribe": 0, "pack-group": 1, "partition": 1, "prefer": 1, "preserve-env": 0, "priority": 1,
    "profile": 1, "prolog": 1, "propagate": 2, "pty": 2, "qos": 1, "quiet": 0, "quit-on-interrupt": 0,
    "reboot": 0, "relative": 1, "reservation": 1, "resv-ports": 2, "send-libs": 2, "signal": 1,
    "slurmd-debug": 1, "sockets-per-node": 1, "spread-job": 0, "switches": 1, "task-epilog": 1,
    "task-prolog": 1, "tasks-per-node": 1, "test-only": 0, "thread-spec": 1, "threads": 1,
    "threads-per-core": 1, "time": 1, "time-min": 1, "tmp": 1, "unbuffered": 0, "usage": 0,
    "use-min-nodes": 0, "verbose": 0, "version": 0, "wait": 1, "wckey": 1, "whole": 0,
    # 22.05 only
    "gid": 1, "power": 1, "uid": 1,
    # 24.11 only
    "autocomplete": 1, "container-id": 1, "external-launcher": 2, "extra": 1, "oom-kill-step": 2, "segment": 1,
    "stepmgr": 0, "treewidth": 1, "tres-bind": 1, "tres-per-task": 1,
}  # fmt: skip
"""srun's long options (22.05 and 24.11)."""
VALUE_IN = {("pty", "22.05"): 0}
"""Where one version's value rule differs from the table's (``--pty`` takes an optional value in 24.11)."""
ONLY_IN = {"gid": "22.05", "power": "22.05", "uid": "22.05", "autocomplete": "24.11", "container-id": "24.11",
           "external-launcher": "24.11", "extra": "24.11", "oom-kill-step": "24.11", "segment": "24.11",
           "stepmgr": "24.11", "treewidth": "24.11", "tres-bind": "24.11", "tres-per-task": "24.11"}  # fmt: skip

SHORT: dict[str, str] = {
    "b": "begin", "c": "cpus-per-task", "d": "dependency", "e": "error", "h": "help", "i": "input",
    "k": "no-kill", "l": "label", "m": "distribution", "n": "ntasks", "o": "output", "p": "partition",
    "q": "quit-on-interrupt", "r": "relative", "s": "oversubscribe", "t": "time", "u": "unbuffered",
    "v": "verbose", "w": "nodelist", "x": "exclude", "A": "account", "B": "extra-node-info", "C": "constraint",
    "D": "chdir", "E": "preserve-env", "F": "nodefile", "G": "gpus", "H": "hold", "I": "immediate",
    "J": "job-name", "K": "kill-on-bad-exit", "L": "licenses", "M": "clusters", "N": "nodes",
    "O": "overcommit", "Q": "quiet", "S": "core-spec", "T": "threads", "V": "version", "W": "wait",
    "X": "disable-status", "Z": "no-allocate",
}  # fmt: skip
"""srun's short options and the long option each is (``-q`` is ``--quit-on-interrupt``: srun's
own ``-q`` is not ``--qos``, unlike sbatch's)."""

ALIASES = {"cpu_bind": "cpu-bind", "cluster": "clusters", "pack-group": "het-group",
           "tasks-per-node": "ntasks-per-node"}  # fmt: skip
"""Second names of one option: a job's ``--cpu_bind`` replaces a partition's ``--cpu-bind``."""

_ALLOC = "nodes (the step runs on the job's allocation)"
_RUNTIME = "the container runtime (the runtime plugin)"
MANAGED: dict[str, str] = {
    "mpi": "the job's mpi field", "ntasks": "ntasks", "ntasks-per-node": "ntasks", "nodes": "nodes",
    "nodelist": _ALLOC, "nodefile": _ALLOC, "exclude": _ALLOC, "no-allocate": _ALLOC,
    "jobid": "the job's allocation", "het-group": "the job's allocation", "partition": "partition",
    "account": "account", "qos": "qos", "clusters": "the local cluster", "time": "time_min",
    "time-min": "time_min", "deadline": "time_min", "begin": "the job's start", "hold": "the job's start",
    "dependency": "dependency", "cpus-per-task": "cpus_per_task", "cpus-per-gpu": "cpus_per_task",
    "gpus": "gpus", "gpus-per-node": "gpus", "gpus-per-socket": "gpus", "gpus-per-task": "gpus", "gres": "gpus",
    "tres-per-task": "gpus", "mem": "mem_gb", "mem-per-cpu": "mem_gb", "mem-per-gpu": "mem_gb",
    "job-name": "name", "export": "env (and the site's mpi.env: the launch environment)",
    "preserve-env": "ntasks and nodes", "chdir": "workdir (the working directory)",
    "output": "output (the job's log)", "error": "output (the job's log)", "input": "the tasks' stdin",
    "open-mode": "output (the job's log)", "multi-prog": "the command (the container)",
    "container": _RUNTIME, "container-id": _RUNTIME,
    "uid": "the job's user", "gid": "the job's user", "pty": "the tasks' stdin",
    "interactive": "the tasks' stdin", "test-only": "-", "help": "-", "usage": "-", "version": "-",
    "autocomplete": "-", "debugger-test": "-",
}  # fmt: skip
"""Options hpcjobs sets itself, or that reach what a job field sets: a launcher option may not
set them (it would silently win over, or lose to, what ``--explain`` shows)."""


def parse(entry: str) -> list[tuple[str, str | None]] | str:
    """The options ``entry`` gives srun, as (canonical long name, value or None), or why srun
    would not read it as options (an unknown or ambiguous name, a missing value)."""
    if entry.startswith("--"):
        name, eq, value = entry[2:].partition("=")
        if not name or " " in name:
            return f"{entry!r} is not an option name: write --name=value (one entry, no space)"
        full = long_name(name)
        if full is None:
            return f"srun has no option --{name} (see srun --help)"
        if full.startswith("("):
            return f"--{name} is {full[1:-1]}: srun refuses it; write the option's full name"
        has_arg = LONG[full]
        if eq and has_arg == 0:
            return f"--{full} takes no value"
        if not eq and has_arg == 1 and ALIASES.get(full, full) not in MANAGED:
            return f"--{full} needs a value: write --{full}=VALUE in the same entry"
        return [(ALIASES.get(full, full), value if eq else None)]
    if not entry.startswith("-") or len(entry) < 2:
        return f"{entry!r} is not an option (must start with '-')"
    out: list[tuple[str, str | None]] = []
    i = 1
    while i < len(entry):
        c = entry[i]
        if c not in SHORT:
            return f"srun has no option -{c}" + (f" (in {entry!r})" if len(entry) > 2 else "")
        full = SHORT[c]
        has_arg = LONG[full]
        rest = entry[i + 1:]
        if has_arg and rest:
            out.append((full, rest))
            return out
        if has_arg == 1 and full not in MANAGED:
            return f"-{c} (--{full}) needs a value: write -{c}VALUE or --{full}=VALUE in the same entry"
        out.append((full, None))
        i += 1
    return out


def long_name(prefix: str) -> str | None:
    """The option ``--prefix`` names: itself, or the one option it abbreviates; None when there is
    none; ``(ambiguous: …)`` when several."""
    if prefix in LONG:
        return prefix
    found = sorted(n for n in LONG if n.startswith(prefix))
    options = {ALIASES.get(n, n) for n in found}
    if not found:
        return None
    if len(options) == 1:
        return found[0]
    return f"(ambiguous: {', '.join('--' + n for n in found[:6])}{' …' if len(found) > 6 else ''})"


def option_problem(entry: str) -> str | None:
    """Why ``entry`` may not be a srun launcher option, or None."""
    parsed = parse(entry)
    if isinstance(parsed, str):
        return parsed
    for full, _value in parsed:
        if full in MANAGED:
            return f"{entry!r} sets --{full}, which {_why(full)}"
    if len(parsed) > 1:
        return f"{entry!r} is {len(parsed)} options: write each as its own entry"
    return None


def option_key(entry: str) -> str:
    """What ``entry`` sets (``cpu-bind`` for ``--cpu_bind=none``, ``-m block`` gives ``distribution``):
    a higher layer's option with the same key replaces a lower layer's."""
    parsed = parse(entry)
    return parsed[0][0] if isinstance(parsed, list) and parsed else entry


def _why(full: str) -> str:
    what = MANAGED[full]
    if what == "-":
        return "changes what srun does, not how it starts the tasks"
    if what.startswith("the "):
        return f"hpcjobs sets itself: {what}"
    return f"hpcjobs sets itself: use the job's {what} instead"
