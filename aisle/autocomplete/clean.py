"""Log queries as suggestions may show them: spelt right, in lower case (``text.shown``).

Decided once, at build time, so that serving stays a lookup. Spelling is the search path's
query speller (``aisle.retrieval.retriever.titles_speller``): a misspelt word is replaced by its
correction ("glaciar bay toiled" is shown as "glacier bay toilet", and its popularity counts for
that). A query holding a word the speller can neither correct nor accept as it is, is not
shown at all: "glacier bay one pice flapper" ("pice" is under the 5 letters the speller will
guess at) and "burgular bars" (nothing within reach) would teach the typo.

A word the speller leaves as it is but does not know is still accepted when shoppers typed it
in at least ``LOG_WORD_MIN_QUERIES`` distinct log queries: "vanities" (14 homedepot queries;
the speller's plural rule covers -s and -es only) and "caulking" (5) are words, "pice" and
"burgular" (1 each) are typos. A misspelling the speller can correct is corrected before this
rule is asked, however common it is ("toliet", 5 queries, is shown as "toilet").
Autocomplete is shown to every shopper on every keystroke, so a missing suggestion costs less
than a wrong one; the shopper's search itself is unaffected.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from aisle.autocomplete.text import shown
from aisle.retrieval.spelling import QuerySpeller, fold

# The letter runs ``QuerySpeller.rewrite`` corrects: "18volt" holds none, "tub/shwer" two.
_LETTERS = re.compile(r"\b[^\W\d_]+\b")
# Distinct log queries a word must appear in to be taken as a word the speller does not know.
LOG_WORD_MIN_QUERIES = 3


def log_words(queries: Iterable[str]) -> Counter[str]:
    """Folded word -> how many distinct log queries hold it."""
    counts: Counter[str] = Counter()
    for text in set(queries):
        counts.update({fold(m.group(0)) for m in _LETTERS.finditer(str(text))})
    return counts


@dataclass(frozen=True)
class Cleaned:
    """One log query as it will be shown, or None where it is not shown."""

    text: str | None
    corrected: bool  # the speller changed a word


class QueryCleaner:
    """Corrects log queries with the query speller and rejects those it cannot vouch for."""

    def __init__(self, speller: QuerySpeller, logged: Counter[str] | None = None,
                 min_queries: int = LOG_WORD_MIN_QUERIES) -> None:
        self.speller = speller
        # Words shoppers typed in at least min_queries distinct log queries (log_words).
        self.common = {w for w, n in (logged or Counter()).items() if n >= min_queries}
        # The speller never looks at a word under its min_word letters, so "pice" passes it
        # unchanged. The same speller's rules at any length (catalog or tokenizer word, a
        # plural or "un-" form of one, two common words run together) say whether such a word,
        # or a longer one it found no correction for, is a word at all.
        self._judge = QuerySpeller(speller.counts, speller.min_count, speller.known,
                                   compound_min_count=speller.compound_min_count, min_word=1)

    def accepts(self, word: str) -> bool:
        """Whether the speller takes ``word`` (folded) as it is. The judge never searches, so
        it remembers no correction: its answer is the word itself or None."""
        return word in self.common or self._judge.known_answer(word) == word

    def clean(self, query: str) -> Cleaned:
        typed = " ".join(str(query).split())
        fixed = self.speller.rewrite(typed)
        if not all(self.accepts(fold(m.group(0))) for m in _LETTERS.finditer(fixed)):
            return Cleaned(None, fixed != typed)
        return Cleaned(shown(fixed), fixed != typed)
