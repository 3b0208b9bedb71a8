"""Build every index type of ``IndexConfig`` from unit vectors, on GPU when there is one.

All kinds use the inner-product metric (unit vectors: inner product = cosine):

- ``flat``: ``IndexFlatIP``, exact; the ground truth the approximate kinds are measured against.
- ``hnsw``: ``IndexHNSWFlat``; no training; cannot remove vectors.
- ``ivf_flat``: ``IndexIVFFlat`` over a spherical k-means coarse quantizer.
- ``ivf_pq``: ``IndexIVFPQ`` wrapped in ``IndexRefine``. The wrapper re-ranks the PQ shortlist
  (``rerank`` candidates) against codes it keeps of every vector: with ``rerank_codes=float32``
  (the default) the full vectors (``IndexRefineFlat``: exact scores, only the shortlist is
  approximate; IVF-PQ then buys scan speed, not memory), with ``fp16`` or ``sq8`` half or a
  quarter of that (an ``IndexScalarQuantizer`` trained on the same sample: scores within about
  0.005 of exact, and 10M x 384 in about 4.4 GB with sq8). The wrapper cannot remove vectors.
  With ``pq_nbits=4`` the PQ codes are faiss's fast-scan layout (``IndexIVFPQFastScan``: codes
  of 32 vectors interleaved, distances from SIMD-resident 4-bit lookup tables), several times
  cheaper to scan per code than 8-bit PQ, so twice as many sub-quantizers (``pq_m=192``: two
  dimensions each) cost less than 48 8-bit ones and order a shortlist far better. Fast-scan
  builds and searches on CPU only. PQ encodes each vector's residual from its list centroid
  (``pq_residual``; faiss's fast-scan would encode the raw vector).

The IVF kinds find their lists through a coarse quantizer: a flat scan of every centroid
(``coarse=flat``), or an HNSW graph over them (``coarse=hnsw``), whose cost barely grows with
nlist, so a 10M index can have 16k+ short lists (k-means still trains exactly).

``build_faiss_index_sharded`` trains on a sample and adds the vectors shard by shard as they
arrive, so a build's peak memory is the index plus one shard, not every float vector at once.

GPU: with ``device="auto"`` and ``faiss.get_num_gpus() > 0`` the IVF kinds train (k-means, PQ)
and add on GPU 0, then ``index_gpu_to_cpu`` returns a CPU index, so what is saved loads on any
machine. Flat and HNSW build on CPU (a flat add is a copy; faiss has no GPU HNSW build). The
searchers that ``aisle.retrieval.searcher.searcher_for`` returns search on CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from aisle.errors import AisleError
from aisle.indexing.embed_cache import unit_rows
from aisle.retrieval.config import IndexConfig
from aisle.retrieval.searcher import flat_codes

log = logging.getLogger(__name__)

# faiss warns below 39 training points per k-means centroid; we refuse instead of warning.
MIN_POINTS_PER_LIST = 39
MAX_NLIST = 65_536
TRAIN_POINTS_PER_LIST = 64
GPU_KINDS = frozenset({"ivf_flat", "ivf_pq"})
# Rows added per call, so a long build shows progress and GPU memory stays bounded.
ADD_BLOCK = 65_536
# Seed of the training sample: the same vectors give the same index.
TRAIN_SEED = 0


def supports_removal(kind: str) -> bool:
    """Whether an index of this kind can ``remove_ids`` (an incremental update needs it).

    flat: yes when built with ``ids`` (an ``IndexIDMap2``; a bare flat index renumbers rows on
    removal). ivf_flat: yes. hnsw: no (faiss cannot unlink graph nodes). ivf_pq: no (the exact
    re-rank's ``IndexRefineFlat`` cannot remove). Kinds without removal need a full rebuild.
    """
    return kind in ("flat", "ivf_flat")


def resolve_nlist(config: IndexConfig, count: int) -> int:
    """``config.nlist``, or about 4 * sqrt(count) lists with >= 39 points each when it is 0."""
    if config.nlist:
        return config.nlist
    return max(1, min(round(4 * math.sqrt(count)), count // MIN_POINTS_PER_LIST, MAX_NLIST))


def resolve_train_size(config: IndexConfig, count: int, nlist: int) -> int:
    size = config.train_size or TRAIN_POINTS_PER_LIST * nlist
    return min(max(size, 1), count)


def check_buildable(config: IndexConfig, count: int, dim: int) -> None:
    """Refuse, before any embedding work, a config that cannot index ``count`` x ``dim``."""
    if count < 1:
        raise AisleError("no vectors to index")
    if config.kind not in GPU_KINDS:
        return
    nlist = resolve_nlist(config, count)
    train = resolve_train_size(config, count, nlist)
    if train < MIN_POINTS_PER_LIST * nlist:
        raise AisleError(
            f"{config.kind} with nlist={nlist} needs at least {MIN_POINTS_PER_LIST * nlist:,} "
            f"training vectors ({MIN_POINTS_PER_LIST} per list); it has {train:,} "
            f"({count:,} vectors, train_size={config.train_size}). Lower nlist, raise "
            "train_size, or set nlist=0 to size it from the catalog"
        )
    if config.kind == "ivf_pq":
        if dim % config.pq_m:
            raise AisleError(
                f"ivf_pq: pq_m={config.pq_m} does not divide the vector dimension {dim}; "
                f"pick a divisor of {dim} (e.g. {dim // 8} for 8 dimensions per sub-quantizer)"
            )
        if train < 2**config.pq_nbits:
            raise AisleError(
                f"ivf_pq: pq_nbits={config.pq_nbits} needs at least {2**config.pq_nbits:,} "
                f"training vectors; it has {train:,}. Lower pq_nbits or index more vectors"
            )


def uses_gpu(config: IndexConfig) -> bool:
    """Whether this build trains and adds on a GPU: auto takes one when faiss sees one."""
    gpus = faiss.get_num_gpus()
    if config.device == "gpu":
        if gpus < 1 or not hasattr(faiss, "StandardGpuResources"):
            raise AisleError(
                "device=gpu but faiss sees no GPU (faiss-cpu is installed, or no CUDA device); "
                "install the gpu extra (pip install '.[gpu]') on a CUDA machine or use device=auto"
            )
        if config.kind not in GPU_KINDS:
            raise AisleError(f"{config.kind} builds on CPU only; use device=auto or cpu")
        return True
    return (config.device == "auto" and config.kind in GPU_KINDS and gpus > 0
            and not config.cpu_only)  # a cpu_only IndexConfig refuses device=gpu


def _check_vectors(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise AisleError(f"vectors must be a non-empty (n, d) array, got shape {x.shape}")
    if not unit_rows(x).all():
        raise AisleError(
            "index vectors must be L2-normalised (inner product = cosine); the towers' outputs "
            "are, so normalise anything else first (faiss.normalize_L2)"
        )
    return x


def _empty_index(config: IndexConfig, dim: int, nlist: int) -> faiss.Index:
    ip = faiss.METRIC_INNER_PRODUCT
    index: Any
    if config.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, ip)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search  # the default a bare faiss search uses
        return index
    quantizer = _coarse_quantizer(config, dim)
    if config.kind == "ivf_flat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    elif config.fast_scan:
        index = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, config.pq_m, 4, ip)
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, config.pq_m, config.pq_nbits, ip)
    index.nprobe = config.nprobe
    if config.kind == "ivf_pq":
        index.by_residual = config.pq_residual  # before training: PQ learns what it encodes
    if config.kmeans_iters:
        index.cp.niter = config.kmeans_iters
    if config.coarse == "hnsw":
        # k-means assigns its training vectors exactly (a graph rebuilt every iteration would
        # cost more than it saves); the trained centroids then go into the graph.
        exact = faiss.IndexFlatIP(dim)
        index.clustering_index = exact
        index.referenced_objects = [quantizer, exact]  # the IVF owns neither
    return index


# The HNSW coarse quantizer's graph. A query asks it for its nprobe nearest centroids; the
# graph search keeps max(COARSE_EF, nprobe) candidates (nprobe 8-96 is the usual range).
COARSE_HNSW_M = 32
COARSE_EF_CONSTRUCTION = 200
COARSE_EF = 128


def _coarse_quantizer(config: IndexConfig, dim: int) -> faiss.Index:
    if config.coarse == "flat":
        return faiss.IndexFlatIP(dim)
    graph = faiss.IndexHNSWFlat(dim, COARSE_HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = COARSE_EF_CONSTRUCTION
    graph.hnsw.efSearch = COARSE_EF
    return graph


def _add(index: faiss.Index, x: np.ndarray, ids: np.ndarray | None, what: str) -> None:
    blocks = range(0, len(x), ADD_BLOCK)
    for start in tqdm(blocks, desc=f"adding to {what}", unit="block", disable=len(blocks) < 4):
        part = x[start : start + ADD_BLOCK]
        if ids is None:
            index.add(part)
        else:
            index.add_with_ids(part, ids[start : start + ADD_BLOCK])


def _reserve(index: faiss.Index, count: int) -> int:
    """Size the flat code array under ``index`` (``flat_codes``: a flat index, HNSW's storage,
    IVF-PQ's float or compact re-rank) for ``count`` vectors before adding.

    That array grows block by block by doubling, so at its last doubling the old and the new
    array are both resident: a 10M sq8 re-rank (3.8 GB) would peak near twice that. Resizing
    to the final size and back to empty keeps the capacity, so the adds never reallocate.
    Returns the bytes reserved."""
    codes = flat_codes(index)
    if codes is None or codes.ntotal:
        return 0
    codes.codes.resize(count * codes.code_size)
    codes.codes.resize(0)
    return int(count * codes.code_size)


def _gpu_clone(index: faiss.Index, kind: str) -> tuple[faiss.Index, Any]:
    res = faiss.StandardGpuResources()
    options = faiss.GpuClonerOptions()
    # IVF-PQ: float16 lookup tables let 48+ sub-quantizers fit in shared memory. IVF-Flat
    # keeps float32 storage (float16 would change the vectors).
    options.useFloat16 = kind == "ivf_pq"
    return faiss.index_cpu_to_gpu(res, 0, index, options), res  # res must outlive the clone


def _train(index: faiss.Index, sample: np.ndarray, gpu: bool, kind: str) -> faiss.Index:
    if not gpu:
        index.train(sample)
        return index
    on_gpu, _res = _gpu_clone(index, kind)
    on_gpu.train(sample)
    return faiss.index_gpu_to_cpu(on_gpu)


def _gpu_add(index: faiss.Index, x: np.ndarray, ids: np.ndarray | None, kind: str) -> faiss.Index:
    on_gpu, _res = _gpu_clone(index, kind)
    _add(on_gpu, x, ids, f"{kind} (GPU)")
    return faiss.index_gpu_to_cpu(on_gpu)


def _train_sample(x: np.ndarray, config: IndexConfig, nlist: int) -> np.ndarray:
    size = resolve_train_size(config, len(x), nlist)
    if size == len(x):
        return x
    rng = np.random.default_rng(TRAIN_SEED)
    return x[np.sort(rng.choice(len(x), size, replace=False))]


SQ_TYPES = {"fp16": "QT_fp16", "sq8": "QT_8bit"}


def _refine(base: faiss.Index, config: IndexConfig, sample: np.ndarray,
            x: np.ndarray | None) -> faiss.Index:
    """IVF-PQ's re-rank over ``base`` (which holds ``x``, or nothing yet): ``IndexRefineFlat``
    keeps the full vectors; ``IndexRefine`` over a scalar quantizer trained on ``sample`` keeps
    compact codes (``config.rerank_codes``)."""
    refine: Any
    if config.rerank_codes == "float32":
        refine = (faiss.IndexRefineFlat(base) if x is None
                  else faiss.IndexRefineFlat(base, faiss.swig_ptr(x)))
    else:
        qtype = getattr(faiss.ScalarQuantizer, SQ_TYPES[config.rerank_codes])
        codes = faiss.IndexScalarQuantizer(base.d, qtype, faiss.METRIC_INNER_PRODUCT)
        codes.train(sample)
        if x is not None:
            _add(codes, x, None, f"{config.rerank_codes} codes")
        refine = faiss.IndexRefine(base, codes)
        refine.referenced_objects = [base, codes]  # the wrapper does not own them
    # A bare faiss search re-ranks `rerank` candidates for k=10; searchers pass the depth.
    refine.k_factor = max(config.rerank / 10, 1.0)
    return refine


def build_faiss_index(
    config: IndexConfig, vectors: np.ndarray, ids: np.ndarray | None = None
) -> faiss.Index:
    """A CPU FAISS index of ``config.kind`` over ``vectors`` (``(N, D)`` unit float32).

    Search results are row positions in ``vectors``, or ``ids`` (int64, one per row) when given
    (flat, hnsw and ivf_pq are then wrapped in an ``IndexIDMap2``; IVF stores ids itself).
    """
    x = _check_vectors(vectors)
    n, dim = x.shape
    check_buildable(config, n, dim)
    if ids is not None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            raise AisleError(f"ids must have one int per vector ({n}), got shape {ids.shape}")
    started = time.perf_counter()
    nlist = resolve_nlist(config, n)
    gpu = uses_gpu(config)
    index = _empty_index(config, dim, nlist)
    sample = _train_sample(x, config, nlist) if config.kind in GPU_KINDS else x[:0]
    if config.kind in GPU_KINDS:
        index = _train(index, sample, gpu, config.kind)
    if gpu and (config.kind == "ivf_flat" or ids is None):
        index = _gpu_add(index, x, ids, config.kind)
        if config.kind == "ivf_pq":
            index = _refine(index, config, sample, x)
    else:
        # On CPU, or ivf_pq with ids (the IndexIDMap2 wrapper must start empty), add on CPU.
        if config.kind == "ivf_pq":
            index = _refine(index, config, sample, None)
        if ids is not None and config.kind != "ivf_flat":
            index = faiss.IndexIDMap2(index)
        _reserve(index, n)
        _add(index, x, ids, config.kind)
    log.info(
        "built %s over %d x %d on %s in %.1fs%s",
        config.kind,
        n,
        dim,
        "GPU" if gpu else "CPU",
        time.perf_counter() - started,
        f" (nlist={nlist})" if config.kind in GPU_KINDS else "",
    )
    return index


def build_faiss_index_sharded(
    config: IndexConfig, count: int, sample: np.ndarray, shards: Iterable[np.ndarray]
) -> faiss.Index:
    """The index of ``build_faiss_index`` over ``count`` vectors that arrive in ``shards``
    (each ``(n_i, D)`` unit float32, in id order), trained on ``sample`` (a seeded sample of
    them, which the IVF kinds' k-means, PQ and scalar quantizer learn from). Only one shard
    is held at a time, so peak memory is the index plus one shard."""
    s = _check_vectors(sample)
    dim = s.shape[1]
    check_buildable(config, count, dim)
    started = time.perf_counter()
    nlist = resolve_nlist(config, count)
    index = _empty_index(config, dim, nlist)
    if config.kind in GPU_KINDS:
        size = resolve_train_size(config, count, nlist)
        if len(s) < min(size, MIN_POINTS_PER_LIST * nlist):
            raise AisleError(f"{config.kind} with nlist={nlist} trains on {size:,} vectors; the "
                             f"sample has {len(s):,}: pass a larger sample")
        index = _train(index, s, uses_gpu(config), config.kind)
    if config.kind == "ivf_pq":
        index = _refine(index, config, s, None)
    # Trained: the sample is not needed for the adds (a caller that hands it over without
    # keeping a reference gets its memory back before the largest allocations).
    del s, sample
    _reserve(index, count)
    added = 0
    for shard in tqdm(shards, desc=f"adding shards to {config.kind}", unit="shard"):
        x = _check_vectors(shard)
        if x.shape[1] != dim:
            raise AisleError(f"a shard has {x.shape[1]}-d vectors, the sample {dim}-d")
        _add(index, x, None, config.kind)
        added += len(x)
    if added != count:
        raise AisleError(f"the shards held {added:,} vectors, {count:,} were announced")
    log.info("built %s over %d x %d from shards in %.1fs", config.kind, count, dim,
             time.perf_counter() - started)
    return index
