"""``Searcher.search(queries, k) -> (scores, rows)``: one interface for exact and approximate."""

from __future__ import annotations

from typing import Protocol

import faiss
import numpy as np

from aisle.errors import AisleError


class Searcher(Protocol):
    @property
    def dim(self) -> int: ...

    @property
    def count(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` ``(Q, D)`` float32 -> scores ``(Q, k)``, catalog rows ``(Q, k)``.

        Rows are -1 (score -inf) where fewer than k products exist.
        """
        ...


def check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise AisleError(f"query vectors have shape {q.shape}; this index needs (n, {dim})")
    return q


class FaissSearcher:
    """Any FAISS index whose ``search`` returns inner products (flat IP for exact search)."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise AisleError(f"k must be >= 1, got {k}")
        q = check_queries(queries, self.dim)
        scores, rows = self.index.search(q, k)
        return scores, rows
