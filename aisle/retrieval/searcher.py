"""``Searcher.search(queries, k) -> (scores, rows)``: one interface for exact and approximate.

Search-time knobs (HNSW efSearch, IVF nprobe, IVF-PQ re-rank depth) travel with each call as
FAISS ``SearchParameters`` objects and never touch the shared index, so service threads that
search the same index with different knobs do not race.

A filtered search (``Selection``: the FAISS ids a filter allows) runs the filter inside FAISS,
before the top k, through an id selector in those parameters:

- a flat index, or a selection of at most ``EXACT_ROWS`` products, is searched exactly: the
  flat vectors every kind but IVF-Flat keeps (HNSW's storage, IVF-PQ's re-rank copy) are
  scanned with the selector, which skips every product it does not allow;
- a larger selection searches the approximate index with the selector, its candidate list
  (efSearch) or lists scanned (nprobe) widened by the share of the catalog the filter keeps,
  so that the graph or the lists still hold k allowed products; a query that still gets fewer
  than k (of at least k allowed) is searched exactly.

So a filtered search returns k products whenever k products match.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import faiss
import numpy as np

from aisle.errors import AisleError, ManifestMismatch
from aisle.retrieval.config import IndexConfig

# faiss's generated type stubs lack the SearchParameters* classes' keyword constructors.
_faiss: Any = faiss

# A selection of at most this many products is searched exactly (a scan of the selected
# vectors costs less than the widened approximate search would).
EXACT_ROWS = 20_000
# The widest HNSW candidate list a filtered search asks for.
MAX_FILTERED_EF = 4_096


@dataclass(frozen=True)
class Selection:
    """The FAISS ids a filter allows: a bitmap over ids 0..size-1, as FAISS reads one (bit
    ``i % 8`` of byte ``i // 8``), made once with the selection (never lazily: a FAISS
    selector points into it, so it must never be replaced)."""

    allowed: np.ndarray  # bool, one per FAISS id
    count: int = field(init=False)
    bits: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "count", int(self.allowed.sum()))
        object.__setattr__(self, "bits", np.packbits(self.allowed, bitorder="little"))

    @property
    def nbytes(self) -> int:
        return int(self.allowed.nbytes + self.bits.nbytes)

    def selector(self) -> Any:
        """A FAISS selector over this selection; it reads ``bits``, which outlives it."""
        return _faiss.IDSelectorBitmap(len(self.bits), faiss.swig_ptr(self.bits))


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
        self, queries: np.ndarray, k: int, params: SearchParams | None = None,
        selection: Selection | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` ``(Q, D)`` float32 -> scores ``(Q, k)``, catalog rows ``(Q, k)``;
        ``selection``: only the ids it allows.

        Rows are -1 (score -inf) where fewer than k (allowed) products exist.
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


def flat_codes(index: faiss.Index) -> Any | None:
    """The flat code array an index keeps (a ``faiss.IndexFlatCodes``): a flat index itself,
    HNSW's storage or IVF-PQ's re-rank (float32, fp16 or sq8 codes), under an id map too; None
    for IVF-Flat, which keeps its vectors in its lists."""
    index = _unwrap(index)
    if isinstance(index, faiss.IndexHNSW):
        index = faiss.downcast_index(index.storage)
    elif isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.refine_index)
    return index if isinstance(index, faiss.IndexFlatCodes) else None


def stored_ids(index: faiss.Index) -> np.ndarray | None:
    """The FAISS id of every vector ``index`` holds, in no particular order (int64); None
    where the ids are its row numbers 0..ntotal-1, as a flat or HNSW index without an id map
    (the only ids those can hold). An id map's ids, or those an IVF index keeps in its
    lists: built with ids, or updated in place, they can be any."""
    outer = faiss.downcast_index(index)
    if isinstance(outer, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.vector_to_array(outer.id_map).astype(np.int64)
    ivf = faiss.try_extract_index_ivf(outer)
    if ivf is None:
        return None
    lists: Any = ivf.invlists  # the stubs lack release_ids
    parts = [np.empty(0, dtype=np.int64)]
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if size:
            pointer = lists.get_ids(number)
            parts.append(faiss.rev_swig_ptr(pointer, size).astype(np.int64))  # a copy
            lists.release_ids(number, pointer)
    return np.concatenate(parts)


def faiss_parameters(
    index: faiss.Index, params: SearchParams, k: int, selector: Any = None
) -> faiss.SearchParameters | None:
    """The FAISS per-call parameters of ``params`` for this index type (None for flat without
    a ``selector``); ``selector`` limits the search to the ids it allows."""
    inner = _unwrap(index)
    sel = {} if selector is None else {"sel": selector}
    # HNSW and IVF refuse plain SearchParameters: with a selector and no knob given, the
    # index's own knob stands in.
    if isinstance(inner, faiss.IndexHNSW) and (params.ef_search is not None or sel):
        ef = inner.hnsw.efSearch if params.ef_search is None else params.ef_search
        return _faiss.SearchParametersHNSW(efSearch=max(ef, k), **sel)
    if isinstance(inner, faiss.IndexIVF) and (params.nprobe is not None or sel):
        nprobe = inner.nprobe if params.nprobe is None else params.nprobe
        return _faiss.SearchParametersIVF(nprobe=min(nprobe, inner.nlist), **sel)
    if isinstance(inner, faiss.IndexRefine):
        nested = selector
        outer = faiss.downcast_index(index)
        if selector is not None and isinstance(outer, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            # An id map translates the selector of the parameters it is given, not the one
            # nested in them for the refine's base, which would read stored positions as ids.
            nested = _faiss.IDSelectorTranslated(outer.id_map, selector)
        base = faiss_parameters(inner.base_index, params, k, nested)
        if params.rerank is None and base is None:
            return None  # the depth stored in the index (set at build time)
        # IndexRefine asks its base for k * k_factor candidates and re-ranks them exactly.
        k_factor = max(params.rerank, k) / k if params.rerank is not None else inner.k_factor
        refine = _faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=base)
        # Keep the base's parameters and the selectors they read alive with this one.
        refine.referenced_objects = [base, nested, selector]
        return refine
    return None if selector is None else _faiss.SearchParameters(**sel)


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
        self, queries: np.ndarray, k: int, params: SearchParams | None = None,
        selection: Selection | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise AisleError(f"k must be >= 1, got {k}")
        q = check_queries(queries, self.dim)
        knobs = params.over(self.defaults) if params is not None else self.defaults
        if selection is not None:
            return self._filtered(q, k, knobs, selection)
        scores, rows = self.index.search(q, k, params=faiss_parameters(self.index, knobs, k))
        return scores, rows

    @functools.cached_property
    def _exact(self) -> tuple[faiss.Index, np.ndarray | None] | None:
        """The flat codes this index keeps of every vector (float32, or IVF-PQ's fp16 or sq8
        re-rank codes; None for IVF-Flat, which keeps its vectors in its lists) and, under an
        id map, each stored row's FAISS id."""
        outer = faiss.downcast_index(self.index)
        ids = None
        if isinstance(outer, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            ids = faiss.vector_to_array(outer.id_map).astype(np.int64)
        codes = flat_codes(outer)
        return (codes, ids) if codes is not None else None

    def _exact_search(self, q: np.ndarray, k: int, selection: Selection
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The top k of the selection by the codes the index re-ranks with: its flat codes
        scanned with the selector (exact for float32; fp16 and sq8 codes score as the
        index's own re-rank does), or every IVF list probed (IVF-Flat holds the full vectors
        in its lists)."""
        exact = self._exact
        if exact is None:
            nlist = int(faiss.extract_index_ivf(self.index).nlist)
            every = faiss_parameters(self.index, SearchParams(nprobe=nlist), k,
                                     selection.selector())
            return self.index.search(q, k, params=every)
        flat, ids = exact
        if ids is None:
            return flat.search(q, k, params=faiss_parameters(flat, SearchParams(), k,
                                                             selection.selector()))
        # Stored row i holds FAISS id ids[i]: select rows, then name them by id.
        rows = Selection(_take(selection.allowed, ids))
        scores, found = flat.search(q, k, params=faiss_parameters(flat, SearchParams(), k,
                                                                  rows.selector()))
        return scores, np.where(found >= 0, ids[np.maximum(found, 0)], -1)

    def _filtered(self, q: np.ndarray, k: int, knobs: SearchParams, selection: Selection
                  ) -> tuple[np.ndarray, np.ndarray]:
        if selection.count == 0:
            return (np.full((len(q), k), -np.inf, np.float32),
                    np.full((len(q), k), -1, np.int64))
        if self._exact is not None and (selection.count <= EXACT_ROWS
                                        or index_kind(self.index) == "flat"):
            return self._exact_search(q, k, selection)
        share = selection.count / max(self.count, 1)
        ef = math.ceil(max(knobs.ef_search or k, k) / share)
        if self._exact is not None and ef > MAX_FILTERED_EF and index_kind(self.index) == "hnsw":
            # The graph would need a longer candidate list than it is given: it would return
            # too few allowed products, and the exact scan would run after it anyway.
            return self._exact_search(q, k, selection)
        widened = SearchParams(
            ef_search=min(MAX_FILTERED_EF, ef),
            nprobe=None if knobs.nprobe is None else math.ceil(knobs.nprobe / share),
            rerank=knobs.rerank,
        )
        scores, rows = self.index.search(
            q, k, params=faiss_parameters(self.index, widened, k, selection.selector()))
        short = np.flatnonzero((rows >= 0).sum(axis=1) < min(k, selection.count))
        if len(short):  # the approximate search found too few allowed products
            scores[short], rows[short] = self._exact_search(q[short], k, selection)
        return scores, rows


def _take(allowed: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``allowed[ids]``, False where an id is beyond ``allowed``."""
    inside = ids < len(allowed)
    out = np.zeros(len(ids), dtype=bool)
    out[inside] = allowed[ids[inside]]
    return out


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
        (faiss.IndexIVFPQFastScan, "ivf_pq"),  # pq_nbits=4
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
