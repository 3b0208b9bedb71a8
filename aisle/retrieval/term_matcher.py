"""Typo tolerance for BM25: a query term the index lacks maps to its nearest indexed word.

Shoppers misspell ("aluminun", "toungh", "porcelin"); a BM25 term that matches no product adds
nothing to any score. ``TermMatcher.correct`` replaces such a term with the indexed word at the
smallest Levenshtein distance, within Elasticsearch's ``fuzziness: AUTO`` budget (Lucene's
FuzzyQuery): 0 edits for terms of 1-3 characters, 1 for 4-5, 2 for 6 or more. Ties go to the
word in more products, then to the alphabetically first, so corrections are deterministic.
Numbers are never corrected: 3/4 is not a typo of 1/4.

Terms are analysed (lower-cased, stemmed) on both sides, so distances are between stems. On
homedepot dev, with the product analyzer, BM25 nDCG@10 went from 0.3990 to 0.4041 and hybrid
(the default cascade, weight tuned on dev) from 0.4207 to 0.4272 (docs/results.md).

Cost: only terms missing from the index are looked up; each lookup compares against indexed
words of about the same length that hold nearly the same characters (``WordsByLength.near``;
rapidfuzz, C++), and the answers are cached per term.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from aisle.retrieval.word_lengths import WordsByLength

CACHE_SIZE = 65536


def max_edits(term: str) -> int:
    """Elasticsearch's AUTO fuzziness by term length, with numbers never corrected."""
    if not term or term[0].isdigit():
        return 0
    if len(term) <= 3:
        return 0
    return 1 if len(term) <= 5 else 2


class TermMatcher:
    """Corrects terms against ``df``: indexed word -> number of products that hold it."""

    def __init__(self, df: Mapping[str, int]) -> None:
        self.df = dict(df)
        self._words = WordsByLength(sorted(self.df))
        self.correct = functools.lru_cache(maxsize=CACHE_SIZE)(self._correct)

    @classmethod
    def from_documents(cls, documents: Iterable[Sequence[str]]) -> TermMatcher:
        """A speller over the words (not numbers) of analysed documents."""
        df: Counter[str] = Counter()
        for terms in documents:
            df.update({t for t in terms if t and not t[0].isdigit()})
        return cls(df)

    def __len__(self) -> int:
        return len(self.df)

    def _correct(self, term: str) -> str | None:
        """``term`` itself if indexed, else its nearest indexed word, else None."""
        if term in self.df:
            return term
        edits = max_edits(term)
        if edits == 0:
            return None
        candidates = self._words.near(term, edits, len(term) - edits, len(term) + edits)
        found = process.extract(
            term, candidates, scorer=Levenshtein.distance, score_cutoff=edits, limit=None
        )
        if not found:
            return None
        best = min(found, key=lambda hit: (hit[1], -self.df[hit[0]], hit[0]))
        return str(best[0])
