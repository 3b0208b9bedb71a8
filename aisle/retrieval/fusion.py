"""Fusing a dense and a lexical ranking: pure functions over (product_id, score) lists.

Convex combination (Bruch et al., "An analysis of fusion functions for hybrid retrieval",
TOIS 2023): each side's candidate scores are min-max normalised to [0, 1] within the query,
a product missing from one side scores 0 there, and

    fused(d) = w * dense_norm(d) + (1 - w) * lexical_norm(d)

Reciprocal rank fusion (Cormack et al., SIGIR 2009), ranks counted from 1:

    rrf(d) = sum over the sides that retrieved d of 1 / (k + rank_side(d))

Ties are broken by the better dense rank, then the better lexical rank, then product id, so
results are deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from aisle.retrieval.config import FusionConfig

Ranked = Sequence[tuple[str, float]]


def minmax(scores: Sequence[float]) -> list[float]:
    """Scale to [0, 1]; equal scores (or one candidate) all map to 1."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi - lo <= 0.0:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def _ranks(ranked: Ranked) -> dict[str, int]:
    out: dict[str, int] = {}
    for rank, (pid, _) in enumerate(ranked, start=1):
        out.setdefault(pid, rank)
    return out


def _order(fused: dict[str, float], d: dict[str, int], lx: dict[str, int],
           k: int | None = None) -> list[tuple[str, float]]:
    """``fused`` best first, ties broken by dense rank ``d``, lexical rank ``lx``, then id;
    only the first ``k`` when given. The full tie-breaking key is built only for products
    that can be in the top k (a score at least the k-th best): a query fuses ~400
    candidates for 10 results."""
    if k is not None and k <= 0:
        return []
    pool: list[str] = list(fused)
    if k is not None and k < len(pool):
        cut = heapq.nlargest(k, fused.values())[-1]
        # Ties at the cut stay in; so does a NaN score (never below anything), which the full
        # sort would also place among the first k.
        pool = [p for p, score in fused.items() if not score < cut]
    big = len(d) + len(lx) + 1
    keys = sorted(pool, key=lambda p: (-fused[p], d.get(p, big), lx.get(p, big), p))
    return [(p, fused[p]) for p in keys[:k]]


def convex_fusion(dense: Ranked, lexical: Ranked, weight: float,
                  k: int | None = None) -> list[tuple[str, float]]:
    """``weight`` on the dense side, ``1 - weight`` on the lexical side (0 <= weight <= 1);
    the first ``k`` only when given."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be in [0, 1], got {weight}")
    fused: dict[str, float] = {}
    ranks = []
    for side, w in ((dense, weight), (lexical, 1.0 - weight)):
        first = _ranks(side)
        ranks.append(first)
        norm = minmax([s for _, s in side])
        for i, (pid, _) in enumerate(side):
            if first[pid] == i + 1:  # a repeated id counts once, at its first position
                fused[pid] = fused.get(pid, 0.0) + w * norm[i]
    return _order(fused, ranks[0], ranks[1], k)


def rrf_fusion(dense: Ranked, lexical: Ranked, k: float = 60.0,
               top: int | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion with constant ``k`` (60 in the original paper); the first
    ``top`` only when given."""
    if k < 0:
        raise ValueError(f"RRF constant k must be >= 0, got {k}")
    fused: dict[str, float] = {}
    ranks = [_ranks(dense), _ranks(lexical)]
    for side in ranks:
        for pid, rank in side.items():
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (k + rank)
    return _order(fused, ranks[0], ranks[1], top)


def fuse(dense: Ranked, lexical: Ranked, k: int, config: FusionConfig) -> list[tuple[str, float]]:
    """The top ``k`` of the two rankings fused as ``config`` says (convex or RRF)."""
    if config.method == "rrf":
        return rrf_fusion(dense, lexical, config.rrf_k, k)
    return convex_fusion(dense, lexical, config.weight, k)
