"""Text analysis for BM25: product text and queries to index terms.

Two analyzers, named so an index records which one built it (a query must be analysed the way
its index was):

* ``"product"`` (the default): an analyzer for product search, where sizes, counts and model
  numbers carry much of a query's meaning. In order:

  0. Unicode NFKC, as queries are (``querytext.nfkc``): a catalog's ``½``, full-width
     letters, ligatures and soft hyphens give the terms a shopper's typed text gives;
  1. lower-case;
  2. a double quote (or a double prime, or two primes or apostrophes, as NFKC spells a double
     prime) right after a digit means inches, a single one feet: ``3/4"`` -> ``3/4 in``,
     ``8'`` -> ``8 ft``;
  3. split where digits meet letters: ``18v`` -> ``18 v``, ``2x4x8`` -> ``2 x 4 x 8``,
     ``mh400`` -> ``mh 400``;
  4. terms are numbers, kept whole with inner ``.`` or ``/`` (``1.5``, ``3/4``, ``1-1/2`` ->
     ``1 1/2``), or runs of letters (any script); single characters are kept, so ``3/4 in``
     keeps its ``3/4`` and ``j hooks`` its ``j``;
  5. unit words take one spelling: inch/inches -> in, feet/foot -> ft, watt(s) -> w,
     volt(s) -> v, amps/ampere(s) -> amp, gallon(s) -> gal, ounce(s) -> oz,
     pound(s)/lbs -> lb;
  6. English stop words (bm25s's list) and the dimension ``x`` are dropped;
  7. words (not numbers) are stemmed with the Snowball English stemmer.

  On homedepot dev (BM25 alone, k1 = 1.5, b = 0.75) it lifts nDCG@10 from 0.364 to 0.386
  (bench/lexical.py, docs/results.md).

* ``"word"``: bm25s's own tokenizer, ``\\b\\w\\w+\\b`` tokens (single characters dropped, so
  ``1/2`` and ``3/4`` vanish), the same stop words and stemmer. Indexes written before the
  analyzer was recorded used it, and still load with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import get_args

import bm25s
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from aisle.retrieval.config import BM25Analyzer
from aisle.retrieval.querytext import nfkc

ANALYZERS: tuple[str, ...] = get_args(BM25Analyzer)

STOPWORDS = "en"
STEMMER_LANGUAGE = "english"

_INCHES = re.compile(r'(?<=\d)\s*(?:["\u201d\u2033]|[\'\u2019\u2032]{2})')
_FEET = re.compile(r"(?<=\d)\s*['\u2019\u2032]")
# Control characters split words, as they did before NFKC was applied (catalog mojibake such as
# "Men\x89\xdb\xaas"); nfkc would drop them and glue the pieces into one term.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_])(?=\d)")
_TERM = re.compile(r"\d+(?:[./]\d+)*|[^\W\d_]+")
UNIT_SPELLINGS: dict[str, str] = {
    "inch": "in",
    "inches": "in",
    "feet": "ft",
    "foot": "ft",
    "watt": "w",
    "watts": "w",
    "volt": "v",
    "volts": "v",
    "amps": "amp",
    "ampere": "amp",
    "amperes": "amp",
    "gallon": "gal",
    "gallons": "gal",
    "ounce": "oz",
    "ounces": "oz",
    "pound": "lb",
    "pounds": "lb",
    "lbs": "lb",
}
_DROPPED = frozenset(STOPWORDS_EN) | {"x"}


class _ProductAnalyzer:
    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer(STEMMER_LANGUAGE)

    def terms(self, text: str) -> list[str]:
        text = _INCHES.sub(" in ", nfkc(_CONTROLS.sub(" ", text)).lower())
        text = _DIGIT_LETTER.sub(" ", _FEET.sub(" ft ", text))
        terms = (UNIT_SPELLINGS.get(t, t) for t in _TERM.findall(text))
        kept = [t for t in terms if t not in _DROPPED]
        return [t if t[0].isdigit() else self._stemmer.stemWord(t) for t in kept]

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.terms(t) for t in texts]


def _word_analyzer(texts: Sequence[str]) -> list[list[str]]:
    tokens = bm25s.tokenize(
        list(texts),
        stopwords=STOPWORDS,
        stemmer=Stemmer.Stemmer(STEMMER_LANGUAGE),
        return_ids=False,
        show_progress=False,
    )
    assert isinstance(tokens, list)
    return tokens


def analyzer(name: str) -> Callable[[Sequence[str]], list[list[str]]]:
    """The analyzer called ``name``: texts in, one list of index terms per text out."""
    if name == "product":
        return _ProductAnalyzer()
    if name == "word":
        return _word_analyzer
    raise ValueError(f"unknown BM25 analyzer {name!r}; use one of {ANALYZERS}")
