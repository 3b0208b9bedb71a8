"""Training pairs for the cross-encoder: judged pairs with graded targets, plus negatives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aisle.rerank.config import RerankTrainConfig


@dataclass(frozen=True)
class Example:
    query: str
    product: str
    target: float  # in [0, 1]: grade / top grade for judged pairs, 0 for negatives


def training_examples(
    queries: Mapping[str, str],
    judged: Mapping[str, Mapping[str, float]],
    top_grade: float,
    first_stage: Mapping[str, Sequence[str]],
    text_of: Mapping[str, str],
    catalog: Sequence[str],
    cfg: RerankTrainConfig,
) -> list[Example]:
    """Per query of ``judged`` (``queries`` gives its text as searched): every judged product
    with target grade / ``top_grade``; ``cfg.unjudged_negatives`` unjudged products of its
    ``first_stage`` ranks [negatives_from, negatives_to); ``cfg.random_negatives`` unjudged
    products of ``catalog``. Seeded by ``cfg.seed``; queries in sorted order."""
    if top_grade <= 0:
        raise ValueError(f"the top grade must be > 0, got {top_grade}")
    rng = np.random.default_rng(cfg.seed)
    out: list[Example] = []
    for qid in sorted(judged):
        grades, query = judged[qid], queries[qid]
        for pid, grade in sorted(grades.items()):
            out.append(Example(query, text_of[pid], min(max(grade / top_grade, 0.0), 1.0)))
        ranked = first_stage.get(qid, ())[cfg.negatives_from : cfg.negatives_to]
        pool = [p for p in ranked if p not in grades]
        take = min(cfg.unjudged_negatives, len(pool))
        negatives = [pool[i] for i in sorted(rng.choice(len(pool), take, replace=False))]
        drawn = 0
        for _ in range(cfg.random_negatives * 4):  # a draw that hits a judged product retries
            if drawn == cfg.random_negatives or not catalog:
                break
            pid = catalog[int(rng.integers(len(catalog)))]
            if pid not in grades and pid not in negatives:
                negatives.append(pid)
                drawn += 1
        out.extend(Example(query, text_of[p], 0.0) for p in negatives)
    return out
