"""Index configuration: which FAISS index type, how to build it, and its default search knobs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from aisle.configs import from_dict
from aisle.errors import AisleError

# flat: exact inner product, the ground truth. hnsw: graph, no training, no removal.
# ivf_flat: k-means lists of full vectors. ivf_pq: k-means lists of PQ codes, shortlist re-ranked
# exactly against the full vectors (see indexing/ann.py).
IndexKind = Literal["flat", "hnsw", "ivf_flat", "ivf_pq"]
# auto: train and add on a GPU when faiss reports one (IVF kinds only), else on CPU.
BuildDevice = Literal["auto", "cpu", "gpu"]
# What IVF-PQ's re-rank reads (see indexing/ann.py): the full float32 vectors (1,536 bytes a
# 384-d product, exact scores), or compact codes: float16 (768 bytes) or 8-bit scalar
# quantisation (384 bytes; scores within about 0.005 of exact).
RerankCodes = Literal["float32", "fp16", "sq8"]
# How BM25 turns text into terms (retrieval/analyzer.py): "product" keeps sizes and units,
# "word" is bm25s's own tokenizer (what indexes written before the analyzer existed used).
BM25Analyzer = Literal["product", "word"]
# How an IVF index finds the lists nearest a query (and each added vector's list): "flat" scans
# every centroid (exact; its cost grows with nlist), "hnsw" walks a graph over the centroids.
CoarseQuantizer = Literal["flat", "hnsw"]

INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)


@dataclass(frozen=True)
class IndexConfig:
    # HNSW: on homedepot dev (54,667 products, the demo's cascade; bench/query_path.py,
    # 2026-12-03) hybrid nDCG@10 is flat's (0.4145 vs 0.4142, paired 95% interval of the
    # difference [-0.0006, +0.0011]) at 2.2 ms instead of 11.9 ms a query; dense alone loses
    # 0.003. "flat" (exact inner product over unit vectors) is the ground truth every ANN kind
    # is measured against; APPROXIMATE below is the choice for millions of products.
    kind: IndexKind = "hnsw"

    # HNSW (Malkov & Yashunin 2018). M = graph degree: level 0 keeps 2*M neighbour ids (4 bytes
    # each) per vector. 32 is the usual choice for 384-d embeddings (faiss's HNSW32 in its
    # benchmarks); 16 needs a much larger efSearch for the same recall at this dimension.
    hnsw_m: int = 32
    # Candidate list while inserting. Build time grows about linearly with it. faiss's default
    # of 40 builds a graph that real queries navigate badly: on the 54,667-product homedepot
    # catalog with its real test queries, recall@10 at ef_search=64 was 0.939 with 40 and
    # 0.975 with 200 (same ~0.14 ms/query; build 24 s on one busy core instead of 6.5 s;
    # bench/hnsw_real.py).
    ef_construction: int = 200
    # Default candidate list at query time (per query batch: SearchParams.ef_search); >= k.
    # On the 1M bench M=32/efConstruction=40 reached only recall@10 0.81 at 256 (0.93 ms) and
    # 0.87 at 512: HNSW there needs a costlier build (larger M / efConstruction), unmeasured.
    ef_search: int = 64

    # IVF. 0 = auto: about 4 * sqrt(N) lists, at most N / 39 so k-means has 39 points per
    # centroid (faiss's minimum without a warning), at most 65,536.
    nlist: int = 0
    # Lists scanned per query by default (per query batch: SearchParams.nprobe). 32 of the auto
    # 4,000 lists gave recall@10 0.950 vs exact on the 1M bench (16: 0.920, 64: 0.973).
    nprobe: int = 32
    # Vectors sampled (seeded) to train k-means and PQ. 0 = auto: 64 per list, capped at N;
    # more than ~256 per list costs time and gains nothing (faiss subsamples past 256 anyway).
    train_size: int = 0
    # The coarse quantizer (CoarseQuantizer above). A flat scan of 8,192 centroids x 384 costs
    # a 10M index a sizable share of each query's time, and 16,384 twice that, while more lists
    # mean shorter lists and smaller residuals for PQ to encode; an HNSW graph over the
    # centroids (M 32, efConstruction 200) finds the nprobe nearest lists in a fraction of that.
    # k-means still trains with exact assignment; the adds assign through the graph.
    coarse: CoarseQuantizer = "flat"
    # k-means iterations for the coarse quantizer (0 = faiss's default, 25). Its cost is
    # iterations x training vectors x nlist x d. The 10M row used 10 (training, with PQ and the
    # scalar quantizer, ~5 min on 2 cores for 655,360 vectors and 16,384 lists); 10 against 25
    # was not compared there.
    kmeans_iters: int = 0

    # IVF-PQ. pq_m sub-quantizers of pq_nbits each: 48 x 8 bits = 48 bytes per 384-d vector,
    # 8 dimensions per sub-quantizer. pq_m must divide the vector dimension. pq_nbits = 4 is
    # faiss's fast-scan layout (CPU only): at 10M, pq_m = 192 (96 bytes) with sq8 re-rank
    # codes is the row that fits 6 GB (docs/results.md).
    pq_m: int = 48
    pq_nbits: int = 8
    # PQ encodes each vector's residual from its list's centroid (true) or the vector itself.
    # Residuals are smaller, the more so the more lists there are, so the same codes order a
    # shortlist better; with inner product the search cost is the same (one lookup table per
    # query, plus each list's centroid score). faiss encodes residuals by default for 8-bit
    # IVF-PQ but not for fast-scan, which built raw codes here before 2026-12-05 (manifests
    # without this field: see stored_index_config).
    pq_residual: bool = True
    # How many PQ candidates are re-ranked with exact inner products against the stored full
    # vectors (at least k). 48-byte codes order real query neighbours coarsely: on the 1M
    # bench a 200-candidate shortlist capped recall@10 near 0.93 whatever nprobe was, 500
    # reached 0.954 at nprobe 48, 1,000 reached 0.970 at nprobe 64 (docs/results.md).
    rerank: int = 500
    # What the re-rank reads. float32 keeps every full vector (a 10M catalog needs 15 GB for
    # them alone); sq8 keeps 8-bit codes, a quarter of that.
    rerank_codes: RerankCodes = "float32"

    device: BuildDevice = "auto"

    # BM25 over the same product text (lexical and hybrid modes). The defaults were picked on
    # homedepot dev: nDCG@10 0.364 with bm25s's tokenizer at k1 1.5, b 0.75; 0.399 with the
    # product analyzer at these k1 and b; 0.404 with the speller too (bench/lexical.py).
    bm25_analyzer: BM25Analyzer = "product"
    bm25_k1: float = 0.5
    bm25_b: float = 0.6
    # Query terms the index lacks count as their nearest indexed word (retrieval/term_matcher.py):
    # homedepot dev hybrid nDCG@10 0.4207 -> 0.4272 (aisle tune-fusion, default cascade).
    bm25_fuzzy: bool = True

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise AisleError(f"index kind {self.kind!r} is unknown; use one of {INDEX_KINDS}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "pq_m", "rerank"):
            if getattr(self, name) < 1:
                raise AisleError(f"index config {name} must be >= 1, got {getattr(self, name)}")
        for name in ("nlist", "train_size", "kmeans_iters"):
            if getattr(self, name) < 0:
                raise AisleError(f"index config {name} must be >= 0 (0 = auto)")
        if self.rerank_codes not in get_args(RerankCodes):
            raise AisleError(f"index config rerank_codes {self.rerank_codes!r} is unknown; use "
                             f"one of {get_args(RerankCodes)}")
        if self.rerank_codes != "float32" and self.kind != "ivf_pq":
            raise AisleError(f"rerank_codes={self.rerank_codes} is for kind=ivf_pq (its re-rank); "
                             f"{self.kind} keeps no re-rank codes")
        if not 1 <= self.pq_nbits <= 16:
            raise AisleError(f"index config pq_nbits must be in 1..16, got {self.pq_nbits}")
        if self.fast_scan and self.device == "gpu":
            raise AisleError("ivf_pq with pq_nbits=4 (fast-scan) builds on CPU only; use "
                             "device=auto or cpu, or pq_nbits=8 to build on the GPU")
        if self.coarse not in get_args(CoarseQuantizer):
            raise AisleError(f"index config coarse {self.coarse!r} is unknown; use one of "
                             f"{get_args(CoarseQuantizer)}")
        if self.coarse == "hnsw" and self.device == "gpu":
            raise AisleError("coarse=hnsw (an HNSW graph over the IVF centroids) builds on CPU "
                             "only; use device=auto or cpu, or coarse=flat to build on the GPU")
        if self.bm25_analyzer not in get_args(BM25Analyzer):
            raise AisleError(
                f"index config bm25_analyzer {self.bm25_analyzer!r} is unknown; use one of "
                f"{get_args(BM25Analyzer)}"
            )
        if not 0 < self.bm25_k1 < math.inf:  # inf wrote a BM25 index no search could read
            raise AisleError(f"index config bm25_k1 must be > 0 and finite, got {self.bm25_k1}")
        if not 0 <= self.bm25_b <= 1:
            raise AisleError(f"index config bm25_b must be in [0, 1], got {self.bm25_b}")

    @property
    def fast_scan(self) -> bool:
        """Whether this is IVF-PQ in faiss's fast-scan layout (4-bit codes; CPU only)."""
        return self.kind == "ivf_pq" and self.pq_nbits == 4

    @property
    def cpu_only(self) -> bool:
        """Whether faiss can build this only on CPU (fast-scan lists, an HNSW coarse
        quantizer); such a config refuses device=gpu."""
        return self.fast_scan or self.coarse == "hnsw"


# What an index manifest written before the BM25 fields existed was built with.
LEGACY_BM25: dict[str, object] = {
    "bm25_analyzer": "word",
    "bm25_k1": 1.5,
    "bm25_b": 0.75,
    "bm25_fuzzy": False,
}


def stored_index_config(raw: dict[str, object]) -> IndexConfig:
    """The ``IndexConfig`` an index manifest records; older manifests get ``LEGACY_BM25``,
    and a fast-scan index from before ``pq_residual`` existed encoded raw vectors."""
    legacy = dict(LEGACY_BM25)
    if "pq_residual" not in raw and raw.get("pq_nbits") == 4:
        legacy["pq_residual"] = False
    return from_dict(IndexConfig, {**legacy, **raw})


# The default approximate index, from bench/ann.py on 1M x 384 real-grown vectors with real
# queries (docs/results.md): IVF-PQ, 4,000 lists (auto), 48 x 8-bit codes, nprobe 48, exact
# re-rank of 500: recall@10 0.954 vs exact at 0.64 ms/query of one core's CPU time, 86x less
# than flat. IVF-Flat needs nprobe 32 and 2.2 ms for 0.950; HNSW (M=32, efConstruction=40)
# reached 0.87 at 1.5 ms. IVF-PQ also builds on a GPU. It cannot remove vectors (its exact
# re-rank cannot), so `aisle index update` rebuilds it from the cached vectors.
APPROXIMATE = IndexConfig(kind="ivf_pq", nprobe=48, rerank=500)


Mode = Literal["dense", "lexical", "hybrid"]
FusionMethod = Literal["convex", "rrf"]


@dataclass(frozen=True)
class FusionConfig:
    """How hybrid mode fuses the dense and the lexical candidate lists (retrieval/fusion.py)."""

    method: FusionMethod = "convex"
    # Weight of the dense side in the convex combination; `aisle tune-fusion` picks it on dev.
    weight: float = 0.5
    # RRF's constant (Cormack et al. 2009 use 60).
    rrf_k: float = 60.0
    # Candidates taken from each side before fusing, per side. One depth for both sides, on
    # homedepot dev with an HNSW dense side (bench/query_path.py, 2026-12-03): nDCG@10 0.4102 /
    # 0.4110 / 0.4141 / 0.4145 / 0.4146 at depth 25 / 50 / 100 / 200 / 400. Per side
    # (2026-12-04, the demo's int8 cascade, `aisle evaluate` at k = 100 and `aisle compare`):
    # dense 100 / lexical 200 (fusion weight re-tuned on dev) ties nDCG@10 (dev +0.0005, test
    # +0.0002) and saves the dense side ~0.5 ms a cold query, but loses condensed nDCG@10
    # (dev -0.0050 [-0.0087, -0.0016], test -0.0080 [-0.0132, -0.0031]) and test recall@100
    # (-0.0142 [-0.0232, -0.0057]): the judged products a 100-long list holds past rank 10,
    # and the pool a re-ranker reads. So both sides stay at 200.
    dense_depth: int = 200
    lexical_depth: int = 200

    def __post_init__(self) -> None:
        for name in ("dense_depth", "lexical_depth"):
            if getattr(self, name) < 1:
                raise AisleError(f"fusion {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.weight <= 1.0:  # NaN fails too
            raise AisleError(f"fusion weight must be in [0, 1], got {self.weight}")
        if not 0.0 <= self.rrf_k < math.inf:
            raise AisleError(f"fusion rrf_k must be a finite number >= 0, got {self.rrf_k}")
