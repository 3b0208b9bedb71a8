"""A FaissSearcher built without default knobs (the Python API's ``FaissSearcher(index)``)
searches with a filter on every index kind: the index's own knobs stand in."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from aisle.retrieval.searcher import FaissSearcher, Selection


def _ivf_flat(x: np.ndarray) -> faiss.Index:
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], 8,
                               faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    index.nprobe = 8
    return index


def _ivf_pq(x: np.ndarray) -> faiss.Index:
    index = faiss.index_factory(x.shape[1], "IVF8,PQ4x4,Refine(Flat)", faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    faiss.extract_index_ivf(index).nprobe = 8
    return index


def _hnsw(x: np.ndarray) -> faiss.Index:
    index = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    return index


@pytest.mark.parametrize("build", [_ivf_flat, _ivf_pq, _hnsw])
def test_filtered_search_without_default_knobs(build, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    searcher = FaissSearcher(build(x))  # no defaults: every knob None
    # a large selection takes the approximate path (not the exact scan of small ones)
    monkeypatch.setattr("aisle.retrieval.searcher.EXACT_ROWS", 10)
    allowed = np.zeros(len(x), dtype=bool)
    allowed[::2] = True
    _, rows = searcher.search(x[:3], 5, selection=Selection(allowed))
    assert (rows >= 0).all() and allowed[rows].all()
    truth = np.argsort(-(x[:3] @ x[allowed].T), axis=1)[:, :5]
    assert (rows[:, 0] == np.flatnonzero(allowed)[truth[:, 0]]).all()
