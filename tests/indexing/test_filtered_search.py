"""Filtered search: every kind of index applies the filter inside FAISS, before the top k.

On a flat index the filtered top k is the exact filtered top k; the approximate kinds return
only allowed products, k of them whenever k are allowed, and nearly the exact ones. BM25 and
the whole query path (dense, lexical, hybrid) over a built index with stored fields agree.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

import aisle.retrieval.searcher as searcher_module
from aisle.indexing.ann import build_faiss_index
from aisle.retrieval.config import IndexConfig
from aisle.retrieval.filters import parse_filters
from aisle.retrieval.retriever import open_retriever
from aisle.retrieval.searcher import Selection, searcher_for
from aisle.retrieval.store import load_index
from aisle.towers.model import TwoTowerModel

K = 10


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """4,000 unit vectors in 32 clusters (real embeddings cluster too)."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(32, 48))
    x = centres[rng.integers(32, size=4000)] + 0.6 * rng.normal(size=(4000, 48))
    x = x.astype(np.float32)
    faiss.normalize_L2(x)
    return x


@pytest.fixture(scope="module")
def queries(vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(4)
    q = vectors[rng.integers(len(vectors), size=40)] + 0.3 * rng.normal(size=(40, 48))
    q = q.astype(np.float32)
    faiss.normalize_L2(q)
    return q


def exact(vectors: np.ndarray, queries: np.ndarray, allowed: np.ndarray, k: int) -> list[set[int]]:
    rows = np.flatnonzero(allowed)
    scores = queries @ vectors[rows].T
    return [set(rows[np.argsort(-s, kind="stable")[:k]].tolist()) for s in scores]


def selections(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.random(n) < share for share in (0.5, 0.1, 0.01)] + [
        np.isin(np.arange(n), [7, 99, 3001]),  # fewer than k allowed
        np.zeros(n, dtype=bool),  # none
    ]


def test_flat_filtered_top_k_is_the_exact_filtered_top_k(
    vectors: np.ndarray, queries: np.ndarray
) -> None:
    searcher = searcher_for(build_faiss_index(IndexConfig(kind="flat"), vectors),
                            IndexConfig(kind="flat"))
    for allowed in selections(len(vectors)):
        scores, rows = searcher.search(queries, K, selection=Selection(allowed))
        want = exact(vectors, queries, allowed, K)
        for got_rows, got_scores, expected in zip(rows, scores, want, strict=True):
            found = [r for r in got_rows.tolist() if r >= 0]
            assert set(found) == expected
            assert len(found) == min(K, int(allowed.sum()))
            assert np.all(np.diff(got_scores[: len(found)]) <= 1e-6)  # best first


@pytest.mark.parametrize(("kind", "codes", "nbits"),
                         [("hnsw", "float32", 8), ("ivf_flat", "float32", 8),
                          ("ivf_pq", "float32", 8), ("ivf_pq", "sq8", 8),
                          ("ivf_pq", "sq8", 4)])  # 4 bits: fast-scan codes
@pytest.mark.parametrize("exact_rows", [0, 20_000])  # the approximate path, and the exact one
def test_approximate_kinds_return_k_allowed_products_close_to_exact(
    kind: str, codes: str, nbits: int, exact_rows: int, vectors: np.ndarray,
    queries: np.ndarray, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(searcher_module, "EXACT_ROWS", exact_rows)
    config = IndexConfig(kind=kind, nlist=16, pq_m=12, pq_nbits=nbits,  # type: ignore[arg-type]
                         ef_search=16, nprobe=2, rerank_codes=codes)  # type: ignore[arg-type]
    searcher = searcher_for(build_faiss_index(config, vectors), config)
    for allowed in selections(len(vectors)):
        _, rows = searcher.search(queries, K, selection=Selection(allowed))
        want = exact(vectors, queries, allowed, K)
        recall = []
        for got, expected in zip(rows.tolist(), want, strict=True):
            found = [r for r in got if r >= 0]
            assert all(allowed[r] for r in found)
            assert len(found) == min(K, int(allowed.sum())), (kind, int(allowed.sum()))
            recall.append(len(set(found) & expected) / max(len(expected), 1))
        if allowed.any():
            assert np.mean(recall) >= 0.9, (kind, int(allowed.sum()), np.mean(recall))


@pytest.mark.parametrize("codes", ["fp16", "sq8"])
def test_a_small_selection_is_ranked_by_the_compact_re_rank_codes_of_every_selected_product(
    codes: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    """IVF-PQ with fp16 or sq8 re-rank codes: a selection of at most ``EXACT_ROWS`` products
    is scored by those codes over every selected product (what the index's re-rank reads), not
    by a search that probes every list and re-ranks only the PQ codes' best."""
    config = IndexConfig(kind="ivf_pq", nlist=16, pq_m=6, pq_nbits=4, nprobe=2,
                         rerank_codes=codes)  # type: ignore[arg-type]
    index = build_faiss_index(config, vectors)
    searcher = searcher_for(index, config)
    stored = faiss.downcast_index(faiss.downcast_index(index).refine_index)
    decoded = stored.reconstruct_n(0, stored.ntotal)  # the vectors as the codes hold them
    allowed = np.random.default_rng(6).random(len(vectors)) < 0.3
    _, rows = searcher.search(queries, K, selection=Selection(allowed))
    for got, expected in zip(rows.tolist(), exact(decoded, queries, allowed, K), strict=True):
        assert set(got) == expected


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf_pq"])
def test_ids_under_an_id_map_are_filtered_by_id(
    kind: str, vectors: np.ndarray, queries: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index updated in place keeps its FAISS ids: rows are not ids there, on the
    approximate path too (IVF-PQ's re-rank passes the selector to its base)."""
    monkeypatch.setattr(searcher_module, "EXACT_ROWS", 0)
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 5
    config = IndexConfig(kind=kind, nlist=16, pq_m=12, ef_search=16,  # type: ignore[arg-type]
                         nprobe=2)
    index = build_faiss_index(config, vectors, ids)
    allowed = np.zeros(int(ids.max()) + 1, dtype=bool)
    allowed[ids[::2]] = True
    _, got = searcher_for(index, config).search(queries, K, selection=Selection(allowed))
    by_row = np.zeros(len(vectors), dtype=bool)
    by_row[::2] = True
    recall = []
    for found, expected in zip(got.tolist(), exact(vectors, queries, by_row, K), strict=True):
        assert len(found) == K and all(allowed[i] for i in found), found
        recall.append(len(set(found) & {int(ids[r]) for r in expected}) / K)
    assert np.mean(recall) == 1.0 if kind == "flat" else np.mean(recall) >= 0.9


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_every_mode_returns_only_matching_products(
    sample_index: Path, base_model: TwoTowerModel, mode: str
) -> None:
    index = load_index(sample_index)
    retriever = open_retriever(index, base_model)
    flt = parse_filters(["in_stock=true", "price<=15"])
    allowed = index.fields.mask(flt)
    matching = int(allowed.sum())
    assert 20 < matching < len(allowed) / 2
    for query in ("cordless drill", "red paint", "Moen faucet"):
        (found,) = retriever.search_texts([query], 15, mode, flt)
        values = index.field_values([h.product_id for h in found.hits])
        assert all(v["in_stock"] is True and v["price"] <= 15 for v in values)
        if mode == "dense":  # every product has a vector: k come back when k match
            assert len(found.hits) == 15
        (unfiltered,) = retriever.search_texts([query], len(allowed), mode)
        if mode != "hybrid":  # the filtered ranking is the full ranking, filtered
            kept = [h.product_id for h in unfiltered.hits
                    if allowed[index.id_of[h.product_id]]][:15]
            assert [h.product_id for h in found.hits] == kept
