"""Suggestion keys (case-, accent- and space-insensitive) and the spelling used for dedup."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from rapidfuzz import process
from rapidfuzz.distance import OSA

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"^[a-z]+$")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Casefold, NFKD, drop combining marks (accents), turn every whitespace run into one
    space. Leading space is dropped; a trailing one is kept (see ``prefix_key``)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACE.sub(" ", stripped).lstrip()


def key(text: str) -> str:
    """The lookup key of a suggestion: ``fold`` without the trailing space."""
    return fold(text).rstrip()


def prefix_key(prefix: str) -> str:
    """The key of a typed prefix. A trailing space stays: "moen " must not match "moenix"."""
    return fold(prefix)


def words(text: str) -> list[str]:
    return key(text).split(" ") if key(text) else []


class Speller:
    """Maps rare words to the most common catalog word within a small edit distance.

    Only the text that is embedded for de-duplication is corrected; suggestions are shown as
    typed in the log. Words under 5 letters ("cost" is not "post") and words with digits or
    punctuation are left alone."""

    def __init__(self, vocabulary: Counter[str], min_count: int) -> None:
        self.counts = vocabulary
        self.min_count = min_count
        self._common = [w for w, c in vocabulary.items() if c >= min_count and _WORD.match(w)]
        self._cache: dict[str, str] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int) -> Speller:
        vocab: Counter[str] = Counter()
        for t in texts:
            # Document frequency over alphanumeric runs: "Char-Broil" counts "char", "broil".
            vocab.update(set(_NON_ALNUM.split(key(t))) - {""})
        return cls(vocab, min_count)

    def word(self, w: str) -> str:
        if len(w) < 5 or not _WORD.match(w) or self.counts[w] >= self.min_count:
            return w
        if w.endswith("s") and self.counts[w[:-1]] >= self.min_count:
            return w  # a plural of a known word ("toilets"), not a typo
        if w not in self._cache:
            cutoff = 1 if len(w) < 8 else 2
            hits = process.extract(w, self._common, scorer=OSA.distance, score_cutoff=cutoff,
                                   limit=None)
            # The most common candidate; then the closer one; then alphabetical (stable).
            best = min(hits, key=lambda h: (-self.counts[h[0]], h[1], h[0]), default=None)
            self._cache[w] = best[0] if best else w
        return self._cache[w]

    def correct(self, text: str) -> str:
        return " ".join(self.word(w) for w in words(text))
