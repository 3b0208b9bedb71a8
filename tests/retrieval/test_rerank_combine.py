"""The re-ranking stage's fusion (retrieval/rerank.py): pure, so tested on made-up rankings."""

from __future__ import annotations

import random

import pytest

from aisle.errors import AisleError
from aisle.retrieval.rerank import RerankConfig, combine


def first_stage(n: int) -> list[tuple[str, float]]:
    return [(f"p{i}", 1.0 - i / 100) for i in range(n)]


def test_weight_zero_keeps_the_first_stage_order() -> None:
    first = first_stage(30)
    cross = [random.Random(0).random() for _ in range(20)]
    out = combine(first, cross, 30, RerankConfig(depth=20, weight=0.0))
    assert [p for p, _ in out] == [p for p, _ in first]


def test_a_strong_cross_encoder_reorders_only_the_head() -> None:
    first = first_stage(15)
    cross = list(range(10))  # the cross-encoder likes p9 best, p0 least
    out = combine(first, cross, 15, RerankConfig(depth=10, weight=0.9))
    ids = [p for p, _ in out]
    assert ids[0] == "p9"
    assert set(ids[:10]) == {f"p{i}" for i in range(10)}
    assert ids[10:] == [f"p{i}" for i in range(10, 15)]


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 0.99])
def test_scores_fall_with_rank_and_a_short_search_is_the_head_of_a_long_one(
        weight: float) -> None:
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(1, 80)
        first = first_stage(n)
        depth = rng.randint(1, n)
        cross = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(depth)]  # ties
        config = RerankConfig(depth=depth, weight=weight)
        long = combine(first, cross, 100, config)
        scores = [s for _, s in long]
        assert scores == sorted(scores, reverse=True)
        assert len({p for p, _ in long}) == len(long) == n
        for k in (1, 5, 10):
            assert combine(first, cross, k, config) == long[:k]


def test_ties_in_the_cross_encoder_keep_the_first_stage_order() -> None:
    out = combine(first_stage(5), [0.3] * 5, 5, RerankConfig(depth=5, weight=0.7))
    assert [p for p, _ in out] == [f"p{i}" for i in range(5)]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="scores for"):
        combine(first_stage(2), [1.0, 2.0, 3.0], 5, RerankConfig())
    assert combine(first_stage(3), [1.0], 0, RerankConfig()) == []
    for bad in ({"weight": 1.0}, {"weight": -0.1}, {"depth": -1}, {"rrf_k": 0.0}):
        with pytest.raises(AisleError):
            RerankConfig(**bad)  # type: ignore[arg-type]
