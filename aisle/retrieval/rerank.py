"""The re-ranking stage: a cross-encoder reads each query with its first-stage candidates.

A cross-encoder (``aisle rerank train``) scores the first ``depth`` products of the first stage
(dense, lexical or hybrid) against the query, reading both texts together. Its order is fused
with the first stage's by weighted reciprocal rank,

    score(d) = w / (rrf_k + rank_cross(d)) + (1 - w) / (rrf_k + rank_first(d))

and products past ``depth`` keep their first-stage order below them, scored
``(1 - w) / (rrf_k + rank_first(d))``: every re-ranked product scores at least
``1 / (rrf_k + depth)``, above any of them, so scores fall with rank as TREC tools expect.
Fusing instead of replacing keeps what the first stage knows (BM25's exact terms, the towers'
training) where the cross-encoder is unsure; the weight is chosen on dev when it is trained.

The scores depend only on the top ``depth`` of the first stage, never on ``k``: a search for
10 products returns the head of a search for 100.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aisle.errors import AisleError
from aisle.retrieval.fusion import Ranked
from aisle.towers.text import product_text

# The product fields the cross-encoder reads, in training and at query time alike: what every
# index stores beside its vectors (titles, and brand and category as filter fields).
RERANK_FIELDS: tuple[str, ...] = ("title", "brand", "category")


@dataclass(frozen=True)
class RerankConfig:
    """How the re-ranking stage runs; ``aisle rerank train`` stores the one chosen on dev."""

    # First-stage products the cross-encoder scores per query (0 = no re-ranking).
    depth: int = 50
    # The cross-encoder's share of the weighted reciprocal-rank fusion, in [0, 1): 0.5 is
    # plain RRF; 1 is excluded because it would leave the products past depth unscored.
    weight: float = 0.5
    rrf_k: float = 60.0

    def __post_init__(self) -> None:
        if self.depth < 0:
            raise AisleError(f"rerank depth must be >= 0 (0 = off), got {self.depth}")
        if not 0.0 <= self.weight < 1.0:
            raise AisleError(f"rerank weight must be in [0, 1), got {self.weight}")
        if not self.rrf_k > 0:
            raise AisleError(f"rerank rrf_k must be > 0, got {self.rrf_k}")


class CrossScorer(Protocol):
    """``score(pairs) -> (n,)`` relevance logits of (query, product text) pairs."""

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


def combine(first: Ranked, cross: Sequence[float] | np.ndarray, k: int, config: RerankConfig
            ) -> list[tuple[str, float]]:
    """The top ``k`` of ``first`` (a first-stage ranking, best first) once its first
    ``len(cross)`` products (the cross-encoder's scores, aligned with them) are re-ranked.

    Ties in the cross-encoder's scores keep the first stage's order; so do equal fused scores.
    """
    head = len(cross)
    if head > len(first):
        raise ValueError(f"{head} cross-encoder scores for {len(first)} candidates")
    if k <= 0:
        return []
    w, c = config.weight, config.rrf_k
    # Stable: equal scores keep first-stage order.
    cross_rank = np.empty(head, dtype=np.int64)
    cross_rank[np.argsort(-np.asarray(cross, dtype=np.float64), kind="stable")] = np.arange(
        1, head + 1)
    fused = [w / (c + int(cr)) + (1.0 - w) / (c + i + 1) for i, cr in enumerate(cross_rank)]
    order = sorted(range(head), key=lambda i: (-fused[i], i))
    out = [(first[i][0], fused[i]) for i in order[:k]]
    for i in range(head, min(len(first), k)):
        out.append((first[i][0], (1.0 - w) / (c + i + 1)))
    return out


def rerank_text(record: dict[str, Any]) -> str:
    """What the cross-encoder reads of one product (``RERANK_FIELDS`` only)."""
    return product_text(record, RERANK_FIELDS)


def rerank_pairs(query: str, product_ids: Iterable[str], text_of: Mapping[str, str]
                 ) -> list[tuple[str, str]]:
    """What the cross-encoder scores for one query: (``query`` as searched, ``text_of`` the
    product) for each of ``product_ids`` (the head of its first-stage ranking), in their order.
    Training, the query path and the benchmark all pair this way."""
    return [(query, text_of[p]) for p in product_ids]


class RerankStage(Protocol):
    """What the query path needs of a loaded cross-encoder (``aisle.rerank.model.Reranker``)."""

    @property
    def scorer(self) -> CrossScorer: ...

    @property
    def config(self) -> RerankConfig: ...

    @property
    def turn(self) -> threading.Lock:
        """Held while one query's pairs are scored: the scorer already spreads a query over
        every core it has, so queries take turns, and a query's wait for its turn is spent
        of its re-ranking deadline."""
        ...
