"""BM25 over product text: the lexical baseline every learned ranker is measured against.

Terms come from an analyzer (``aisle.retrieval.analyzer``; ``"product"`` by default), which the
index records so queries are always analysed the way its products were. Scoring is bm25s's:

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))      # method="lucene"

with lengths counted in terms after stop words. bm25s leaves out the constant ``(k1 + 1)``
factor of the textbook numerator, which changes scores, not rankings. The defaults (analyzer,
k1, b: ``IndexConfig``'s ``bm25_*`` fields) were picked on homedepot dev with the product
analyzer, before the speller existed, over k1 in {0.5, 0.7, 0.9, 1.2, 1.5} x b in {0.4, 0.6,
0.75, 0.9} (bench/lexical.py): k1 0.5, b 0.6 gave nDCG@10 0.3990 (b 0.75 tied), and every cell
with k1 <= 0.9 and b <= 0.75 was within 0.005 of it; bm25s's defaults (1.5, 0.75) gave 0.3862.
Callers pass the strings from ``aisle.towers.text`` so BM25 and the towers read the same text.

bm25s stores each term's weight per product. ``search`` sums a query's terms' weights itself,
over the products holding them rather than the whole catalog, and in bm25s's order, so its
scores equal bm25s's ``get_scores`` to the bit (bench/bm25_latency.py checks it, and times it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from aisle.retrieval.analyzer import ANALYZERS, analyzer
from aisle.retrieval.config import IndexConfig
from aisle.retrieval.term_matcher import TermMatcher

logger = logging.getLogger(__name__)

METHOD = "lucene"
_DEFAULT = IndexConfig()
IDS_FILE = "product_ids.json"
# {"analyzer": name, "fuzzy": bool}; an index without it was written by bm25s's "word"
# tokenizer, without a speller.
ANALYZER_FILE = "analyzer.json"
# The speller's words and their document frequencies (fuzzy indexes only).
WORDS_FILE = "words.json"
LEGACY_ANALYZER = "word"
# bm25s's placeholder term of documents without terms; never a query term.
EMPTY_TERM = ""


class BM25Index:
    """A BM25 retriever mapping row positions back to product ids."""

    # A query whose terms' postings exceed this share of the catalog is summed into a
    # catalog-wide array, cheaper then than sorting its postings (bench/bm25_latency.py).
    DENSE_SHARE = 0.1

    def __init__(
        self,
        retriever: bm25s.BM25,
        product_ids: Sequence[str],
        analyzer_name: str,
        speller: TermMatcher | None = None,
    ) -> None:
        num_docs = int(retriever.scores["num_docs"])
        if num_docs != len(product_ids):
            raise ValueError(
                f"the BM25 index holds {num_docs} documents but {len(product_ids)} product ids"
                " were given; rebuild the index from the same catalog"
            )
        self._retriever = retriever
        self._ids = np.asarray(list(product_ids), dtype=object)
        self._names = np.asarray([str(pid) for pid in self._ids], dtype=object)
        # The score matrix, one column of (product, weight) per term, read once: a query sums
        # its terms' columns instead of calling get_scores, which allocates, fills and scans
        # an array over the whole catalog.
        self._postings = np.asarray(retriever.scores["indices"])
        self._weights = np.asarray(retriever.scores["data"], dtype=np.dtype(retriever.dtype))
        self._column: list[int] = np.asarray(retriever.scores["indptr"]).tolist()
        # lucene's weights are all positive, and so is any sum of them: search need not drop
        # products scoring 0 or less unless the method (robertson's zero idf) gives some.
        self._signed = bool((self._weights <= 0.0).any())
        self.analyzer_name = analyzer_name
        self._analyze = analyzer(analyzer_name)
        # Corrects query terms the index lacks (term_matcher.py); None = exact terms only.
        self._speller = speller

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def params(self) -> dict[str, object]:
        """What decides this index's scores: analyzer, typo tolerance, k1 and b."""
        return {
            "analyzer": self.analyzer_name,
            "fuzzy": self._speller is not None,
            "k1": self._retriever.k1,
            "b": self._retriever.b,
        }

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        product_ids: Sequence[str],
        analyzer_name: str = _DEFAULT.bm25_analyzer,
        k1: float = _DEFAULT.bm25_k1,
        b: float = _DEFAULT.bm25_b,
        fuzzy: bool = _DEFAULT.bm25_fuzzy,
    ) -> BM25Index:
        """Index ``texts[i]`` under ``product_ids[i]``."""
        if len(texts) != len(product_ids):
            raise ValueError(f"got {len(texts)} texts but {len(product_ids)} product ids")
        if not texts:
            raise ValueError("cannot build a BM25 index over an empty catalog")
        if len(set(product_ids)) != len(product_ids):
            raise ValueError("product ids must be unique")
        documents = analyzer(analyzer_name)(texts)
        retriever = bm25s.BM25(method=METHOD, k1=k1, b=b)
        # create_empty_token lets a product whose text is all stop words still be indexed.
        # When no text has any term at all (titles of emoji, punctuation or stop words only),
        # bm25s has no vocabulary to add it to and fails: every document then holds just the
        # empty token, which is never a query term, so every search returns nothing.
        indexed = documents if any(documents) else [[EMPTY_TERM] for _ in documents]
        if indexed is not documents:
            logger.warning("BM25: none of the %d texts has an indexable term (%s analyzer); "
                           "lexical search over them will return nothing", len(texts),
                           analyzer_name)
        retriever.index(indexed, create_empty_token=True, show_progress=False)
        logger.info(
            "BM25 index over %d products, %d terms (%s analyzer)",
            len(texts),
            len(retriever.vocab_dict),
            analyzer_name,
        )
        speller = TermMatcher.from_documents(documents) if fuzzy else None
        return cls(retriever, product_ids, analyzer_name, speller)

    @classmethod
    def from_config(
        cls, texts: Sequence[str], product_ids: Sequence[str], config: IndexConfig
    ) -> BM25Index:
        """``build`` with the analyzer, k1, b and speller of ``config``'s ``bm25_*`` fields."""
        return cls.build(
            texts,
            product_ids,
            config.bm25_analyzer,
            config.bm25_k1,
            config.bm25_b,
            config.bm25_fuzzy,
        )

    def search(self, queries: Sequence[str], k: int, match_terms: bool = True,
               allowed: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(product_id, score)`` per query, best first.

        Only products with a positive score are returned, so a query may get fewer than ``k``
        hits (and none when nothing is left of it after analysis). With a speller and
        ``match_terms``, a query term the index lacks counts as its nearest indexed word.
        ``allowed`` (a boolean per product, in index order): only those products, dropped
        before the top k is taken, so a filter leaves k hits whenever k allowed products
        score. Ties break by catalog order, so results are deterministic.
        """
        return [list(zip(self._names[docs].tolist(), scores.tolist(), strict=True))
                for docs, scores in self.search_docs(queries, k, match_terms, allowed)]

    @property
    def product_names(self) -> np.ndarray:
        """The product id of each document (``search_docs``' numbers), as str."""
        return self._names

    def search_docs(self, queries: Sequence[str], k: int, match_terms: bool = True,
                    allowed: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """``search`` as arrays: per query, its documents (positions in ``product_names``)
        and their scores (float64, as ``search`` gives them), best first."""
        if allowed is not None and len(allowed) != len(self._ids):
            raise ValueError(f"allowed has {len(allowed)} entries; the index has "
                             f"{len(self._ids)} products")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        vocab = self._retriever.vocab_dict
        results: list[tuple[np.ndarray, np.ndarray]] = []
        for tokens in self._analyze(queries):
            # EMPTY_TERM is bm25s's placeholder for empty documents, never a query term.
            known = [t for t in (self._known(t, match_terms) for t in tokens) if t]
            term_ids = [vocab[t] for t in known if t in vocab]
            if not term_ids:
                results.append((np.zeros(0, dtype=np.int64), np.zeros(0)))
                continue
            if self._retriever.nonoccurrence_array is not None:
                # bm25l and bm25+ give every product a score: no sparse shortcut.
                scores = np.asarray(self._retriever.get_scores_from_ids(term_ids))
                docs = np.flatnonzero(scores > 0.0)
                scores = scores[docs]
            else:
                docs, scores = self._scores(term_ids)
            if allowed is not None:
                keep = allowed[docs]
                docs, scores = docs[keep], scores[keep]
            results.append(self._top(docs, scores, k))
        return results

    def _scores(self, term_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The products holding any of the terms and their scores, equal bit for bit to
        get_scores': each product's weights added in query order in the index's dtype, a
        term counted as often as the query repeats it."""
        spans = [(self._column[t], self._column[t + 1]) for t in term_ids]
        if len(spans) == 1:
            start, end = spans[0]
            return self._postings[start:end], self._weights[start:end]
        docs = np.concatenate([self._postings[a:b] for a, b in spans])
        weights = np.concatenate([self._weights[a:b] for a, b in spans])
        if len(docs) > self.DENSE_SHARE * len(self._names):
            # add.at adds in index order, so each product's sum is get_scores' to the bit.
            dense = np.zeros(len(self._names), dtype=weights.dtype)
            np.add.at(dense, docs, weights)
            hits = np.flatnonzero(dense > 0.0)
            return hits, dense[hits]
        # Stable, so each product's weights stay in query order, which add.at then sums in,
        # from zero, as get_scores does: float sums depend on the order.
        order = np.argsort(docs, kind="stable")
        docs, weights = docs[order], weights[order]
        first = np.empty(len(docs), dtype=bool)
        first[:1] = True
        np.not_equal(docs[1:], docs[:-1], out=first[1:])
        group = np.cumsum(first) - 1
        sums = np.zeros(len(docs) and int(group[-1]) + 1, dtype=weights.dtype)
        np.add.at(sums, group, weights)
        return docs[first], sums

    def _top(self, docs: np.ndarray, scores: np.ndarray, k: int
             ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best positive ``scores``, ties by catalog order: (documents, scores)."""
        if self._signed:
            positive = np.flatnonzero(scores > 0.0)
            docs, scores = docs[positive], scores[positive]
        if len(scores) > k:
            # Keep every hit tied with the k-th best, then order exactly below.
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            tied = np.flatnonzero(scores >= kth)
            docs, scores = docs[tied], scores[tied]
        order = np.lexsort((docs, -scores))[:k]
        # Widened to float64 exactly, as tolist() widens each score to a Python float.
        return docs[order].astype(np.int64), scores[order].astype(np.float64)

    def _known(self, term: str, match_terms: bool = True) -> str | None:
        if not term:
            return None
        if term in self._retriever.vocab_dict:
            return term
        if not match_terms or self._speller is None:
            return None
        return self._speller.correct(term)

    def save(self, directory: Path) -> None:
        """Write the bm25s index files, ``product_ids.json``, the analyzer's name and
        settings, and the speller's words."""
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory), show_progress=False)
        (directory / IDS_FILE).write_text(json.dumps(self._ids.tolist()), encoding="utf-8")
        if self._speller is not None:
            (directory / WORDS_FILE).write_text(json.dumps(self._speller.df), encoding="utf-8")
        settings = {"analyzer": self.analyzer_name, "fuzzy": self._speller is not None}
        (directory / ANALYZER_FILE).write_text(json.dumps(settings), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, legacy: bool = False) -> BM25Index:
        """Read an index written by ``save``, with the analyzer that built it.

        ``legacy``: the index may predate ``analyzer.json`` (its index manifest records no
        ``bm25_analyzer``; both came in one release), so a missing file means bm25s's "word"
        tokenizer without a speller. Otherwise a missing ``analyzer.json`` is an error: the
        analyzer cannot be guessed, and a wrong one silently returns worse results.
        """
        ids_path = directory / IDS_FILE
        if not ids_path.is_file():
            raise ValueError(f"{directory} is not a BM25 index directory (no {IDS_FILE})")
        analyzer_path = directory / ANALYZER_FILE
        settings: dict[str, object] = {"analyzer": LEGACY_ANALYZER, "fuzzy": False}
        if analyzer_path.is_file():
            saved = json.loads(analyzer_path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError(f"{analyzer_path} is not a JSON object")
            settings.update(saved)
            name = settings["analyzer"]
            if name not in ANALYZERS:
                raise ValueError(
                    f"{analyzer_path} names analyzer {name!r}, which this version does not "
                    f"know ({ANALYZERS}); rebuild the index"
                )
        elif not legacy:
            raise ValueError(f"{analyzer_path} is missing (which analyzer built this index?)")
        speller = None
        if settings["fuzzy"]:
            words_path = directory / WORDS_FILE
            if not words_path.is_file():
                raise ValueError(f"{directory} is a fuzzy BM25 index without {WORDS_FILE}")
            speller = TermMatcher(json.loads(words_path.read_text(encoding="utf-8")))
        retriever = bm25s.BM25.load(str(directory), show_progress=False, verbosity=0)
        # A map of another shape (hand-edited) would fail a search, or read another term's
        # column, long after loading: each entry must name a column of the score matrix (but
        # bm25s's empty token, never a query term, which has none).
        terms = len(retriever.scores["indptr"]) - 1
        for term, column in retriever.vocab_dict.items():
            if type(column) is not int or not 0 <= column < terms + (term == ""):
                raise ValueError(f"{directory}: vocabulary entry {term!r}: {column!r} is not a "
                                 f"term of the index (0..{terms - 1})")
        product_ids = json.loads(ids_path.read_text(encoding="utf-8"))
        return cls(retriever, product_ids, str(settings["analyzer"]), speller)
