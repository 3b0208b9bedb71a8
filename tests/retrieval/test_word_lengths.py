"""The spellers' word groups: every word of the asked lengths, in the given order, once."""

from __future__ import annotations

import random
import string

from rapidfuzz.distance import OSA, Levenshtein

from aisle.retrieval.word_lengths import WordsByLength, signature


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
    alphabet = "abcdeé9-"
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
            for scorer in (OSA.distance, Levenshtein.distance):
                assert [w for w in whole if scorer(query, w) <= edits] == [
                    w for w in near if scorer(query, w) <= edits]
            dropped += len(whole) - len(near)
    assert dropped > 0  # the test did drop words: it is not the whole range each time


def test_signatures_mark_characters_not_counts() -> None:
    assert signature("aab") == signature("ba") != signature("abc")
    assert bin(signature("aé9-x")).count("1") == 5
