from __future__ import annotations

import numpy as np

from aisle.autocomplete.dedup import greedy_dedup


def unit(degrees: float) -> list[float]:
    r = np.radians(degrees)
    return [float(np.cos(r)), float(np.sin(r))]


def test_drops_a_candidate_too_close_to_a_kept_one() -> None:
    e = np.array([[1, 0, 0], [0.95, np.sqrt(1 - 0.95**2), 0], [0, 0, 1]], dtype=np.float32)
    assert greedy_dedup(e, threshold=0.9, k=10) == [0, 2]
    assert greedy_dedup(e, threshold=0.96, k=10) == [0, 1, 2]
    assert greedy_dedup(e, threshold=0.9, k=1) == [0]


def test_threshold_is_inclusive() -> None:
    e = np.array([[1.0, 0.0], [0.5, np.sqrt(0.75)]], dtype=np.float64)  # cosine 0.5 exactly
    assert greedy_dedup(e, threshold=0.5, k=5) == [0]
    assert greedy_dedup(e, threshold=0.5000001, k=5) == [0, 1]


def test_greedy_compares_only_with_kept_rows() -> None:
    # a-b and b-c are 20 degrees apart (cos .94), a-c 40 (cos .77): b goes, so c stays.
    e = np.array([unit(0), unit(20), unit(40)], dtype=np.float32)
    assert greedy_dedup(e, threshold=0.9, k=3) == [0, 2]


def test_empty_inputs() -> None:
    assert greedy_dedup(np.zeros((0, 4), dtype=np.float32), 0.9, 3) == []
    assert greedy_dedup(np.eye(3, dtype=np.float32), 0.9, 0) == []


def test_an_order_walks_the_rows_in_that_order_without_gathering_them() -> None:
    rng = np.random.default_rng(0)
    e = rng.normal(size=(40, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    order = rng.permutation(40)[:25]
    for threshold, k in ((0.3, 5), (0.5, 40), (0.99, 3)):
        assert greedy_dedup(e, threshold, k, order) == greedy_dedup(e[order], threshold, k)
    # k far above the candidates allocates for the candidates, not for k.
    assert len(greedy_dedup(e, 2.0, 10**9, order)) == 25


def test_rows_of_different_groups_are_never_duplicates() -> None:
    # Rows 0, 1 and 2 are one vector; 0 and 2 share a group ("24 inch"), 1 does not ("36").
    e = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    groups = np.array([0, 1, 0, 2])
    assert greedy_dedup(e, 0.9, 10, groups=groups) == [0, 1, 3]
    assert greedy_dedup(e, 0.9, 10, np.array([2, 1, 0]), groups) == [0, 1]
    assert greedy_dedup(e, 0.9, 10) == [0, 3]  # without groups, as before
