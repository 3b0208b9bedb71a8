"""Fusing a dense and a lexical ranking: pure functions over (product_id, score) lists.

Convex combination (Bruch et al., "An analysis of fusion functions for hybrid retrieval",
TOIS 2023): each side's candidate scores are min-max normalised to [0, 1] within the query,
a product missing from one side scores 0 there, and

    fused(d) = w * dense_norm(d) + (1 - w) * lexical_norm(d)

Reciprocal rank fusion (Cormack et al., SIGIR 2009), ranks counted from 1:

    rrf(d) = sum over the sides that retrieved d of 1 / (k + rank_side(d))

Ties are broken by the better dense rank, then the better lexical rank, then product id, so
results are deterministic.

Each side counts to its depth (``FusionConfig``'s ``dense_depth`` and ``lexical_depth``): a
longer list (a request for more results than the depth) normalises by the bounds of its first
``depth`` scores, and a product past them scores 0 on that side (RRF: nothing), as if it were
missing. So asking for more results never reorders the first ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from aisle.retrieval.config import FusionConfig

Ranked = Sequence[tuple[str, float]]
Depths = tuple[int | None, int | None]  # (dense, lexical); None: the whole list


def minmax(scores: Sequence[float], within: int | None = None) -> list[float]:
    """Scale the first ``within`` scores (all when None) to [0, 1] by their bounds; the rest
    are 0. Equal bounds (or one candidate) map to 1."""
    if not scores:
        return []
    head = scores if within is None else scores[:within]
    lo, hi = min(head), max(head)
    scaled = [1.0] * len(head) if hi - lo <= 0.0 else [(s - lo) / (hi - lo) for s in head]
    return scaled + [0.0] * (len(scores) - len(head))


def _ranks(ranked: Ranked) -> dict[str, int]:
    out: dict[str, int] = {}
    for rank, (pid, _) in enumerate(ranked, start=1):
        out.setdefault(pid, rank)
    return out


def _order(fused: dict[str, float], d: dict[str, int], lx: dict[str, int],
           k: int | None = None, depths: Depths = (None, None)) -> list[tuple[str, float]]:
    """``fused`` best first, ties broken by dense rank ``d``, lexical rank ``lx`` (each
    within its side's depth first: a rank past it counts as none), then id; only the first
    ``k`` when given. The full tie-breaking key is built only for products that can be in
    the top k (a score at least the k-th best): a query fuses ~400 candidates for 10
    results."""
    if k is not None and k <= 0:
        return []
    pool: list[str] = list(fused)
    if k is not None and k < len(pool):
        cut = heapq.nlargest(k, fused.values())[-1]
        # Ties at the cut stay in; so does a NaN score (never below anything), which the full
        # sort would also place among the first k.
        pool = [p for p, score in fused.items() if not score < cut]
    big = len(d) + len(lx) + 1

    def within(ranks: dict[str, int], p: str, depth: int | None) -> int:
        rank = ranks.get(p, big)
        return rank if depth is None or rank <= depth else big

    keys = sorted(pool, key=lambda p: (-fused[p], within(d, p, depths[0]),
                                       within(lx, p, depths[1]), d.get(p, big),
                                       lx.get(p, big), p))
    return [(p, fused[p]) for p in keys[:k]]


def convex_fusion(dense: Ranked, lexical: Ranked, weight: float,
                  k: int | None = None, depths: Depths = (None, None)
                  ) -> list[tuple[str, float]]:
    """``weight`` on the dense side, ``1 - weight`` on the lexical side (0 <= weight <= 1);
    the first ``k`` only when given; each side normalised by its first ``depths`` scores."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be in [0, 1], got {weight}")
    fused: dict[str, float] = {}
    ranks = []
    for side, w, depth in ((dense, weight, depths[0]), (lexical, 1.0 - weight, depths[1])):
        first = _ranks(side)
        ranks.append(first)
        norm = minmax([s for _, s in side], depth)
        for i, (pid, _) in enumerate(side):
            if first[pid] == i + 1:  # a repeated id counts once, at its first position
                fused[pid] = fused.get(pid, 0.0) + w * norm[i]
    return _order(fused, ranks[0], ranks[1], k, depths)


Side = tuple[np.ndarray, np.ndarray]  # one side's ranking: (integer ids, float64 scores)


def convex_fusion_arrays(dense: Side, lexical: Side, weight: float, k: int | None = None,
                         depths: Depths = (None, None)) -> Side | None:
    """``convex_fusion`` over integer ids, in numpy: the same products, order and scores, to
    the bit (each step is the same float64 operation, in the same order). A search fuses ~400
    candidates per query, and the list form spends most of a hybrid query's Python time.
    None where that cannot be promised (an id repeated on one side, a score that is not
    finite): the caller then runs ``convex_fusion``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be in [0, 1], got {weight}")
    (d_ids, d_scores), (l_ids, l_scores) = dense, lexical
    if not (np.isfinite(d_scores).all() and np.isfinite(l_scores).all()):
        return None
    # The products of both sides, each once (np.unique's steps, without its overhead: this
    # runs per query): a stable sort puts a product's dense entry before its lexical one.
    both = np.concatenate((d_ids, l_ids))
    order = np.argsort(both, kind="stable")
    sorted_ids = both[order]
    first = np.empty(len(both), dtype=bool)
    first[:1] = True
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
    from_dense = order < len(d_ids)
    if (~first[1:] & (from_dense[1:] == from_dense[:-1])).any():
        return None  # an id repeated on one side: the list form counts it once
    ids = sorted_ids[first]
    at = np.empty(len(both), dtype=np.intp)
    at[order] = np.cumsum(first) - 1
    d_at, l_at = at[: len(d_ids)], at[len(d_ids):]
    fused = np.zeros(len(ids))
    fused[d_at] = 0.0 + weight * _minmax(d_scores, depths[0])  # as the lists add: -0.0 is 0.0
    fused[l_at] = fused[l_at] + (1.0 - weight) * _minmax(l_scores, depths[1])
    big = len(d_ids) + len(l_ids) + 1
    d_rank = np.full(len(ids), big)
    d_rank[d_at] = np.arange(1, len(d_at) + 1)
    l_rank = np.full(len(ids), big)
    l_rank[l_at] = np.arange(1, len(l_at) + 1)
    # ``_order``'s key, its last item first; no two products tie on both ranks, so the id
    # that ends ``_order``'s key never decides. A side no longer than its depth has each
    # rank within it: the key is then (-fused, dense rank, lexical rank).
    keys = [l_rank, d_rank]
    if not all(depth is None or n <= depth
               for depth, n in zip(depths, (len(d_ids), len(l_ids)), strict=True)):
        keys += [np.where(rank <= depth, rank, big) if depth is not None else rank
                 for rank, depth in ((l_rank, depths[1]), (d_rank, depths[0]))]
    order = np.lexsort((*keys, -fused))
    if k is not None:
        order = order[: max(k, 0)]
    return ids[order], fused[order]


def _minmax(scores: np.ndarray, within: int | None) -> np.ndarray:
    """``minmax`` over an array: the same float64 values."""
    out = np.zeros(len(scores))
    head = scores if within is None else scores[:within]
    if not len(head):
        return out
    lo, hi = head.min(), head.max()
    span = hi - lo
    out[: len(head)] = 1.0 if span <= 0.0 else (head - lo) / span
    return out


def rrf_fusion(dense: Ranked, lexical: Ranked, k: float = 60.0,
               top: int | None = None, depths: Depths = (None, None)
               ) -> list[tuple[str, float]]:
    """Reciprocal rank fusion with constant ``k`` (60 in the original paper); the first
    ``top`` only when given; a side's ranks past its ``depths`` add nothing."""
    if not k >= 0:
        raise ValueError(f"RRF constant k must be >= 0, got {k}")
    fused: dict[str, float] = {}
    ranks = [_ranks(dense), _ranks(lexical)]
    for side, depth in zip(ranks, depths, strict=True):
        for pid, rank in side.items():
            share = 1.0 / (k + rank) if depth is None or rank <= depth else 0.0
            fused[pid] = fused.get(pid, 0.0) + share
    return _order(fused, ranks[0], ranks[1], top, depths)


def fuse(dense: Ranked, lexical: Ranked, k: int, config: FusionConfig) -> list[tuple[str, float]]:
    """The top ``k`` of the two rankings fused as ``config`` says (convex or RRF)."""
    depths = (config.dense_depth, config.lexical_depth)
    if config.method == "rrf":
        return rrf_fusion(dense, lexical, config.rrf_k, k, depths)
    return convex_fusion(dense, lexical, config.weight, k, depths)
