"""Ranking metrics on cases worked out by hand.

log2 values used below: log2(2) = 1, log2(3) = 1.5849625, log2(4) = 2, log2(5) = 2.3219281.
"""

from __future__ import annotations

import math

import pytest

from aisle.evaluation.metrics import (
    condensed_ndcg_at_k,
    dcg_at_k,
    judged_at_k,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

GRADES = {"a": 2.0, "b": 1.0, "c": 0.0}


def test_dcg_linear_gain():
    # [3, 2, 1]: 3/1 + 2/log2(3) + 1/2 = 3 + 1.2618595 + 0.5 = 4.7618595
    assert dcg_at_k([3.0, 2.0, 1.0], 10) == pytest.approx(4.7618595)
    # k truncates: 3/1 + 2/log2(3) = 4.2618595
    assert dcg_at_k([3.0, 2.0, 1.0], 2) == pytest.approx(4.2618595)
    assert dcg_at_k([], 5) == 0.0


def test_ndcg_worked_example_with_unjudged_id():
    # ranking [c, a, x]; x is unjudged -> gain 0.
    # DCG  = 0/1 + 2/log2(3) + 0/2 = 1.2618595
    # IDCG = 2/1 + 1/log2(3) + 0/2 = 2.6309298   (b counts though it was never retrieved)
    # nDCG = 1.2618595 / 2.6309298 = 0.4796249
    assert ndcg_at_k(["c", "a", "x"], GRADES, 10) == pytest.approx(0.4796249)


def test_ndcg_perfect_and_ideal_uses_all_judged():
    assert ndcg_at_k(["a", "b", "c"], GRADES, 10) == pytest.approx(1.0)
    # Only a retrieved: DCG = 2, IDCG = 2.6309298 -> 0.7601881 (missing b costs).
    assert ndcg_at_k(["a"], GRADES, 10) == pytest.approx(2.0 / 2.6309298)


def test_ndcg_k_truncation():
    # k = 1, ranking [b, a]: DCG@1 = 1/1 = 1; IDCG@1 = 2/1 = 2 -> 0.5 (a at rank 2 ignored).
    assert ndcg_at_k(["b", "a"], GRADES, 1) == pytest.approx(0.5)
    # k = 2: DCG = 1 + 2/log2(3) = 2.2618595; IDCG@2 = 2 + 1/log2(3) = 2.6309298 -> 0.8597186
    assert ndcg_at_k(["b", "a"], GRADES, 2) == pytest.approx(0.8597186)


def test_ndcg_all_zero_grades_is_none():
    assert ndcg_at_k(["c", "d"], {"c": 0.0, "d": 0.0}, 10) is None
    assert ndcg_at_k(["c"], {}, 10) is None


def test_duplicates_count_once():
    # ranking [a, a, b]: the second a takes gain 0.
    # DCG = 2/1 + 0/log2(3) + 1/2 = 2.5; IDCG = 2.6309298 -> 0.9502344
    assert ndcg_at_k(["a", "a", "b"], GRADES, 10) == pytest.approx(2.5 / 2.6309298)
    # recall: a is one relevant product found once -> 1/1, not 2/1.
    assert recall_at_k(["a", "a"], GRADES, 10, relevant_grade=2.0) == 1.0


def test_recall_top_grade_among_fractional_grades():
    grades = {"p": 2.0, "q": 1.67, "r": 2.0, "s": 1.3333333, "t": 2.0}
    # relevant (grade 2): p, r, t. Top 3 of [q, p, s, r, t] holds only p -> 1/3.
    assert recall_at_k(["q", "p", "s", "r", "t"], grades, 3, relevant_grade=2.0) == pytest.approx(
        1 / 3
    )
    # top 4 holds p and r -> 2/3; 1.67 never counts as relevant.
    assert recall_at_k(["q", "p", "s", "r", "t"], grades, 4, relevant_grade=2.0) == pytest.approx(
        2 / 3
    )
    # a grade stored as 1.9999999999 (float noise) still counts
    assert recall_at_k(["z"], {"z": 2.0 - 1e-12}, 1, relevant_grade=2.0) == 1.0


def test_recall_no_relevant_is_none():
    assert recall_at_k(["a"], {"a": 1.67, "b": 0.0}, 10, relevant_grade=2.0) is None


def test_a_grade_of_zero_is_never_relevant():
    # A split (or a dataset) whose judgments are all grade 0 has a top grade of 0: recall and
    # MRR counted every judged product relevant, so a catalog judged irrelevant scored well.
    assert recall_at_k(["a", "b"], {"a": 0.0, "b": 0.0}, 10, relevant_grade=0.0) is None
    assert mrr_at_k(["a"], {"a": 0.0}, 10, relevant_grade=0.0) is None
    # a grade just above 0 with a threshold of 0 still counts
    assert recall_at_k(["a"], {"a": 0.01, "b": 0.0}, 10, relevant_grade=0.0) == 1.0


def test_mrr():
    grades = {"a": 0.0, "b": 1.67, "c": 2.0}
    # first grade-2 product c at rank 3 -> 1/3
    assert mrr_at_k(["a", "b", "c"], grades, 10, relevant_grade=2.0) == pytest.approx(1 / 3)
    # c beyond k = 2 -> 0
    assert mrr_at_k(["a", "b", "c"], grades, 2, relevant_grade=2.0) == 0.0
    # nothing retrieved -> 0
    assert mrr_at_k([], grades, 10, relevant_grade=2.0) == 0.0
    # no grade-2 product judged -> None
    assert mrr_at_k(["b"], {"b": 1.67}, 10, relevant_grade=2.0) is None


def test_nothing_retrieved():
    assert ndcg_at_k([], GRADES, 10) == 0.0
    assert recall_at_k([], GRADES, 10, relevant_grade=2.0) == 0.0


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_raises(k):
    with pytest.raises(ValueError, match="k must be"):
        dcg_at_k([1.0], k)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(["a"], GRADES, k)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(["a"], GRADES, k, relevant_grade=2.0)
    with pytest.raises(ValueError, match="k must be"):
        mrr_at_k(["a"], GRADES, k, relevant_grade=2.0)


def test_mean_metrics_skips_none_and_counts():
    rows = [
        {"ndcg@10": 0.5, "recall@100": None},
        {"ndcg@10": None, "recall@100": 1.0},
        {"ndcg@10": 1.0, "recall@100": 0.0},
    ]
    out = mean_metrics(rows)
    # ndcg over 2 queries: (0.5 + 1.0) / 2 = 0.75; recall over 2: (1.0 + 0.0) / 2 = 0.5
    assert out == {
        "ndcg@10": pytest.approx(0.75),
        "ndcg@10_queries": 2.0,
        "recall@100": pytest.approx(0.5),
        "recall@100_queries": 2.0,
    }


def test_mean_metrics_all_none_is_nan():
    out = mean_metrics([{"mrr@10": None}])
    assert math.isnan(out["mrr@10"])
    assert out["mrr@10_queries"] == 0.0
    assert mean_metrics([]) == {}


def test_condensed_ndcg_drops_unjudged_products():
    # GRADES: a=2, b=1, c=0. Ranked x, c, y, a (x, y unjudged): plain nDCG counts x and y as
    # irrelevant, DCG 2/log2(5) = 0.8614 over the ideal 2 + 1/log2(3) = 2.6309 -> 0.3274;
    # condensed, the list is c, a: DCG 0 + 2/log2(3) = 1.2619 -> 0.4796.
    assert ndcg_at_k(["x", "c", "y", "a"], GRADES, 10) == pytest.approx(0.8613531 / 2.6309298)
    assert condensed_ndcg_at_k(["x", "c", "y", "a"], GRADES, 10) == pytest.approx(0.4796249)
    assert condensed_ndcg_at_k(["x", "y"], GRADES, 10) == 0.0  # nothing judged retrieved
    assert condensed_ndcg_at_k(["x"], {"c": 0.0}, 10) is None


def test_judged_share_of_the_top_slots():
    assert judged_at_k(["x", "c", "y", "a"], GRADES, 4) == 0.5
    assert judged_at_k(["a", "a", "x"], GRADES, 4) == 0.25  # a repeat and an empty slot: no
    assert judged_at_k([], GRADES, 10) == 0.0
