"""Greedy semantic de-duplication of a ranked list (pure numpy)."""

from __future__ import annotations

import numpy as np


def greedy_dedup(
    embeddings: np.ndarray, threshold: float, k: int, order: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> list[int]:
    """Positions of at most ``k`` rows kept by the greedy rule, best first: a row is dropped
    when its cosine to any already kept row is ``>= threshold``. The rows are ``embeddings``
    (unit rows) in rank order, or ``embeddings[order]`` when ``order`` is given (positions are
    then into ``order``); the walk stops at the k-th kept row, so a long candidate list costs
    only what it takes to fill k (no gathering, no second pass). With ``groups`` (one id per
    row of ``embeddings``), a row is compared only with kept rows of its own group: rows of
    different groups are never duplicates, however close."""
    n_rows = len(embeddings) if order is None else len(order)
    if k <= 0 or n_rows == 0:
        return []
    kept = np.empty((min(k, n_rows), embeddings.shape[1]), dtype=embeddings.dtype)
    kept_groups = np.empty(min(k, n_rows), dtype=np.int64)
    positions: list[int] = []
    for i in range(n_rows):
        index = i if order is None else order[i]
        row = embeddings[index]
        group = 0 if groups is None else int(groups[index])
        n = len(positions)
        # Elementwise products, not a BLAS call: at (k, D) a BLAS thread pool's wake-up
        # costs milliseconds on a busy machine, the arithmetic microseconds.
        if n:
            cosines = (kept[:n] * row).sum(axis=1)
            if groups is not None:
                cosines = cosines[kept_groups[:n] == group]
            if len(cosines) and float(cosines.max()) >= threshold:
                continue
        kept[n] = row
        kept_groups[n] = group
        positions.append(i)
        if len(positions) == k:
            break
    return positions
