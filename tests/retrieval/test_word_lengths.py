"""The spellers' word groups: every word of the asked lengths, in the given order, once."""

from __future__ import annotations

import random
import string

from aisle.retrieval.word_lengths import WordsByLength


def test_between_holds_exactly_the_words_of_those_lengths_in_order() -> None:
    rng = random.Random(7)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 12)))
             for _ in range(500)]
    groups = WordsByLength(words)
    assert len(groups) == len(words)
    for lo, hi in [(1, 1), (3, 5), (4, 8), (11, 14), (13, 20), (6, 5)]:
        expected = tuple(w for n in range(lo, hi + 1) for w in words if len(w) == n)
        assert groups.between(lo, hi) == expected
        assert groups.between(lo, hi) is groups.between(lo, hi)  # gathered once


def test_no_words() -> None:
    groups = WordsByLength([])
    assert len(groups) == 0
    assert groups.between(0, 9) == ()
