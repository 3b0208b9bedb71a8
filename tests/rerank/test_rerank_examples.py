"""Training pairs for the cross-encoder (rerank/examples.py) and the pairs it scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aisle.rerank.config import RerankTrainConfig
from aisle.rerank.examples import training_examples
from aisle.rerank.train import cross_scores
from aisle.retrieval.rerank import rerank_pairs


def test_judged_pairs_get_graded_targets_and_negatives_skip_the_top_and_judged() -> None:
    catalog = [f"p{i}" for i in range(100)]
    text_of = {p: f"title {p}" for p in catalog}
    judged = {"q1": {"p0": 2.0, "p3": 1.0, "p12": 0.0}}
    first = {"q1": catalog[:50]}  # p0..p49
    cfg = RerankTrainConfig(unjudged_negatives=5, negatives_from=10, negatives_to=20,
                            random_negatives=2, seed=3)
    out = training_examples({"q1": "a drill"}, judged, 2.0, first, text_of, catalog, cfg)
    targets = {e.product: e.target for e in out}
    assert targets["title p0"] == 1.0 and targets["title p3"] == 0.5
    assert targets["title p12"] == 0.0
    negatives = [e.product for e in out[3:]]
    assert len(negatives) == 7 and len(set(negatives)) == 7
    lexical = [p for p in negatives[:5]]
    assert all(10 <= int(p.split("p")[-1]) < 20 for p in lexical)
    assert "title p12" not in lexical  # judged products are never negatives
    assert all(e.target == 0.0 and e.query == "a drill" for e in out[3:])
    again = training_examples({"q1": "a drill"}, judged, 2.0, first, text_of, catalog, cfg)
    assert again == out  # seeded


def test_a_short_first_stage_gives_what_it_has() -> None:
    catalog = ["a", "b", "c"]
    cfg = RerankTrainConfig(unjudged_negatives=3, negatives_from=1, negatives_to=10,
                            random_negatives=0)
    out = training_examples({"q": "x"}, {"q": {"a": 1.0}}, 1.0, {"q": ["a", "b"]},
                            {p: p for p in catalog}, catalog, cfg)
    assert [(e.product, e.target) for e in out] == [("a", 1.0), ("b", 0.0)]


def test_the_scored_pairs_are_the_query_with_each_head_product_in_order() -> None:
    text_of = {"a": "title a", "b": "title b", "c": "title c"}
    assert rerank_pairs("drill", ["c", "a"], text_of) == [("drill", "title c"),
                                                          ("drill", "title a")]
    assert rerank_pairs("drill", [], text_of) == []


def test_dev_scoring_reads_each_query_head_to_depth() -> None:
    seen: list[list[tuple[str, str]]] = []

    class Recorder:
        def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
            seen.append(list(pairs))
            return np.arange(len(pairs), dtype=np.float32)

    first = {"q1": [["b", 0.9], ["a", 0.5], ["c", 0.1]], "q2": [["c", 0.3]]}
    out = cross_scores(Recorder(), {"q1": "drill", "q2": "paint"}, first,
                       {p: p.upper() for p in "abc"}, 2)
    assert seen == [[("drill", "B"), ("drill", "A")], [("paint", "C")]]
    assert [list(out[q]) for q in ("q1", "q2")] == [[0.0, 1.0], [0.0]]
