"""Training pairs for the cross-encoder (rerank/examples.py)."""

from __future__ import annotations

from aisle.rerank.config import RerankTrainConfig
from aisle.rerank.examples import training_examples


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
