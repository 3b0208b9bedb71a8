"""BM25 over product text: the lexical baseline every learned ranker is measured against.

Tokenisation is bm25s's own: lower-case, ``\\b\\w\\w+\\b`` tokens (single characters dropped),
bm25s's English (NLTK) stop words, then the PyStemmer (Snowball) English stemmer. Scoring uses
bm25s's defaults, stated here because they decide the numbers:

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))      # method="lucene"

with ``k1 = 1.5`` and ``b = 0.75``; lengths count tokens after stop words. bm25s leaves out the
constant ``(k1 + 1)`` factor of the textbook numerator, which changes scores, not rankings.
Callers pass the strings from ``aisle.towers.text`` so BM25 and the towers read the same text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

logger = logging.getLogger(__name__)

METHOD = "lucene"
K1 = 1.5
B = 0.75
STOPWORDS = "en"
STEMMER_LANGUAGE = "english"
IDS_FILE = "product_ids.json"


def _tokenize(texts: Sequence[str]) -> list[list[str]]:
    """bm25s tokens (strings, not ids) for each text, stop words removed, stemmed."""
    tokens = bm25s.tokenize(
        list(texts),
        stopwords=STOPWORDS,
        stemmer=Stemmer.Stemmer(STEMMER_LANGUAGE),
        return_ids=False,
        show_progress=False,
    )
    assert isinstance(tokens, list)
    return tokens


class BM25Index:
    """A BM25 retriever mapping row positions back to product ids."""

    def __init__(self, retriever: bm25s.BM25, product_ids: Sequence[str]) -> None:
        num_docs = int(retriever.scores["num_docs"])
        if num_docs != len(product_ids):
            raise ValueError(
                f"the BM25 index holds {num_docs} documents but {len(product_ids)} product ids"
                " were given; rebuild the index from the same catalog"
            )
        self._retriever = retriever
        self._ids = np.asarray(list(product_ids), dtype=object)

    def __len__(self) -> int:
        return len(self._ids)

    @classmethod
    def build(cls, texts: Sequence[str], product_ids: Sequence[str]) -> BM25Index:
        """Index ``texts[i]`` under ``product_ids[i]``."""
        if len(texts) != len(product_ids):
            raise ValueError(f"got {len(texts)} texts but {len(product_ids)} product ids")
        if not texts:
            raise ValueError("cannot build a BM25 index over an empty catalog")
        if len(set(product_ids)) != len(product_ids):
            raise ValueError("product ids must be unique")
        retriever = bm25s.BM25(method=METHOD, k1=K1, b=B)
        # create_empty_token lets a product whose text is all stop words still be indexed.
        retriever.index(_tokenize(texts), create_empty_token=True, show_progress=False)
        logger.info("BM25 index over %d products, %d terms", len(texts), len(retriever.vocab_dict))
        return cls(retriever, product_ids)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(product_id, score)`` per query, best first.

        Only products with a positive score are returned, so a query may get fewer than ``k``
        hits (and none when nothing is left of it after stop words and stemming). Ties break by
        catalog order, so results are deterministic.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        vocab = self._retriever.vocab_dict
        results: list[list[tuple[str, float]]] = []
        for tokens in _tokenize(queries):
            # "" is bm25s's placeholder for empty documents, never a query term.
            known = [t for t in tokens if t and t in vocab]
            if not known:
                results.append([])
                continue
            scores = np.asarray(self._retriever.get_scores(known), dtype=np.float64)
            hits = np.flatnonzero(scores > 0.0)
            if len(hits) > k:
                # Keep every hit tied with the k-th best, then order exactly below.
                kth = np.partition(scores[hits], len(hits) - k)[len(hits) - k]
                hits = hits[scores[hits] >= kth]
            order = np.lexsort((hits, -scores[hits]))[:k]
            results.append([(str(self._ids[i]), float(scores[i])) for i in hits[order]])
        return results

    def save(self, directory: Path) -> None:
        """Write the bm25s index files and ``product_ids.json`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory), show_progress=False)
        (directory / IDS_FILE).write_text(json.dumps(self._ids.tolist()), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        """Read an index written by ``save``."""
        ids_path = directory / IDS_FILE
        if not ids_path.is_file():
            raise ValueError(f"{directory} is not a BM25 index directory (no {IDS_FILE})")
        retriever = bm25s.BM25.load(str(directory), show_progress=False, verbosity=0)
        product_ids = json.loads(ids_path.read_text(encoding="utf-8"))
        return cls(retriever, product_ids)
