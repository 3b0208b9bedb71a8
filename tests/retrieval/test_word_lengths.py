"""The spellers' word groups: every word of the asked lengths, in the given order, once."""

from __future__ import annotations

import random
import string

import numpy as np
from rapidfuzz.distance import OSA, Levenshtein

from aisle.retrieval.spelling import QuerySpeller
from aisle.retrieval.term_matcher import TermMatcher, max_edits
from aisle.retrieval.word_lengths import (
    SMALL,
    WordsByLength,
    _popcount,
    _popcount_bytes,
    signature,
)


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


def test_near_keeps_every_word_within_the_edit_budget_in_order() -> None:
    """The character test drops only words that cannot match: on random words (a small
    alphabet, so many are near) and their edits, ``near`` holds every word ``between`` holds
    within the budget, by Levenshtein and by optimal string alignment, in the same order."""
    rng = random.Random(11)
    alphabet = "abcdeé9-IS"  # "-" and "I" share a bit; "S" is bit 63
    words = list(dict.fromkeys(
        "".join(rng.choices(alphabet, k=rng.randint(2, 9))) for _ in range(3000)))
    groups = WordsByLength(words)

    def edited(w: str) -> str:
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(w) + 1)
            op = rng.choice("isdt")
            c = rng.choice(alphabet + "xyz")
            if op == "i":
                w = w[:i] + c + w[i:]
            elif op == "s" and i < len(w):
                w = w[:i] + c + w[i + 1:]
            elif op == "d" and i < len(w):
                w = w[:i] + w[i + 1:]
            elif op == "t" and i + 1 < len(w):
                w = w[:i] + w[i + 1] + w[i] + w[i + 2:]
        return w

    dropped = 0
    for _ in range(400):
        query = edited(rng.choice(words)) or "a"
        for edits in (1, 2):
            lo, hi = len(query) - edits, len(query) + edits
            whole = groups.between(lo, hi)
            near = groups.near(query, edits, lo, hi)
            assert list(near) == [w for w in whole if w in set(near)]  # same order
            if len(whole) > SMALL:  # exactly the words within 2 x edits marks, no more
                sig = signature(query)
                assert list(near) == [w for w in whole
                                      if bin(signature(w) ^ sig).count("1") <= 2 * edits]
            for scorer in (OSA.distance, Levenshtein.distance):
                assert [w for w in whole if scorer(query, w) <= edits] == [
                    w for w in near if scorer(query, w) <= edits]
            dropped += len(whole) - len(near)
    assert dropped > 0  # the test did drop words: it is not the whole range each time


def test_signatures_mark_characters_not_counts() -> None:
    assert signature("aab") == signature("ba") != signature("abc")
    assert bin(signature("aé9-x")).count("1") == 5


def test_both_popcounts_count_every_bit() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(2)
                             + rng.integers(0, 2, 1000, dtype=np.uint64),
                             np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)])
    expected = [bin(int(v)).count("1") for v in values]
    assert _popcount_bytes(values).tolist() == expected
    assert _popcount(values).tolist() == expected


def _words(rng: random.Random, n: int, lo: int, hi: int) -> list[str]:
    return list(dict.fromkeys("".join(rng.choices("abcdefgh", k=rng.randint(lo, hi)))
                              for _ in range(n)))


def test_the_term_matcher_answers_as_a_scan_of_the_whole_range_would() -> None:
    """Ranges well past SMALL words, so the filter runs inside ``TermMatcher``."""
    rng = random.Random(5)
    words = _words(rng, 4000, 3, 9)
    df = {w: rng.randint(1, 50) for w in words}
    matcher = TermMatcher(df)
    everything = WordsByLength(sorted(df))
    for term in _words(rng, 300, 4, 9):
        edits = max_edits(term)
        whole = everything.between(len(term) - edits, len(term) + edits)
        assert len(whole) > SMALL
        hits = [(w, Levenshtein.distance(term, w)) for w in whole]
        best = min(((w, d) for w, d in hits if d <= edits),
                   key=lambda h: (h[1], -df[h[0]], h[0]), default=None)
        expected = term if term in df else (best[0] if best else None)
        assert matcher.correct(term) == expected, term


def test_the_query_speller_answers_as_a_scan_of_the_whole_range_would() -> None:
    rng = random.Random(6)
    counts = {w: rng.randint(1, 9) for w in _words(rng, 4000, 5, 10)}
    speller = QuerySpeller(counts, min_count=3)
    common = WordsByLength(w for w, c in counts.items() if c >= 3)
    for w in _words(rng, 300, 5, 10):
        cutoff = 1 if len(w) < 8 else 2
        whole = common.between(len(w) - cutoff, len(w) + cutoff)
        assert len(whole) > SMALL
        hits = [(c, OSA.distance(w, c)) for c in whole if OSA.distance(w, c) <= cutoff]
        best = min(hits, key=lambda h: (-counts[h[0]], h[1], h[0]), default=None)
        assert speller._search(w) == (best[0] if best else w), w

