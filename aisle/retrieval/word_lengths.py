"""Words grouped by length, for the spellers' edit-distance searches.

Both spellers (``spelling.QuerySpeller`` and ``term_matcher.TermMatcher``) compare an unknown
word with the known words within a few letters of its length. ``WordsByLength.near`` hands
them those words, less the ones that cannot be within the edit budget:

- the words of a length range are gathered once per range (each search would otherwise build
  a list of thousands of words under the GIL);
- a word's *signature* marks which characters it holds (64 bits: a-z and 0-9 one each, every
  other character one of the remaining 28, shared). One edit (an insertion, a deletion, a
  substitution or a swap of two neighbours) changes at most two of those marks, so a word
  within ``k`` edits differs in at most ``2k`` of them. ``near`` drops the words that differ
  in more, with one vectorised comparison, and the distance function then scores only the
  rest: the same words match, in the same order, and a search scans a fraction of the range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# Ranges this small are scanned whole: the signature test would cost more than it saves.
SMALL = 64
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _bit(char: str) -> int:
    """The signature bit of ``char``: a-z and 0-9 a bit each, other characters share the rest."""
    c = ord(char)
    if 97 <= c <= 122:
        return c - 97
    if 48 <= c <= 57:
        return c - 48 + 26
    return 36 + c % 28


def signature(word: str) -> int:
    """The characters ``word`` holds, one bit a kind (see the module docstring)."""
    sig = 0
    for char in set(word):
        sig |= 1 << _bit(char)
    return sig


def _popcount_bytes(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64 of a contiguous 1-D array, a byte at a time (numpy < 2.0)."""
    return _BYTE_BITS[values.view(np.uint8)].reshape(-1, 8).sum(axis=1)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    return _popcount_bytes(values)


class _Words:
    """Some words: as a tuple, as an array to pick from, and their signatures."""

    def __init__(self, words: tuple[str, ...], array: np.ndarray, signatures: np.ndarray
                 ) -> None:
        self.words = words
        self.array = array
        self.signatures = signatures

    @classmethod
    def of(cls, words: Sequence[str]) -> _Words:
        return cls(tuple(words), np.array(words, dtype=object).reshape(-1),
                   np.fromiter((signature(w) for w in words), dtype=np.uint64,
                               count=len(words)))

    @classmethod
    def joined(cls, parts: Sequence[_Words]) -> _Words:
        if not parts:
            return cls.of(())
        return cls(tuple(w for p in parts for w in p.words),
                   np.concatenate([p.array for p in parts]),
                   np.concatenate([p.signatures for p in parts]))


class WordsByLength:
    """``words`` (in the order given) grouped by length. Signatures are computed here, once a
    word; a length range's words are joined on its first search (arrays: microseconds)."""

    def __init__(self, words: Iterable[str]) -> None:
        by_length: dict[int, list[str]] = {}
        for w in words:
            by_length.setdefault(len(w), []).append(w)
        self._by_length = {n: _Words.of(ws) for n, ws in by_length.items()}
        self._ranges: dict[tuple[int, int], _Words] = {}

    def __len__(self) -> int:
        return sum(len(v.words) for v in self._by_length.values())

    def _range(self, lo: int, hi: int) -> _Words:
        found = self._ranges.get((lo, hi))
        if found is None:  # two threads may both build it: the same words either way
            found = _Words.joined([self._by_length[n] for n in range(lo, hi + 1)
                                   if n in self._by_length])
            self._ranges[(lo, hi)] = found
        return found

    def between(self, lo: int, hi: int) -> tuple[str, ...]:
        """The words of lengths ``lo``..``hi``, shorter first, each length in the given order."""
        return self._range(lo, hi).words

    def near(self, word: str, edits: int, lo: int, hi: int) -> Sequence[str]:
        """``between(lo, hi)`` less words that cannot be within ``edits`` edits of ``word``
        (their characters differ too much): every word that is, in the same order."""
        found = self._range(lo, hi)
        if len(found.words) <= SMALL:
            return found.words
        differ = _popcount(found.signatures ^ np.uint64(signature(word)))
        kept: list[str] = found.array[np.flatnonzero(differ <= 2 * edits)].tolist()
        return kept
