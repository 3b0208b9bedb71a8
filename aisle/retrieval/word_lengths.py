"""Words grouped by length, for the spellers' edit-distance searches.

Both spellers (``spelling.QuerySpeller`` and ``term_matcher.TermMatcher``) compare an unknown
word with the known words within a few letters of its length. ``WordsByLength.between`` hands
them those words as one tuple, gathered once per length range: each search would otherwise
build a list of thousands of words under the GIL.
"""

from __future__ import annotations

from collections.abc import Iterable


class WordsByLength:
    """``words`` (in the order given) grouped by length."""

    def __init__(self, words: Iterable[str]) -> None:
        self._by_length: dict[int, list[str]] = {}
        for w in words:
            self._by_length.setdefault(len(w), []).append(w)
        self._ranges: dict[tuple[int, int], tuple[str, ...]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_length.values())

    def between(self, lo: int, hi: int) -> tuple[str, ...]:
        """The words of lengths ``lo``..``hi``, shorter first, each length in the given order."""
        words = self._ranges.get((lo, hi))
        if words is None:  # two threads may both build it: the same tuple either way
            words = tuple(w for n in range(lo, hi + 1) for w in self._by_length.get(n, ()))
            self._ranges[(lo, hi)] = words
        return words
