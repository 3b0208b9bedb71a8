"""Choosing the re-ranking stage's fusion weight on judged queries: pure functions over
first-stage runs and cross-encoder scores (computed once, fused at every weight)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from aisle.evaluation.evaluator import score_run
from aisle.evaluation.run import rounded
from aisle.retrieval.rerank import RerankConfig, combine

Ranked = Sequence[tuple[str, float]]


def fused_run(first: Mapping[str, Ranked], cross: Mapping[str, np.ndarray], k: int,
              config: RerankConfig) -> dict[str, list[str]]:
    """query_id -> the top ``k`` product ids of ``first`` re-ranked with ``cross``'s scores
    (aligned with the head of each first-stage ranking)."""
    return {qid: [p for p, _ in combine(ranked, cross[qid][: config.depth], k, config)]
            for qid, ranked in first.items()}


def weight_grid(
    first: Mapping[str, Ranked],
    cross: Mapping[str, np.ndarray],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
    weights: Sequence[float],
    base: RerankConfig,
    k: int = 100,
) -> list[dict[str, Any]]:
    """Metrics of each weight (0: the first stage's own order), one row per weight."""
    rows = []
    for w in weights:
        config = replace(base, weight=float(w))
        metrics = score_run(fused_run(first, cross, k, config), qrels, top_grade)
        rows.append({"weight": float(w), **{m: rounded(v) for m, v in metrics.items()}})
    return rows


def best_weight(rows: Sequence[Mapping[str, Any]]) -> float:
    """The weight of the best nDCG@10; a tie goes to the smaller weight (less change)."""
    best = max(rows, key=lambda r: (r["ndcg@10"], -r["weight"]))
    return float(best["weight"])
