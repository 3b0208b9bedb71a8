"""Significance for per-query metrics, as pure functions over arrays (one value per query).

- ``bootstrap_ci``: the percentile bootstrap interval of a mean (Efron and Tibshirani, 1993);
  applied to paired differences it is the interval of the difference between two runs.
- ``randomization_test``: Fisher's paired randomisation test, two-sided: under the null
  hypothesis either run could have produced either score of a query, so each query's
  difference flips sign at random. Smucker, Allan and Carterette (CIKM 2007) found it the test
  to use for IR metrics. The p-value counts the observed assignment (Phipson and Smyth, 2010),
  so it is never 0.

Both draw from ``numpy.random.default_rng(seed)``: the same inputs and seed give the same
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

RESAMPLES = 10_000
CONFIDENCE = 0.95
# Per-query differences smaller than this are ties (metric values are sums of float terms).
TIE = 1e-9
# Resamples are drawn in chunks of this many, to bound memory at ~RESAMPLE_CHUNK x queries.
RESAMPLE_CHUNK = 1_000


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def _as_values(values: NDArray[np.float64] | list[float]) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("need a non-empty 1-d array of per-query values")
    return array


def _check_count(name: str, value: int) -> None:
    # 0 would give numpy's IndexError (bootstrap) or a p-value of 1 that tested nothing.
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def bootstrap_ci(
    values: NDArray[np.float64] | list[float],
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``mean(values)``: resample the queries with
    replacement ``resamples`` times, take the central ``confidence`` share of the means."""
    array = _as_values(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    _check_count("resamples", resamples)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, RESAMPLE_CHUNK):
        n = min(RESAMPLE_CHUNK, resamples - start)
        picks = rng.integers(0, array.size, size=(n, array.size))  # (n, queries)
        means[start : start + n] = array[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def randomization_test(
    baseline: NDArray[np.float64] | list[float],
    other: NDArray[np.float64] | list[float],
    trials: int = RESAMPLES,
    seed: int = 0,
) -> float:
    """Two-sided p-value that ``other`` and ``baseline`` (paired by query) have the same mean."""
    a, b = _as_values(baseline), _as_values(other)
    if a.shape != b.shape:
        raise ValueError(f"paired runs need one value per query each, got {a.size} and {b.size}")
    _check_count("trials", trials)
    diff = b - a
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, trials, RESAMPLE_CHUNK):
        n = min(RESAMPLE_CHUNK, trials - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, diff.size))  # (n, queries)
        at_least += int((np.abs((signs * diff).mean(axis=1)) >= observed - TIE).sum())
    return (at_least + 1) / (trials + 1)


def wins_ties_losses(
    baseline: NDArray[np.float64] | list[float], other: NDArray[np.float64] | list[float]
) -> tuple[int, int, int]:
    """Queries where ``other`` scores above, level with, and below ``baseline``."""
    diff = _as_values(other) - _as_values(baseline)
    wins, losses = int((diff > TIE).sum()), int((diff < -TIE).sum())
    return wins, diff.size - wins - losses, losses
