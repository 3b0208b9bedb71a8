"""``Searcher.search(queries, k) -> (scores, rows)``: one interface for exact and approximate.

Search-time knobs (HNSW efSearch, IVF nprobe, IVF-PQ re-rank depth) travel with each call as
FAISS ``SearchParameters`` objects and never touch the shared index, so service threads that
search the same index with different knobs do not race.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import faiss
import numpy as np

from aisle.errors import AisleError, ManifestMismatch
from aisle.retrieval.config import IndexConfig

# faiss's generated type stubs lack the SearchParameters* classes' keyword constructors.
_faiss: Any = faiss


@dataclass(frozen=True)
class SearchParams:
    """Per-call knobs; None keeps the searcher's default. Knobs an index lacks are ignored."""

    ef_search: int | None = None  # HNSW candidate list (raised to k when smaller)
    nprobe: int | None = None  # IVF lists scanned
    rerank: int | None = None  # IVF-PQ candidates re-ranked exactly (raised to k)

    def __post_init__(self) -> None:
        for name in ("ef_search", "nprobe", "rerank"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise AisleError(f"search parameter {name} must be >= 1, got {value}")

    def over(self, defaults: SearchParams) -> SearchParams:
        """These knobs, falling back to ``defaults`` where unset."""
        return replace(
            defaults,
            **{k: v for k, v in vars(self).items() if v is not None},
        )


class Searcher(Protocol):
    @property
    def dim(self) -> int: ...

    @property
    def count(self) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, params: SearchParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` ``(Q, D)`` float32 -> scores ``(Q, k)``, catalog rows ``(Q, k)``.

        Rows are -1 (score -inf) where fewer than k products exist.
        """
        ...


def check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise AisleError(f"query vectors have shape {q.shape}; this index needs (n, {dim})")
    return q


def _unwrap(index: faiss.Index) -> faiss.Index:
    """The index under an id map (the id map passes search parameters through)."""
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.downcast_index(index.index)
    return index


def faiss_parameters(
    index: faiss.Index, params: SearchParams, k: int
) -> faiss.SearchParameters | None:
    """The FAISS per-call parameters of ``params`` for this index type (None for flat)."""
    inner = _unwrap(index)
    if isinstance(inner, faiss.IndexHNSW) and params.ef_search is not None:
        return _faiss.SearchParametersHNSW(efSearch=max(params.ef_search, k))
    if isinstance(inner, faiss.IndexIVF) and params.nprobe is not None:
        return _faiss.SearchParametersIVF(nprobe=min(params.nprobe, inner.nlist))
    if isinstance(inner, faiss.IndexRefine):
        base = faiss_parameters(inner.base_index, params, k)
        if params.rerank is None and base is None:
            return None  # the depth stored in the index (set at build time)
        # IndexRefine asks its base for k * k_factor candidates and re-ranks them exactly.
        k_factor = max(params.rerank, k) / k if params.rerank is not None else inner.k_factor
        refine = _faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=base)
        refine.referenced_objects = [base]  # keep the base's parameters alive with this one
        return refine
    return None


class FaissSearcher:
    """Any FAISS index whose ``search`` returns inner products; ``defaults`` are its knobs."""

    def __init__(self, index: faiss.Index, defaults: SearchParams | None = None) -> None:
        self.index = index
        self.defaults = defaults or SearchParams()

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def search(
        self, queries: np.ndarray, k: int, params: SearchParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise AisleError(f"k must be >= 1, got {k}")
        q = check_queries(queries, self.dim)
        knobs = params.over(self.defaults) if params is not None else self.defaults
        scores, rows = self.index.search(q, k, params=faiss_parameters(self.index, knobs, k))
        return scores, rows


def index_kind(index: faiss.Index) -> str:
    """Which ``IndexConfig.kind`` a (loaded) FAISS index is."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        inner = faiss.downcast_index(inner.index)
    if isinstance(inner, faiss.IndexRefine):
        inner = faiss.downcast_index(inner.base_index)
    kinds = (
        (faiss.IndexFlat, "flat"),
        (faiss.IndexHNSW, "hnsw"),
        (faiss.IndexIVFFlat, "ivf_flat"),
        (faiss.IndexIVFPQ, "ivf_pq"),
    )
    for cls, kind in kinds:
        if isinstance(inner, cls):
            return kind
    raise AisleError(f"unsupported faiss index type {type(inner).__name__}")


def search_params(config: IndexConfig) -> SearchParams:
    """The config's default search knobs."""
    return SearchParams(ef_search=config.ef_search, nprobe=config.nprobe, rerank=config.rerank)


def searcher_for(index: faiss.Index, config: IndexConfig) -> FaissSearcher:
    """A searcher over a built or loaded index with ``config``'s default knobs.

    Refuses an index of another kind than ``config.kind`` (a manifest that lies).
    """
    kind = index_kind(index)
    if kind != config.kind:
        raise ManifestMismatch(
            f"the faiss index is {kind} but its config says {config.kind}; rebuild the index"
        )
    return FaissSearcher(index, search_params(config))
