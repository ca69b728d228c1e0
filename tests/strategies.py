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
