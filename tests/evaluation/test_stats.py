from __future__ import annotations

import numpy as np
import pytest

from aisle.evaluation.stats import bootstrap_ci, randomization_test, wins_ties_losses


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_queries() -> None:
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.5, 0.2, 50), rng.normal(0.5, 0.2, 5000)
    small, large = bootstrap_ci(few, 2000), bootstrap_ci(many, 2000)
    assert small.low < few.mean() < small.high
    assert large.low < many.mean() < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    # The normal approximation's half width, 1.96 sd / sqrt(n), for comparison.
    assert (large.high - large.low) / 2 == pytest.approx(1.96 * 0.2 / np.sqrt(5000), rel=0.15)


def test_the_bootstrap_is_repeatable_for_a_seed() -> None:
    values = np.arange(20, dtype=float)
    assert bootstrap_ci(values, 500, seed=3) == bootstrap_ci(values, 500, seed=3)


def test_randomization_test_tells_a_real_difference_from_noise() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 400)
    better = base + 0.05 + rng.normal(0, 0.05, 400)
    noise = base + rng.normal(0, 0.05, 400)
    assert randomization_test(base, better, 2000) < 0.001
    assert randomization_test(base, noise, 2000) > 0.01
    # Identical runs: every flip ties the observed difference of zero.
    assert randomization_test(base, base, 999) == 1.0


def test_an_exact_randomization_test_on_a_tiny_case() -> None:
    # Differences (+1, +1): of the 4 sign patterns, 2 reach |mean| >= 1, so p tends to 0.5.
    p = randomization_test([0.0, 0.0], [1.0, 1.0], 20000)
    assert p == pytest.approx(0.5, abs=0.02)


def test_wins_ties_losses_and_bad_input() -> None:
    assert wins_ties_losses([0.5, 0.5, 0.5], [0.6, 0.5, 0.4 - 1e-12]) == (1, 1, 1)
    with pytest.raises(ValueError, match="one value per query"):
        randomization_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    # No resample gave numpy's IndexError; no trial gave p = 1, a test of nothing.
    with pytest.raises(ValueError, match="resamples must be at least 1, got 0"):
        bootstrap_ci([0.1, 0.2], resamples=0)
    with pytest.raises(ValueError, match="trials must be at least 1, got 0"):
        randomization_test([0.1, 0.2], [0.3, 0.4], trials=0)
