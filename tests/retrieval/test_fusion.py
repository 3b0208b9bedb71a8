"""Fusion functions on rankings worked out by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest

from aisle.errors import AisleError
from aisle.retrieval.config import FusionConfig
from aisle.retrieval.fusion import convex_fusion, convex_fusion_arrays, fuse, minmax, rrf_fusion

DENSE = [("a", 0.75), ("b", 0.5), ("c", 0.25)]  # dyadic: exact arithmetic, exact ties
LEXICAL = [("c", 12.0), ("d", 8.0), ("a", 4.0)]


def test_minmax() -> None:
    assert minmax([0.75, 0.5, 0.25]) == [1.0, 0.5, 0.0]
    assert minmax([3.0]) == [1.0]  # a lone candidate is the best there is
    assert minmax([2.0, 2.0]) == [1.0, 1.0]
    assert minmax([]) == []
    # bounds from the head only; deeper scores below them are 0
    assert minmax([0.75, 0.5, 0.25, 0.0], within=3) == [1.0, 0.5, 0.0, 0.0]
    assert minmax([2.0, 2.0, 1.0], within=2) == [1.0, 1.0, 0.0]
    assert minmax([2.0, 2.0, 2.0], within=2) == [1.0, 1.0, 0.0]  # past the head, by position


def test_convex_with_ties_broken_by_dense_rank() -> None:
    # dense norm: a=1, b=.5, c=0; lexical norm: c=1, d=.5, a=0
    # w=.5: a=.5, b=.25, c=.5, d=.25 -> a (dense rank 1) before c (3); b (2) before d (none)
    fused = convex_fusion(DENSE, LEXICAL, 0.5)
    assert [p for p, _ in fused] == ["a", "c", "b", "d"]
    assert [s for _, s in fused] == pytest.approx([0.5, 0.5, 0.25, 0.25])


def test_convex_weight_moves_the_order() -> None:
    # w=.8: a=.8, b=.4, c=.2, d=.1
    fused = convex_fusion(DENSE, LEXICAL, 0.8)
    assert fused == [("a", pytest.approx(0.8)), ("b", pytest.approx(0.4)),
                     ("c", pytest.approx(0.2)), ("d", pytest.approx(0.1))]
    assert [p for p, _ in convex_fusion(DENSE, LEXICAL, 0.0)] == ["c", "d", "a", "b"]


def test_a_product_found_by_one_side_only_scores_zero_on_the_other() -> None:
    fused = dict(convex_fusion([("x", 1.0), ("y", 0.0)], [("z", 5.0)], 0.5))
    assert fused == {"x": 0.5, "y": 0.0, "z": 0.5}


def test_rrf() -> None:
    # a: 1/61 + 1/63, c: 1/63 + 1/61 (tie, a has the better dense rank), b: 1/62, d: 1/62
    fused = rrf_fusion(DENSE, LEXICAL, k=60)
    assert [p for p, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_empty_lexical_side_for_an_all_stop_word_query() -> None:
    assert [p for p, _ in convex_fusion(DENSE, [], 0.5)] == ["a", "b", "c"]
    assert [p for p, _ in rrf_fusion(DENSE, [])] == ["a", "b", "c"]
    assert convex_fusion([], [], 0.5) == []


def test_a_repeated_id_counts_once() -> None:
    fused = dict(rrf_fusion([("a", 1.0), ("a", 0.5)], [], k=0))
    assert fused == {"a": 1.0}


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="weight"):
        convex_fusion(DENSE, LEXICAL, 1.5)
    with pytest.raises(ValueError, match="RRF"):
        rrf_fusion(DENSE, LEXICAL, k=-1)


@pytest.mark.parametrize("method", ["convex", "rrf"])
def test_the_top_k_is_the_head_of_the_full_order_ties_at_the_cut_included(method: str) -> None:
    """fuse() builds the tie-breaking order only for products that can make the top k; on
    rankings with many equal scores (coarse integers) it must equal the full order's head."""
    rng = random.Random(5)
    config = FusionConfig(method=method, weight=0.5)  # type: ignore[arg-type]
    for _ in range(200):
        ids = [f"p{i}" for i in range(rng.randint(0, 60))]
        dense = [(p, float(rng.randint(0, 4))) for p in rng.sample(ids, rng.randint(0, len(ids)))]
        lexical = [(p, float(rng.randint(0, 3))) for p in rng.sample(ids, rng.randint(0, len(ids)))]
        dense.sort(key=lambda x: -x[1])
        lexical.sort(key=lambda x: -x[1])
        full = (rrf_fusion(dense, lexical, 60.0) if method == "rrf"
                else convex_fusion(dense, lexical, 0.5))
        for k in (1, 3, 10, 100):
            assert fuse(dense, lexical, k, config) == full[:k]


@pytest.mark.parametrize("method", ["convex", "rrf"])
def test_asking_for_more_results_than_the_depth_keeps_the_head(method: str) -> None:
    """A request past the fusion depth takes each side's list deeper; products past a side's
    depth count as missing there, so the first results are those of a shorter request."""
    rng = random.Random(11)
    config = FusionConfig(method=method, weight=0.6, dense_depth=50,  # type: ignore[arg-type]
                          lexical_depth=80)
    ids = [f"p{i}" for i in range(400)]
    for _ in range(50):
        dense = sorted(((p, rng.random()) for p in rng.sample(ids, 150)), key=lambda x: -x[1])
        lexical = sorted(((p, rng.uniform(0, 20)) for p in rng.sample(ids, 150)),
                         key=lambda x: -x[1])
        head = fuse(dense[:50], lexical[:80], 10, config)
        assert fuse(dense, lexical, 150, config)[:10] == head
    # Ties (BM25's are common), and a head of equal scores: still the shorter request's head.
    two = FusionConfig(method=method, weight=0.5, dense_depth=2,  # type: ignore[arg-type]
                       lexical_depth=3)
    for dense, lexical in (([("a", .9), ("b", .8), ("P", .7)], [("Q", 5.), ("P", 5.), ("c", 1.)]),
                           ([("a", .5), ("b", .5), ("X", .5)], [("X", 9.), ("c", 3.), ("d", 1.)])):
        for k in (1, 2, 3):
            shorter = fuse(dense[:2], lexical, k, two)
            assert fuse(dense, lexical, 3, two)[:k] == shorter, (dense, k)


@pytest.mark.parametrize("bad", [{"weight": 1.5}, {"weight": float("nan")}, {"rrf_k": -5.0},
                                 {"rrf_k": float("inf")}, {"dense_depth": 0}])
def test_a_fusion_config_out_of_range_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(AisleError, match="fusion"):
        FusionConfig(**bad)  # type: ignore[arg-type]


def test_a_top_zero_is_empty() -> None:
    assert fuse(DENSE, LEXICAL, 0, FusionConfig()) == []
    assert fuse(DENSE, LEXICAL, 0, FusionConfig(method="rrf")) == []


def _sides(rng: random.Random) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """Two random rankings over a small id space (so they overlap), their scores drawn from a
    few values (so they tie), in descending score order as each side's search returns them;
    either side may be empty or hold one product."""
    ids = list(range(rng.choice([1, 5, 40, 400])))

    def side() -> list[tuple[int, float]]:
        picked = rng.sample(ids, rng.randint(0, min(len(ids), 60)))
        values = [round(rng.uniform(-2, 30), 1) for _ in range(rng.choice([1, 3, 50]))]
        return sorted(((i, rng.choice(values)) for i in picked), key=lambda x: -x[1])

    return side(), side()


def _arrays(side: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([i for i, _ in side], dtype=np.int64),
            np.array([s for _, s in side], dtype=np.float64))


def test_array_fusion_is_the_list_fusion_to_the_bit() -> None:
    """Over random rankings with overlaps, tied scores, equal bounds, depths shorter and
    longer than the lists and every k: the same products, the same order, the same floats
    (compared with ==, not a tolerance)."""
    rng = random.Random(7)
    for _ in range(3000):
        dense, lexical = _sides(rng)
        weight = rng.choice([0.0, -0.0, 0.35, 0.5, 1.0, rng.random()])
        k = rng.choice([None, 0, 1, 10, 200])
        depths = (rng.choice([None, 1, 5, 200]), rng.choice([None, 1, 5, 200]))
        named = ([(f"p{i:04d}", s) for i, s in dense], [(f"p{i:04d}", s) for i, s in lexical])
        expected = convex_fusion(*named, weight, k, depths)
        fused = convex_fusion_arrays(_arrays(dense), _arrays(lexical), weight, k, depths)
        assert fused is not None
        ids, scores = fused
        got = [(f"p{i:04d}", s) for i, s in zip(ids.tolist(), scores.tolist(), strict=True)]
        assert got == expected, (dense, lexical, weight, k, depths)
        # == takes -0.0 for 0.0: compare the floats' bytes
        assert scores.tobytes() == np.array([s for _, s in expected]).tobytes()


def test_array_fusion_leaves_to_the_lists_what_it_cannot_match() -> None:
    ids, scores = np.array([3, 4, 3]), np.array([0.9, 0.5, 0.1])
    assert convex_fusion_arrays((ids, scores), (np.array([4]), np.array([2.0])), 0.5) is None
    assert convex_fusion_arrays((np.array([4]), np.array([2.0])), (ids, scores), 0.5) is None
    nan = np.array([np.nan, 0.5])
    assert convex_fusion_arrays((np.array([1, 2]), nan), (np.array([4]), np.array([2.0])),
                                0.5) is None
    with pytest.raises(ValueError, match="weight"):
        convex_fusion_arrays((ids[:2], scores[:2]), (ids[:1], scores[:1]), 1.5)
