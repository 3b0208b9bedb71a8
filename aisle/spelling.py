"""Spelling correction against a catalog's own words.

Shoppers misspell ("celing fan", "pedistal sink", "galvinized pipe"); about 13% of homedepot's
dev and test queries hold a word that the catalog's titles do not. ``Speller.word`` maps such a
word to the most common catalog word within a small edit distance. Two users:
- autocomplete de-duplication embeds each suggestion's corrected text (``autocomplete.build``);
- dense retrieval corrects a query before the query tower embeds it (``Speller.rewrite``,
  ``indexing.retrieve.query_speller``).

A word is left alone when it is under 5 letters ("cost" is not "post"), common in the catalog,
the plural of a common word, a word the query tower's tokenizer holds whole (``known``:
"steak" is English even where no title has it, and must not become "steam"), or two common
catalog words run together ("wiremesh", "chainlink"). Otherwise the candidates are
the common words within 1 edit (2 from 8 letters; optimal string alignment, so a swap of two
letters is one edit); the most common wins, then the closer, then the alphabetically first.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping

from rapidfuzz import process
from rapidfuzz.distance import OSA

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"^[a-z]+$")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# A run of letters between word boundaries: "18volt" has none (digits are word characters),
# "Char-Broil" has two.
_LETTERS = re.compile(r"\b[^\W\d_]+\b")
# Words of a tokenizer vocabulary: letters only, after a SentencePiece or byte-level BPE
# word-start mark; WordPiece continuations ("##ing") are pieces, not words.
_VOCAB_MARKS = "\u2581\u0120"
MIN_COMPOUND_PART = 3


def fold(text: str) -> str:
    """Casefold, NFKD, drop combining marks (accents), turn every whitespace run into one
    space. Leading space is dropped; a trailing one is kept."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACE.sub(" ", stripped).lstrip()


def whole_words(vocabulary: Iterable[str]) -> frozenset[str]:
    """The entries of a tokenizer vocabulary that are whole words, folded."""
    out = set()
    for entry in vocabulary:
        word = fold(entry.lstrip(_VOCAB_MARKS)).strip()
        if _WORD.match(word) and not entry.startswith("##"):
            out.add(word)
    return frozenset(out)


class Speller:
    """Maps rare words to the most common catalog word within a small edit distance."""

    def __init__(
        self, vocabulary: Mapping[str, int], min_count: int, known: Iterable[str] = ()
    ) -> None:
        self.counts: Counter[str] = Counter(vocabulary)
        self.min_count = min_count
        self.known = frozenset(known)
        self._common = [w for w, c in self.counts.items() if c >= min_count and _WORD.match(w)]
        self._cache: dict[str, str] = {}

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], min_count: int, known: Iterable[str] = ()
    ) -> Speller:
        vocab: Counter[str] = Counter()
        for t in texts:
            # Document frequency over alphanumeric runs: "Char-Broil" counts "char", "broil".
            vocab.update(set(_NON_ALNUM.split(fold(t))) - {""})
        return cls(vocab, min_count, known)

    def __len__(self) -> int:
        return len(self._common)

    def _is_common(self, w: str) -> bool:
        return self.counts[w] >= self.min_count

    def _is_compound(self, w: str) -> bool:
        return any(
            self._is_common(w[:i]) and self._is_common(w[i:])
            for i in range(MIN_COMPOUND_PART, len(w) - MIN_COMPOUND_PART + 1)
        )

    def word(self, w: str) -> str:
        """``w`` (lower-case) corrected, or ``w`` itself."""
        if len(w) < 5 or not _WORD.match(w) or self._is_common(w) or w in self.known:
            return w
        if w.endswith("s") and self._is_common(w[:-1]):
            return w  # a plural of a known word ("toilets"), not a typo
        if w not in self._cache:
            if self._is_compound(w):
                self._cache[w] = w
            else:
                cutoff = 1 if len(w) < 8 else 2
                hits = process.extract(w, self._common, scorer=OSA.distance,
                                       score_cutoff=cutoff, limit=None)
                # The most common candidate; then the closer one; then alphabetical (stable).
                best = min(hits, key=lambda h: (-self.counts[h[0]], h[1], h[0]), default=None)
                self._cache[w] = best[0] if best else w
        return self._cache[w]

    def correct(self, text: str) -> str:
        """``text`` folded, its words split on spaces, each one corrected (autocomplete)."""
        return " ".join(self.word(w) for w in fold(text).split())

    def rewrite(self, text: str) -> str:
        """``text`` with each misspelt word replaced by its correction (lower-case); the rest,
        case, digits and punctuation included, exactly as typed."""

        def fix(match: re.Match[str]) -> str:
            typed = match.group(0)
            folded = fold(typed)
            fixed = self.word(folded)
            return fixed if fixed != folded else typed

        return _LETTERS.sub(fix, text)
