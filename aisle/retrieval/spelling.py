"""Spelling correction against a catalog's own words.

Shoppers misspell ("celing fan", "pedistal sink", "galvinized pipe"); the query speller below
changes 131 of homedepot's 1,117 dev queries. ``QuerySpeller.word`` maps such a
word to the most common catalog word within a small edit distance. Two users:
- autocomplete de-duplication embeds each suggestion's corrected text (``autocomplete.build``);
- dense retrieval corrects a query before the query tower embeds it (``QuerySpeller.rewrite``,
  ``retrieval.retriever.titles_speller``), with the stricter guards below switched on.

A word is left alone when it is under 5 letters ("cost" is not "post"), common in the catalog,
a plural ("-s", "-es") or an "un-" negation of a common or known word ("unframed" is not
"framed"). The query speller also leaves alone a word the query tower's tokenizer holds whole
(``known``: "steak" is English even where no title has it, and must not become "steam"), and
two common catalog words run together ("wiremesh", "chainlink": ``compound_min_count``), and
never corrects to a word under ``min_candidate_length`` letters ("swith" is not "with").
Otherwise the candidates are the common words within 1 edit (2 from 8 letters; optimal string
alignment, so a swap of two letters is one edit); the most common wins, then the closer, then
the alphabetically first.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import overload

from rapidfuzz import process
from rapidfuzz.distance import OSA

from aisle.retrieval.word_lengths import WordsByLength

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"^[a-z]+$")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# A run of letters between word boundaries: "18volt" has none (digits are word characters),
# "Char-Broil" has two.
_LETTERS = re.compile(r"\b[^\W\d_]+\b")
# Word-start marks of SentencePiece and byte-level BPE vocabularies; WordPiece marks the
# continuations instead ("##ing").
_VOCAB_MARKS = "\u2581\u0120"
MIN_WORD = 5  # shorter words are never corrected
CACHE_SIZE = 65536  # corrections remembered (LRU)


def fold(text: str) -> str:
    """NFKD, casefold, NFKD, drop combining marks (accents), turn every whitespace run into one
    space. Leading space is dropped; a trailing one is kept. Decomposing first lets a
    compatibility character's capitals fold too ("™" is "tm", "Ⅻ" is "xii"), as Unicode's
    caseless matching does."""
    decomposed = unicodedata.normalize(
        "NFKD", unicodedata.normalize("NFKD", text).casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACE.sub(" ", stripped).lstrip()


def whole_words(vocabulary: Iterable[str]) -> frozenset[str]:
    """The entries of a tokenizer vocabulary that are whole words, folded. Where entries
    carry a word-start mark, only those are words; elsewhere "##" marks the pieces."""
    entries = list(vocabulary)
    marked = any(e[:1] in _VOCAB_MARKS and len(e) > 1 for e in entries)
    out = set()
    for entry in entries:
        if entry.startswith("##") or (marked and entry[:1] not in _VOCAB_MARKS):
            continue
        word = fold(entry.lstrip(_VOCAB_MARKS)).strip()
        if _WORD.match(word):
            out.add(word)
    return frozenset(out)


def _cased_like(typed: str, word: str) -> str:
    """``word`` in the case of ``typed``: "CEILING" for "CELING", "Ceiling" for "Celing"."""
    if typed.isupper():
        return word.upper()
    if typed[:1].isupper():
        return word.capitalize()
    return word


class QuerySpeller:
    """Maps rare words to the most common catalog word within a small edit distance."""

    def __init__(
        self,
        vocabulary: Mapping[str, int],
        min_count: int,
        known: Iterable[str] = (),
        compound_min_count: int = 0,
        min_candidate_length: int = 0,
        min_word: int = MIN_WORD,
    ) -> None:
        """``compound_min_count`` > 0: a word that splits into two words each in that many
        texts is left alone (the count keeps fragments like "eer" from counting as words).
        ``min_candidate_length``: shorter catalog words are never a correction.
        ``min_word``: shorter words are never corrected."""
        self.counts: Counter[str] = Counter(vocabulary)
        self.min_count = min_count
        self.known = frozenset(known)
        self.compound_min_count = compound_min_count
        self.min_word = min_word
        self._candidates = WordsByLength(
            w for w, c in self.counts.items()
            if c >= min_count and _WORD.match(w) and len(w) >= min_candidate_length
        )
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], min_count: int, known: Iterable[str] = (), **guards: int
    ) -> QuerySpeller:
        vocab: Counter[str] = Counter()
        for t in texts:
            # Document frequency over alphanumeric runs: "Char-Broil" counts "char", "broil".
            vocab.update(set(_NON_ALNUM.split(fold(t))) - {""})
        return cls(vocab, min_count, known, **guards)

    @property
    def common_words(self) -> int:
        """How many catalog words can be a correction."""
        return len(self._candidates)

    def _is_word(self, w: str) -> bool:
        return self.counts[w] >= self.min_count or w in self.known

    def _is_compound(self, w: str) -> bool:
        n = self.compound_min_count
        return n > 0 and any(
            self.counts[w[:i]] >= n and self.counts[w[i:]] >= n for i in range(3, len(w) - 2)
        )

    def _settled(self, w: str) -> bool:
        """Whether ``w`` is left as it is without a search."""
        if len(w) < self.min_word or not _WORD.match(w) or self._is_word(w):
            return True
        plural = (
            (w.endswith("s") and self._is_word(w[:-1]))
            or (w.endswith("es") and self._is_word(w[:-2]))
            or (w.endswith("ies") and self._is_word(w[:-3] + "y"))  # "pantries": "pantry"
        )
        return plural or (w.startswith("un") and self._is_word(w[2:])) or self._is_compound(w)

    def _search(self, w: str) -> str:
        cutoff = 1 if len(w) < 8 else 2
        candidates = self._candidates.near(w, cutoff, len(w) - cutoff, len(w) + cutoff)
        hits = process.extract(w, candidates, scorer=OSA.distance, score_cutoff=cutoff, limit=None)
        # The most common candidate; then the closer one; then alphabetical (stable).
        best = min(hits, key=lambda h: (-self.counts[h[0]], h[1], h[0]), default=None)
        return str(best[0]) if best else w

    def known_answer(self, w: str) -> str | None:
        """``w`` (folded) corrected without a search: itself where it is left alone, the
        remembered correction where there is one, else None."""
        if self._settled(w):
            return w
        with self._lock:
            hit = self._cache.get(w)
            if hit is not None:
                self._cache.move_to_end(w)
            return hit

    def word(self, w: str) -> str:
        """``w`` (folded) corrected, or ``w`` itself."""
        answer = self.known_answer(w)
        if answer is not None:
            return answer
        fixed = self._search(w)
        with self._lock:
            self._cache[w] = fixed
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return fixed

    def correct(self, text: str) -> str:
        """``text`` folded, its words split on spaces, each one corrected (autocomplete)."""
        return " ".join(self.word(w) for w in fold(text).split())

    def rewrite(self, text: str) -> str:
        """``text`` with each misspelt word replaced by its correction, in the case it was
        typed in; the rest, digits and punctuation included, exactly as typed."""
        return self._rewrite(text, self.word)

    def rewrite_known(self, text: str) -> str | None:
        """``rewrite`` without a search: None where some word's answer is not known yet, so
        that a latency-bound caller can leave the search to another thread."""
        return self._rewrite(text, self.known_answer)

    @overload
    def _rewrite(self, text: str, answer: Callable[[str], str]) -> str: ...

    @overload
    def _rewrite(self, text: str, answer: Callable[[str], str | None]) -> str | None: ...

    def _rewrite(self, text: str, answer: Callable[[str], str | None]) -> str | None:
        text = unicodedata.normalize("NFC", text)
        parts: list[str] = []
        last = 0
        for match in _LETTERS.finditer(text):
            typed = match.group(0)
            folded = fold(typed)
            fixed = answer(folded)
            if fixed is None:
                return None
            if fixed != folded:
                parts += [text[last : match.start()], _cased_like(typed, fixed)]
                last = match.end()
        return "".join(parts) + text[last:] if parts else text
