from __future__ import annotations

import json

import numpy as np

from aisle.rerank.tune import best_weight, weight_grid
from aisle.retrieval.rerank import RerankConfig


def test_weight_grid_is_json_where_a_metric_is_undefined() -> None:
    # Grade 1 is relevant to nDCG, but the top grade (2) is judged for no query of the split:
    # recall@100 and MRR@10 are undefined. They are null, not NaN (which is not JSON).
    first = {"q1": [("a", 0.9), ("b", 0.8)], "q2": [("c", 0.7), ("d", 0.6)]}
    cross = {"q1": np.array([0.1, 0.9]), "q2": np.array([0.5, 0.2])}
    qrels = {"q1": {"b": 1.0}, "q2": {"c": 1.0}}
    rows = weight_grid(first, cross, qrels, 2.0, (0.0, 0.9), RerankConfig(depth=2))
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    assert rows[0]["recall@100"] is None and rows[0]["mrr@10"] is None
    # The cross-encoder puts b first for q1 and keeps c first for q2: weight 0.9 wins.
    assert rows[1]["ndcg@10"] > rows[0]["ndcg@10"]
    assert best_weight(rows) == 0.9
