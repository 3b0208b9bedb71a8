"""Every index kind against the exact flat ground truth on a seeded clustered set."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest

from aisle.configs import load_config
from aisle.errors import AisleError, ManifestMismatch
from aisle.indexing.ann import build_faiss_index, resolve_nlist, supports_removal, uses_gpu
from aisle.retrieval.config import IndexConfig
from aisle.retrieval.searcher import (
    FaissSearcher,
    SearchParams,
    index_kind,
    searcher_for,
    stored_ids,
)

N, DIM, K = 3000, 64, 10
# Test-sized builds: 16 sub-quantizers of 4 dims, 6-bit codes (64 centroids train fast).
CONFIGS = {
    "flat": IndexConfig(kind="flat"),
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=40, ef_search=32),
    "ivf_flat": IndexConfig(kind="ivf_flat", nprobe=8),
    "ivf_pq": IndexConfig(kind="ivf_pq", nprobe=8, pq_m=16, pq_nbits=6, rerank=50),
}
KINDS = list(CONFIGS)
# recall@10 vs exact each kind must reach with its test config's default knobs.
MIN_RECALL = {"flat": 1.0, "hnsw": 0.95, "ivf_flat": 0.9, "ivf_pq": 0.9}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # The CI box is small and shared: OpenMP spin-waiting on busy cores slows faiss down.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, queries, exact top-10 rows): 40 clusters of unequal spread, queries between."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((40, DIM))
    spread = rng.uniform(0.3, 0.8, 40)
    members = rng.integers(0, 40, N)
    x = unit(centres[members] + spread[members, None] * rng.standard_normal((N, DIM)))
    q = unit(centres[rng.integers(0, 40, 200)] + 0.6 * rng.standard_normal((200, DIM)))
    truth = np.argsort(-(q @ x.T), axis=1)[:, :K]
    return x, q, truth


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, faiss.Index]:
    return {kind: build_faiss_index(cfg, data[0]) for kind, cfg in CONFIGS.items()}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_reaches_its_recall_against_exact_search(
    kind: str, built: dict[str, faiss.Index], data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    x, q, truth = data
    assert index_kind(built[kind]) == kind
    scores, rows = searcher_for(built[kind], CONFIGS[kind]).search(q, K)
    assert recall(rows, truth) >= MIN_RECALL[kind]
    # Scores are exact inner products for every kind (IVF-PQ re-ranks with the full vectors).
    exact = np.take_along_axis(q @ x.T, rows, axis=1)
    np.testing.assert_allclose(scores, exact, atol=1e-4)


@pytest.mark.parametrize(
    ("kind", "low", "high"),
    [
        ("hnsw", SearchParams(ef_search=10), SearchParams(ef_search=200)),
        ("ivf_flat", SearchParams(nprobe=1), SearchParams(nprobe=32)),
        ("ivf_pq", SearchParams(nprobe=1, rerank=10), SearchParams(nprobe=32, rerank=200)),
        ("ivf_pq", SearchParams(nprobe=32, rerank=10), SearchParams(nprobe=32, rerank=200)),
    ],
)
def test_knobs_move_recall_the_expected_way(
    kind: str,
    low: SearchParams,
    high: SearchParams,
    built: dict[str, faiss.Index],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, q, truth = data
    searcher = searcher_for(built[kind], CONFIGS[kind])
    r_low = recall(searcher.search(q, K, low)[1], truth)
    r_high = recall(searcher.search(q, K, high)[1], truth)
    assert r_low < r_high
    assert r_high >= 0.97


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat", "ivf_pq"])
def test_per_call_knobs_leave_the_shared_index_alone(
    kind: str, built: dict[str, faiss.Index], data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    _, q, _ = data
    index = built[kind]
    searcher = searcher_for(index, CONFIGS[kind])
    knobs = [SearchParams(ef_search=e, nprobe=p, rerank=r) for e, p, r in
             ((10, 1, 10), (200, 32, 200), (20, 4, 30), (100, 16, 100))] * 4
    alone = [searcher.search(q, K, p)[1] for p in knobs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: searcher.search(q, K, p)[1], knobs))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)
    inner = faiss.downcast_index(index)
    if kind == "ivf_pq":
        assert inner.k_factor == CONFIGS[kind].rerank / 10
        inner = faiss.downcast_index(inner.base_index)
    if kind == "hnsw":
        assert inner.hnsw.efSearch == CONFIGS[kind].ef_search
    else:
        assert inner.nprobe == CONFIGS[kind].nprobe
    # Searches without knobs use the config's defaults, not the last call's.
    np.testing.assert_array_equal(searcher.search(q, K)[1], searcher.search(q, K, None)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_index_loads_and_searches_identically(
    kind: str,
    built: dict[str, faiss.Index],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    _, q, _ = data
    faiss.write_index(built[kind], str(tmp_path / "index.faiss"))
    loaded = faiss.read_index(str(tmp_path / "index.faiss"))
    before = searcher_for(built[kind], CONFIGS[kind]).search(q, K)
    after = searcher_for(loaded, CONFIGS[kind]).search(q, K)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])


@pytest.mark.parametrize("kind", KINDS)
def test_an_index_built_without_ids_holds_its_row_numbers(
    kind: str, built: dict[str, faiss.Index]
) -> None:
    held = stored_ids(built[kind])
    if kind in ("flat", "hnsw"):  # no ids stored: a row's id is its number
        assert held is None
    else:  # IVF keeps ids in its lists, in list order
        assert held is not None and len(held) == N
        assert not np.array_equal(held, np.arange(N))
        np.testing.assert_array_equal(np.sort(held), np.arange(N))


@pytest.mark.parametrize("kind", KINDS)
def test_ids_are_returned_instead_of_rows_and_removal_matches_supports_removal(
    kind: str, data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    x, q, truth = data
    ids = np.arange(N, dtype=np.int64) * 3 + 1000
    index = build_faiss_index(CONFIGS[kind], x, ids)
    held = stored_ids(index)  # what loading an index checks its row map against
    assert held is not None
    np.testing.assert_array_equal(np.sort(held), ids)
    searcher = searcher_for(index, CONFIGS[kind])
    found = searcher.search(q, K, SearchParams(ef_search=200, nprobe=64, rerank=300))[1]
    assert recall((found - 1000) // 3, truth) >= 0.97
    gone = ids[truth[:, 0]]
    if supports_removal(kind):
        assert index.remove_ids(gone) == len(set(gone.tolist()))
        held = stored_ids(index)
        assert held is not None
        np.testing.assert_array_equal(np.sort(held), np.setdiff1d(ids, gone))
        after = searcher.search(q, K, SearchParams(nprobe=64))[1]
        assert not set(after.ravel()) & set(gone.tolist())
    else:
        with pytest.raises(RuntimeError, match="not implemented"):
            index.remove_ids(gone)


def test_bad_configs_are_clear_errors(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, _ = data
    with pytest.raises(AisleError, match="unknown"):
        IndexConfig(kind="annoy")  # type: ignore[arg-type]
    with pytest.raises(AisleError, match="not one of"):
        load_config(IndexConfig, None, ["kind=annoy"])
    with pytest.raises(AisleError, match=r"pq_m=12 does not divide the vector dimension 64"):
        build_faiss_index(replace(CONFIGS["ivf_pq"], pq_m=12), x)
    with pytest.raises(AisleError, match=r"nlist=500 needs at least 19,500 training vectors"):
        build_faiss_index(IndexConfig(kind="ivf_flat", nlist=500), x)
    with pytest.raises(AisleError, match="pq_nbits=12 needs at least 4,096"):
        build_faiss_index(replace(CONFIGS["ivf_pq"], pq_nbits=12), x)
    with pytest.raises(AisleError, match="nprobe must be >= 1"):
        IndexConfig(nprobe=0)
    with pytest.raises(AisleError, match="L2-normalised"):
        build_faiss_index(IndexConfig(), x * 2)
    with pytest.raises(AisleError, match=r"ef_search must be >= 1"):
        SearchParams(ef_search=0)


def test_a_searcher_refuses_an_index_of_another_kind(built: dict[str, faiss.Index]) -> None:
    with pytest.raises(ManifestMismatch, match="is hnsw but its config says ivf_flat"):
        searcher_for(built["hnsw"], CONFIGS["ivf_flat"])


def test_auto_nlist_grows_with_the_catalog_and_keeps_39_points_per_list() -> None:
    auto = IndexConfig(kind="ivf_flat")
    assert resolve_nlist(auto, 1_000_000) == 4000
    assert resolve_nlist(auto, N) == N // 39
    assert resolve_nlist(auto, 10) == 1
    assert resolve_nlist(replace(auto, nlist=128), 1_000_000) == 128


def test_without_a_gpu_the_ivf_build_takes_the_cpu_path(
    monkeypatch: pytest.MonkeyPatch, data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    config = CONFIGS["ivf_flat"]
    assert not uses_gpu(config)
    index = build_faiss_index(config, data[0])
    assert isinstance(faiss.downcast_index(index), faiss.IndexIVFFlat)  # a CPU index
    with pytest.raises(AisleError, match="faiss sees no GPU"):
        uses_gpu(replace(config, device="gpu"))
    # hnsw and flat never build on GPU, even when there is one.
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    assert not uses_gpu(CONFIGS["hnsw"])
    assert not uses_gpu(CONFIGS["flat"])
    assert uses_gpu(config)
    assert not uses_gpu(replace(config, device="cpu"))


@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="faiss sees no GPU (faiss-cpu)")
@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq"])
def test_a_gpu_build_saves_as_a_cpu_index_with_the_same_quality(
    kind: str, data: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, q, truth = data
    config = replace(CONFIGS[kind], device="gpu")
    index = build_faiss_index(config, x)
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    loaded = faiss.read_index(str(tmp_path / "index.faiss"))
    assert index_kind(loaded) == kind
    assert recall(FaissSearcher(loaded).search(q, K)[1], truth) >= MIN_RECALL[kind]


# (codes, bytes per dimension, score tolerance, recall@10 given up against float32 re-rank)
@pytest.mark.parametrize(("codes", "bytes_per_dim", "tolerance", "loss"),
                         [("fp16", 2, 1e-3, 0.005), ("sq8", 1, 2e-2, 0.03)])
def test_compact_rerank_codes_keep_recall_in_a_fraction_of_the_memory(
    codes: str, bytes_per_dim: int, tolerance: float, loss: float, built: dict[str, faiss.Index],
    data: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path,
) -> None:
    x, q, truth = data
    config = replace(CONFIGS["ivf_pq"], rerank_codes=codes)  # type: ignore[arg-type]
    compact = build_faiss_index(config, x)
    assert index_kind(compact) == "ivf_pq"
    scores, rows = searcher_for(compact, config).search(q, K)
    full_recall = recall(searcher_for(built["ivf_pq"], CONFIGS["ivf_pq"]).search(q, K)[1], truth)
    assert recall(rows, truth) >= full_recall - loss
    # Scores are the codes' inner products: close to exact, not exact.
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, rows, axis=1), atol=tolerance)
    sizes = {}
    for name, index in (("float32", built["ivf_pq"]), (codes, compact)):
        faiss.write_index(index, str(tmp_path / name))
        sizes[name] = (tmp_path / name).stat().st_size / N
    assert sizes["float32"] - sizes[codes] == pytest.approx((4 - bytes_per_dim) * DIM, abs=2)
    loaded = faiss.read_index(str(tmp_path / codes))
    np.testing.assert_array_equal(searcher_for(loaded, config).search(q, K)[1], rows)


# Fast-scan: 4-bit codes, two dimensions a sub-quantizer, 8-bit re-rank codes (the 10M row).
FAST_SCAN = replace(CONFIGS["ivf_pq"], pq_m=32, pq_nbits=4, rerank_codes="sq8")


def test_four_bit_codes_build_fast_scan_lists_that_reach_recall_and_reload(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from aisle.indexing.ann import build_faiss_index_sharded

    x, q, truth = data
    index = build_faiss_index(FAST_SCAN, x)
    refine = faiss.downcast_index(index)
    assert isinstance(faiss.downcast_index(refine.base_index), faiss.IndexIVFPQFastScan)
    assert index_kind(index) == "ivf_pq"
    searcher = searcher_for(index, FAST_SCAN)
    rows = searcher.search(q, K)[1]
    assert recall(rows, truth) >= MIN_RECALL["ivf_pq"]
    # The knobs reach the fast-scan lists: every list probed, a deep re-rank, near exact.
    deep = searcher.search(q, K, SearchParams(nprobe=10_000, rerank=500))[1]
    assert recall(deep, truth) >= 0.97
    faiss.write_index(index, str(tmp_path / "fs.faiss"))
    loaded = faiss.read_index(str(tmp_path / "fs.faiss"))
    np.testing.assert_array_equal(searcher_for(loaded, FAST_SCAN).search(q, K)[1], rows)
    # A sharded build of the same sample and vectors is the same index.
    sample = x  # N is below the training size: the whole build trains on every vector
    sharded = build_faiss_index_sharded(FAST_SCAN, N, sample, (x[i : i + 900]
                                                              for i in range(0, N, 900)))
    np.testing.assert_array_equal(searcher_for(sharded, FAST_SCAN).search(q, K)[1], rows)


def test_fast_scan_builds_on_the_cpu_even_where_a_gpu_is_asked_for_by_auto() -> None:
    assert not uses_gpu(replace(FAST_SCAN, device="auto"))
    with pytest.raises(AisleError, match="fast-scan\\) builds on CPU only"):
        replace(FAST_SCAN, device="gpu")  # refused as a config, before any embedding work


def test_compact_codes_are_for_ivf_pq_only() -> None:
    with pytest.raises(AisleError, match="rerank_codes=sq8 is for kind=ivf_pq"):
        IndexConfig(kind="hnsw", rerank_codes="sq8")
    with pytest.raises(AisleError, match="rerank_codes 'int4' is unknown"):
        IndexConfig(kind="ivf_pq", rerank_codes="int4")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat", "ivf_pq"])
def test_a_sharded_build_equals_the_whole_build(
    kind: str, built: dict[str, faiss.Index], data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    from aisle.indexing.ann import TRAIN_SEED, build_faiss_index_sharded, resolve_train_size

    x, q, truth = data
    config = CONFIGS[kind]
    size = resolve_train_size(config, N, resolve_nlist(config, N))
    rng = np.random.default_rng(TRAIN_SEED)  # the whole build's own training sample
    sample = x[np.sort(rng.choice(N, size, replace=False))] if size < N else x
    shards = (x[i : i + 700] for i in range(0, N, 700))
    sharded = build_faiss_index_sharded(config, N, sample, shards)
    assert sharded.ntotal == N
    whole = searcher_for(built[kind], config).search(q, K)
    parts = searcher_for(sharded, config).search(q, K)
    if kind == "hnsw":  # the graph depends on how insertions were batched: as good, not equal
        assert recall(parts[1], truth) >= recall(whole[1], truth) - 0.01
    else:  # the same lists, codes and re-rank vectors
        np.testing.assert_array_equal(parts[1], whole[1])
        np.testing.assert_allclose(parts[0], whole[0], atol=1e-5)
    with pytest.raises(AisleError, match="the shards held 2,100 vectors, 3,000 were announced"):
        build_faiss_index_sharded(config, N, sample, (x[i : i + 700] for i in range(0, 2100, 700)))


def test_an_index_of_compact_codes_cannot_give_back_float_vectors(
    data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    from aisle.errors import ArtifactError
    from aisle.indexing.vectors import stored_vectors

    config = replace(CONFIGS["ivf_pq"], rerank_codes="sq8")
    with pytest.raises(ArtifactError, match="compact re-rank codes"):
        stored_vectors(build_faiss_index(config, data[0]), np.arange(5))


@pytest.mark.parametrize(
    ("config", "per_vector"),
    [
        (CONFIGS["flat"], DIM * 4),
        (CONFIGS["hnsw"], DIM * 4),  # the graph's flat storage
        (CONFIGS["ivf_flat"], 0),  # inverted lists grow list by list: nothing to reserve
        (CONFIGS["ivf_pq"], DIM * 4),  # the float32 re-rank
        (replace(CONFIGS["ivf_pq"], rerank_codes="sq8"), DIM),
        (replace(CONFIGS["ivf_pq"], rerank_codes="fp16"), DIM * 2),
    ],
)
def test_the_flat_code_arrays_are_sized_once_before_adding(
    config: IndexConfig, per_vector: int, data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """A growing code array doubles, holding old and new copies at once; the build sizes it
    for the whole catalog first (behind an id map too), and the index stays what it was."""
    from aisle.indexing.ann import _empty_index, _refine, _reserve

    x, q, _ = data

    def empty() -> faiss.Index:
        index = _empty_index(config, DIM, 8)
        if config.kind in ("ivf_flat", "ivf_pq"):
            index.train(x)
        return _refine(index, config, x, None) if config.kind == "ivf_pq" else index

    sized, grown = empty(), empty()
    assert _reserve(faiss.IndexIDMap2(sized), N) == N * per_vector
    assert sized.ntotal == 0
    sized.add(x)
    grown.add(x)
    np.testing.assert_array_equal(
        searcher_for(sized, config).search(q, K)[1], searcher_for(grown, config).search(q, K)[1]
    )


def _centroids(index: faiss.Index) -> np.ndarray:
    ivf = faiss.extract_index_ivf(index)
    return ivf.quantizer.reconstruct_n(0, ivf.nlist)


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq"])
def test_an_hnsw_coarse_quantizer_holds_the_same_centroids_and_reaches_recall(
    kind: str, data: tuple[np.ndarray, np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    from aisle.retrieval.searcher import Selection

    x, q, truth = data
    # On CPU both (an HNSW coarse quantizer builds on CPU; a GPU's k-means may differ).
    flat = replace(FAST_SCAN if kind == "ivf_pq" else CONFIGS[kind], device="cpu")
    config = replace(flat, coarse="hnsw")
    flat_coarse = build_faiss_index(flat, x)
    index = build_faiss_index(config, x)
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(index).quantizer)
    assert isinstance(quantizer, faiss.IndexHNSWFlat)
    # k-means assigned its training vectors exactly: the graph holds the flat build's lists.
    np.testing.assert_allclose(_centroids(index), _centroids(flat_coarse), atol=1e-6)
    searcher = searcher_for(index, config)
    rows = searcher.search(q, K)[1]
    assert recall(rows, truth) >= MIN_RECALL[kind]
    # Every list probed through the graph: as good as the flat quantizer probing every list.
    every = SearchParams(nprobe=10_000, rerank=500)
    deep = searcher.search(q, K, every)[1]
    np.testing.assert_array_equal(deep, searcher_for(flat_coarse, config).search(q, K, every)[1])
    # Filters reach the lists through the graph too (a 1% filter probes every list).
    allowed = np.random.default_rng(2).random(N) < 0.01
    found = searcher.search(q, K, selection=Selection(allowed))[1]
    assert allowed[found[found >= 0]].all()
    assert ((found >= 0).sum(axis=1) == min(K, int(allowed.sum()))).all()
    faiss.write_index(index, str(tmp_path / "hnsw-coarse.faiss"))
    loaded = faiss.read_index(str(tmp_path / "hnsw-coarse.faiss"))
    np.testing.assert_array_equal(searcher_for(loaded, config).search(q, K)[1], rows)


def test_kmeans_iters_sets_how_long_the_coarse_quantizer_trains(
    data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    x = data[0]
    config = replace(CONFIGS["ivf_flat"], device="cpu")
    default = _centroids(build_faiss_index(config, x))
    np.testing.assert_allclose(  # 0 is faiss's own default
        _centroids(build_faiss_index(replace(config, kmeans_iters=25), x)), default, atol=1e-6)
    one = _centroids(build_faiss_index(replace(config, kmeans_iters=1), x))
    assert np.abs(one - default).max() > 1e-3


def test_an_hnsw_coarse_quantizer_builds_on_the_cpu_and_bad_values_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    assert uses_gpu(CONFIGS["ivf_flat"])
    assert not uses_gpu(replace(CONFIGS["ivf_flat"], coarse="hnsw"))
    with pytest.raises(AisleError, match=r"coarse=hnsw .* builds on CPU only"):
        replace(CONFIGS["ivf_flat"], coarse="hnsw", device="gpu")
    with pytest.raises(AisleError, match="coarse 'ivf' is unknown"):
        IndexConfig(kind="ivf_flat", coarse="ivf")  # type: ignore[arg-type]
    with pytest.raises(AisleError, match="kmeans_iters must be >= 0"):
        IndexConfig(kind="ivf_flat", kmeans_iters=-1)


def test_pq_codes_encode_residuals_that_order_a_shortlist_better_than_raw_codes(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, q, truth = data
    shortlist = SearchParams(nprobe=10_000, rerank=20)  # every list; a short re-rank
    found = {}
    for residual in (True, False):
        config = replace(FAST_SCAN, pq_residual=residual)
        faiss.write_index(build_faiss_index(config, x), str(tmp_path / "i.faiss"))
        loaded = faiss.read_index(str(tmp_path / "i.faiss"))
        assert faiss.downcast_index(faiss.downcast_index(loaded).base_index).by_residual == residual
        found[residual] = recall(searcher_for(loaded, config).search(q, K, shortlist)[1], truth)
    # Residuals from the list centroids are smaller than the vectors: finer codes (0.85 vs 0.68).
    assert found[True] >= found[False] + 0.1
    eight_bit = build_faiss_index(CONFIGS["ivf_pq"], x)
    assert faiss.downcast_index(faiss.downcast_index(eight_bit).base_index).by_residual


def test_a_fast_scan_manifest_from_before_pq_residual_reads_as_raw_codes() -> None:
    from aisle.retrieval.config import stored_index_config

    assert not stored_index_config({"kind": "ivf_pq", "pq_nbits": 4}).pq_residual
    assert stored_index_config({"kind": "ivf_pq", "pq_nbits": 8}).pq_residual  # faiss's default
    assert stored_index_config({"kind": "ivf_pq", "pq_nbits": 4, "pq_residual": True}).pq_residual
    assert IndexConfig(kind="ivf_pq", pq_nbits=4).pq_residual  # new builds encode residuals
