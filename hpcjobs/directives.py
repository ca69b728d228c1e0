"""How sbatch reads a job's options, so that every ``#SBATCH`` line means what ``--explain`` says.

Verified against sbatch 22.05 (``src/sbatch/opt.c``: ``get_argument`` and the ``#SBATCH`` line
reader; the same code in 24.11) and the real sbatch on the dev cluster:

* A directive line is cut into words like this: words are separated by any C ``isspace``
  character (space, ``\\t``, ``\\v``, ``\\f``, ``\\r``); ``"`` or ``'`` group characters, spaces
  and ``#`` included; a backslash makes the next character literal, inside quotes too (a trailing
  backslash vanishes); an unquoted ``#`` starts a comment. Reading stops at the first line that is
  neither blank nor a comment.
* Every word then goes through ``getopt_long``: long options may be abbreviated to any unique
  prefix (``--part=gpu`` is ``--partition=gpu``), short options may be glued and combined
  (``-Hpgpu`` is ``--hold --partition=gpu``), and a word like ``hetjob`` in the middle of a line
  is silently dropped.
* Environment variables (``SBATCH_PARTITION``, ``SBATCH_TIMELIMIT`` …) override directives.

24.11 reads one thing differently: outside quotes, a backslash before a space keeps the space in the
word (22.05 ends the word there). hpcjobs never writes that: a value with a space is quoted.

So hpcjobs writes one option per directive, as ``--name=value`` with the value quoted where it
must be, refuses values no directive can carry (control characters), reads every line back with
:func:`sbatch_words` before it is used, and runs sbatch without Slurm's input variables
(:func:`slurm_input_vars`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from hpcjobs.errors import ConfigError

# C isspace() in the "C" locale (sbatch never calls setlocale)
SBATCH_SPACE = " \t\n\v\f\r"
_NEEDS_QUOTES = frozenset(SBATCH_SPACE + "\"'#\\")

# Options hpcjobs writes itself, by every name sbatch gives them (22.05 and 24.11), and options
# that reach the same fields or limits another way. extra_sbatch and a site's sbatch list may
# not set them: one would silently win over (or lose to) the value --explain shows.
MANAGED_LONG = {
    "job-name": "name", "partition": "partition", "clusters": "the local cluster (no -M)",
    "nodes": "nodes", "ntasks": "ntasks", "ntasks-per-node": "ntasks",
    "cpus-per-task": "cpus_per_task", "cpus-per-gpu": "cpus_per_task",
    "gpus": "gpus", "gpus-per-node": "gpus", "gpus-per-task": "gpus", "gpus-per-socket": "gpus",
    "gres": "gpus", "tres-per-task": "gpus",
    "mem": "mem_gb", "mem-per-cpu": "mem_gb", "mem-per-gpu": "mem_gb",
    "time": "time_min", "array": "array", "account": "account", "qos": "qos",
    "output": "output", "error": "output", "input": "the job's stdin (none)",
    "dependency": "dependency", "kill-on-invalid-dep": "dependency",
    "chdir": "the working directory (cwd=, or where hpcjobs runs)",
    "comment": "the submission tag, so that a retry never submits twice",
    # these change what sbatch itself does, not the job
    "wait": "-", "test-only": "-", "parsable": "-", "wrap": "-", "help": "-", "usage": "-", "version": "-",
}  # fmt: skip
MANAGED_SHORT = {
    "J": "job-name", "p": "partition", "M": "clusters", "N": "nodes", "n": "ntasks", "c": "cpus-per-task",
    "G": "gpus", "t": "time", "a": "array", "A": "account", "q": "qos", "o": "output", "e": "error",
    "i": "input", "d": "dependency", "D": "chdir", "W": "wait", "h": "help", "u": "usage", "V": "version",
}  # fmt: skip

_LONG = re.compile(r"--(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)(?:=(?P<value>.*))?", re.DOTALL)
_SHORT = re.compile(r"-[A-Za-z0-9]")


def uncarriable(value: str) -> str | None:
    """Why ``value`` cannot be written into an ``#SBATCH`` line unchanged, or None.

    Control characters (C0, DEL, C1) end the line or the word, or reach Slurm's record as
    invisible bytes; an unpaired surrogate cannot be written to the script at all.
    """
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"contains the control character {ch!r}"
    return None


def quote_value(value: str) -> str:
    """``value`` as one sbatch word that reads back as exactly ``value`` (see :func:`sbatch_words`)."""
    if value and not any(c in _NEEDS_QUOTES for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sbatch_words(text: str) -> list[str]:
    """The words sbatch's directive reader makes of the text after ``#SBATCH`` (one line).

    Raises ConfigError where sbatch would stop with an error (an unmatched quote)."""
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in SBATCH_SPACE:
            i += 1
        for sep in ("hetjob", "packjob"):  # a component separator: it and the rest of the line are dropped
            end = i + len(sep)
            if text[i:end].lower() == sep and (end == n or text[end] in SBATCH_SPACE):
                return words
        if i < n and text[i] == ":":
            raise ConfigError(f"unexpected ':' in directive {text!r}")
        word: list[str] = []
        quote = ""
        escaped = False
        while i < n and text[i] != "\n" and (quote or text[i] not in SBATCH_SPACE):
            ch = text[i]
            i += 1
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
                continue
            elif quote:
                if ch == quote:
                    quote = ""
                    continue
            elif ch in "\"'":
                quote = ch
                continue
            elif ch == "#":
                i = n  # the rest of the line is a comment
                break
            word.append(ch)
        if quote:
            raise ConfigError(f"unmatched {quote} in directive {text!r}")
        if not word:  # sbatch stops reading the line at a word with no characters
            return words
        words.append("".join(word))


def option_problem(opt: str) -> str | None:
    """Why ``opt`` (an ``extra_sbatch`` or site ``sbatch`` entry) is refused, or None.

    An entry is one option: ``--name``, ``--name=value`` or a single letter ``-x``. The name
    must not be, or abbreviate, an option in :data:`MANAGED_LONG` (sbatch accepts any unique
    prefix of a long option)."""
    bad = uncarriable(opt)
    if bad is not None:
        return f"{opt!r} {bad}"
    if not opt.startswith("-"):
        return f"{opt!r} is not an option (must start with '-')"
    managed = managed_option(opt)  # -t, -t5, -t 5, --time=5, --ti=5
    if managed is not None:
        return f"{opt!r} sets {managed}, which {_why(managed[2:])}"
    m = _LONG.match(opt)
    if (m is not None and m.end() == len(opt)) or _SHORT.fullmatch(opt):
        return None
    return (
        f"{opt!r} is not one option: write each as its own entry, --name or --name=value "
        "(a short option only alone, without a value, e.g. -H)"
    )


def managed_option(opt: str) -> str | None:
    """The managed long option (``--time``) that ``opt`` sets or abbreviates, or None."""
    m = _LONG.match(opt)
    if m is not None:
        name = m.group("name")
        if name in MANAGED_LONG:
            return f"--{name}"
        managed = sorted(full for full in MANAGED_LONG if full.startswith(name))
        return f"--{managed[0]}" if managed else None
    if opt[:2] != "--" and len(opt) > 1 and opt[1] in MANAGED_SHORT:
        return f"--{MANAGED_SHORT[opt[1]]}"
    return None


def _why(full: str) -> str:
    what = MANAGED_LONG[full]
    if what == "-":
        return "changes how sbatch runs, not the job"
    if what.startswith("the "):
        return f"hpcjobs sets itself: {what}"
    return f"hpcjobs writes itself: use the {what} field (or setting) instead"


def render_option(opt: str) -> str:
    """An accepted entry (see :func:`option_problem`) as it is written after ``#SBATCH``."""
    m = _LONG.fullmatch(opt)
    if m is not None and m.group("value") is not None:
        return f"--{m.group('name')}={quote_value(m.group('value'))}"
    return opt


def checked_directive(option: str, value: str | None = None) -> str:
    """``--option=value`` for an ``#SBATCH`` line, verified to read back as that one word."""
    named = _LONG.fullmatch(option) is not None and "=" not in option
    if not (named or (value is None and _SHORT.fullmatch(option))):
        raise ConfigError(f"{option!r} is not an sbatch option name (--name, or -x without a value)")
    if value is None:
        text, want = option, option
    else:
        bad = uncarriable(value)
        if bad is not None:
            raise ConfigError(f"{option} value {value!r} {bad}, which an #SBATCH line cannot carry")
        text, want = f"{option}={quote_value(value)}", f"{option}={value}"
    if sbatch_words(text) != [want]:  # cannot happen for the quoting above; refuse rather than guess
        raise ConfigError(f"{want!r} cannot be written as one #SBATCH option")
    return text


# ---------------------------------------------------------------- the input environment

# sbatch's options from the environment (man sbatch, INPUT ENVIRONMENT VARIABLES) and srun's,
# which the job would inherit through sbatch's default --export=ALL.
INPUT_PREFIXES = ("SBATCH_", "SLURM_", "SRUN_", "SLURMD_")
KEPT_INPUT = frozenset({"SLURM_CONF"})  # which cluster, not how the job looks
# the ones that set options of the job itself, rather than describe an enclosing job
OPTION_VARS_SLURM = frozenset({"SLURM_CLUSTERS", "SLURM_HINT"})


def slurm_input_vars(environ: Iterable[str]) -> list[str]:
    """The variables hpcjobs removes from sbatch's environment (sorted)."""
    return sorted(k for k in environ if k.startswith(INPUT_PREFIXES) and k not in KEPT_INPUT)


def option_vars(names: Iterable[str]) -> list[str]:
    """Of ``names``, those a user sets to choose job options (SBATCH_*, SLURM_CLUSTERS …)."""
    return [k for k in names if k.startswith("SBATCH_") or k in OPTION_VARS_SLURM]


def sbatch_env(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The Runner ``env`` for sbatch: each Slurm input variable mapped to None (removed)."""
    return dict.fromkeys(slurm_input_vars(environ))
