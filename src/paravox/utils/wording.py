"""Wording of the one-line reports commands print: counts in agreement with their nouns."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``: a count with its noun in agreement (``many`` for an
    irregular plural), for the one-line reports every command prints."""
    return f"{n} {word if n == 1 else many or word + 's'}"
