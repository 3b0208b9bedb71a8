"""Dense, lexical and hybrid retrieval behind one text-level interface.

``retriever(texts, k) -> [[(product_id, score), ...], ...]``. The vector-level ``Searcher``
cannot serve hybrid search (BM25 needs the words), so modes meet one level up, where the query
text is still at hand.
"""

from __future__ import annotations

from collections.abc import Sequence

from aisle.errors import AisleError
from aisle.retrieval.config import FusionConfig
from aisle.retrieval.dense import DenseRetriever
from aisle.retrieval.fusion import convex_fusion, rrf_fusion
from aisle.retrieval.lexical import BM25Index


class HybridRetriever:
    def __init__(self, dense: DenseRetriever, lexical: BM25Index, fusion: FusionConfig) -> None:
        self.dense = dense
        self.lexical = lexical
        self.fusion = fusion

    def candidates(
        self, texts: Sequence[str], k: int
    ) -> tuple[list[list[tuple[str, float]]], list[list[tuple[str, float]]]]:
        depth = max(k, self.fusion.depth)
        return self.dense(texts, depth), self.lexical.search(texts, depth)

    def fuse(
        self, dense: Sequence[tuple[str, float]], lexical: Sequence[tuple[str, float]], k: int
    ) -> list[tuple[str, float]]:
        if self.fusion.method == "rrf":
            return rrf_fusion(dense, lexical, self.fusion.rrf_k)[:k]
        return convex_fusion(dense, lexical, self.fusion.weight)[:k]

    def __call__(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        if k < 1:
            raise AisleError(f"k must be >= 1, got {k}")
        dense, lexical = self.candidates(texts, k)
        return [self.fuse(d, lx, k) for d, lx in zip(dense, lexical, strict=True)]
