"""Hypothesis strategies for hostile strings: spaces, quotes, $, backticks, ;, newlines, non-ASCII."""

from __future__ import annotations

from hypothesis import strategies as st

HOSTILE_ALPHABET = st.sampled_from(list(" \t\n'\"$`\\;|&<>(){}[]*?!#~%=:,-_./aZ09éü✓\u00a0"))

# NUL can never be part of an argv element or an environment value, so it is excluded.
hostile_text = st.one_of(
    st.text(alphabet=HOSTILE_ALPHABET, max_size=24),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16),
)
hostile_args = st.lists(hostile_text, max_size=6)

# What an #SBATCH line must carry or refuse: every C0 control character and DEL (\r \v \f among
# them: sbatch splits words on isspace), C1 controls, quotes, backslashes, '#', '=' and '-',
# non-ASCII spaces, and the words of managed options (issue 8).
DIRECTIVE_ALPHABET = st.sampled_from(
    [chr(c) for c in range(32)] + ["\x7f", "\x85", "\u00a0", "\u2028", "é"]
    + list(" \"'\\#=-:%,;$`*?aZ09./_")
)
MANAGED_WORDS = st.sampled_from([
    "--partition=gpu", "--part=gpu", "--p=gpu", "-pgpu", "-p", "gpu", "--time=3", "--ti=3", "-t3", "-Hp",
    "--account=evil", "--acc=evil", "-A", "--qos=x", "--gres=gpu:2", "--gpus-per-task=2", "--mem-per-cpu=1G",
    "--job-name=x", "-J", "--output=o", "--array=1-2", "--dependency=afterok:1", "--comment=x", "-M", "--clu=x",
    "hetjob", "--exclusive", "--constraint=x", "--mail-type=END", "-H", "-k", "--",
])  # fmt: skip
directive_text = st.one_of(
    st.text(alphabet=DIRECTIVE_ALPHABET, max_size=20),
    st.lists(st.one_of(MANAGED_WORDS, st.text(alphabet=DIRECTIVE_ALPHABET, max_size=4)), max_size=4).map(
        lambda parts: "".join(parts)
    ),
    st.lists(MANAGED_WORDS, min_size=1, max_size=3).map(" ".join),
)
