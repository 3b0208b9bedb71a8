"""Greedy semantic de-duplication of a ranked list (pure numpy)."""

from __future__ import annotations

import numpy as np


def greedy_dedup(embeddings: np.ndarray, threshold: float, k: int) -> list[int]:
    """Positions of at most ``k`` rows of ``embeddings`` (ranked best first, unit rows) kept
    by the greedy rule: a row is dropped when its cosine to any already kept row is
    ``>= threshold``. Kept positions keep their rank order."""
    if k <= 0 or len(embeddings) == 0:
        return []
    kept = np.empty((k, embeddings.shape[1]), dtype=embeddings.dtype)
    positions: list[int] = []
    for i, row in enumerate(embeddings):
        n = len(positions)
        # Elementwise products, not a BLAS call: at (k, D) a BLAS thread pool's wake-up
        # costs milliseconds on a busy machine, the arithmetic microseconds.
        if n and float((kept[:n] * row).sum(axis=1).max()) >= threshold:
            continue
        kept[n] = row
        positions.append(i)
        if len(positions) == k:
            break
    return positions
