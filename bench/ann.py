"""ANN index types on a million real-looking product vectors, against exact search, in one run.

    nice -n 15 python bench/ann.py                                  # 1M x 384, all kinds
    nice -n 15 python bench/ann.py --n 200000 --kinds flat,hnsw --queries 500
    nice -n 15 python bench/ann.py --set hnsw_m=16 --set ef_construction=80
    nice -n 15 python bench/ann.py --n 10000000 --shard 250000 --real 20000 --queries 500 \
        --kinds ivf_pq --set pq_m=192 --set pq_nbits=4 --set rerank_codes=sq8 \
        --set nlist=16384 --set coarse=hnsw --set kmeans_iters=10 --set train_size=655360
                                         # 10M in a memory budget: fast-scan PQ, sharded

Sharded (``--shard``): the grown vectors are never all in memory. Each shard is generated from
its own seed, twice: once to find the exact top 10 (merged shard by shard) and draw the
training sample, once to add it to the index (``build_faiss_index_sharded``). Flat is then
not built (it would hold every vector); each row also reports the process's peak resident
memory so far (its high-water mark: the build's peak, as the index is the largest thing held)
and the peak resident memory of a fresh process that loads the saved index and searches it
(what serving it costs: no build, no training sample, no torch).

On a machine shared with other jobs set OMP_WAIT_POLICY=PASSIVE: OpenMP threads that spin on
busy cores waste most of a niced build's CPU share.

Data. The homedepot and instacart catalogs (about 80k products) and the homedepot queries
(about 12k) go through the base model (``load_model(None)``); the embeddings are cached under
runs/bench-cache/ keyed by model fingerprint and text hash, since encoding them takes many
minutes on a small CPU. The catalog grows to ``--n`` vectors by copying real product vectors
round-robin, each copy with isotropic Gaussian noise, renormalised. Queries are real query
embeddings (a seeded sample); ground truth is exact top-10 inner product over the grown set.

Noise. The grown set should be as dense as the real catalog, no denser, no sparser: the
median cosine between a vector and its nearest neighbour in it should match the real
catalog's (measured on the encoded products and printed, with the grown set's value as a
check). Two noisy copies of one product have cosine about c^2 when each has cosine c to the
source, and a copy's nearest neighbour is mostly another copy of the same product, so
c = sqrt(real median NN cosine). Less noise makes tight clusters of copies that flatter IVF
(and HNSW); more noise drowns the catalog's real structure in isotropic noise, the worst case
no catalog looks like. (The first 1M run used c = the real NN cosine itself; that grown set's
NN cosine was ~c^2, far sparser than the real catalog, see docs/results.md.)
``--copy-cosine`` overrides c.

Reported per index type and knob setting: build seconds (wall, all threads), bytes per vector
(the serialised index / N), single-thread ms/query (``faiss.omp_set_num_threads(1)``, one query
per call, wall and process CPU time: the CPU time is the honest number on a shared machine),
recall@10 vs exact, and ratios against flat from this same run.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from aisle.configs import load_config
from aisle.data.canonical import read_csv_strict, validate_products
from aisle.data.schema import PRODUCTS, QUERIES
from aisle.indexing.ann import build_faiss_index, resolve_nlist
from aisle.retrieval.config import INDEX_KINDS, IndexConfig
from aisle.retrieval.searcher import FaissSearcher, SearchParams, searcher_for
from aisle.towers.model import TwoTowerModel, load_model

log = logging.getLogger("bench.ann")
ROOT = Path(__file__).resolve().parents[1]
K = 10
# Knob settings per kind, cheapest first.
SWEEPS: dict[str, list[SearchParams]] = {
    "flat": [SearchParams()],
    "hnsw": [SearchParams(ef_search=e) for e in (16, 32, 64, 128, 256, 512)],
    "ivf_flat": [SearchParams(nprobe=p) for p in (8, 16, 32, 64, 128)],
    "ivf_pq": [
        SearchParams(nprobe=p, rerank=r)
        for p, r in ((16, 100), (16, 500), (24, 500), (32, 200), (32, 500), (48, 200),
                     (48, 300), (48, 500), (48, 1000), (64, 200), (64, 500), (64, 1000),
                     (96, 200), (96, 300), (96, 500), (96, 1000), (128, 200), (128, 500),
                     (128, 1000))
    ],
}


def cached(cache: Path, name: str, fingerprint: str, texts: list[str], encode) -> np.ndarray:  # type: ignore[no-untyped-def]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    path = cache / f"{name}-{fingerprint}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    log.info("encoding %d %s texts (cached at %s afterwards)", len(texts), name, path)
    vectors = np.ascontiguousarray(encode(texts), dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def real_embeddings(
    model: TwoTowerModel, data: Path, cache: Path, n_products: int, n_queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(products, queries): homedepot + instacart product vectors, homedepot query vectors.

    ``n_products`` (0 = all) and ``n_queries`` are seeded samples, taken before encoding.
    """
    frames = []
    for name in ("homedepot", "instacart"):
        path = data / name / "products.csv"
        frames.append(validate_products(read_csv_strict(path, PRODUCTS), path))
    products = pd.concat(frames, ignore_index=True)
    qpath = data / "homedepot" / "queries.csv"
    queries = read_csv_strict(qpath, QUERIES)["query"].drop_duplicates().tolist()
    rng = np.random.default_rng(seed)
    if 0 < n_products < len(products):
        products = products.iloc[np.sort(rng.choice(len(products), n_products, replace=False))]
    picked = rng.choice(len(queries), min(n_queries, len(queries)), replace=False)
    texts = model.product_texts(products)
    pvec = cached(cache, "products", model.fingerprint, texts,
                  lambda t: model.product.encode(t, progress=True).numpy())
    qvec = cached(cache, "queries", model.fingerprint, [queries[i] for i in picked],
                  lambda t: model.encode_query(t, progress=True).numpy())
    return pvec, qvec


def median_nn_cosine(base: np.ndarray, sample: int, rng: np.random.Generator) -> float:
    rows = rng.choice(len(base), min(sample, len(base)), replace=False)
    scores, ids = faiss.knn(base[rows], base, 2, metric=faiss.METRIC_INNER_PRODUCT)
    # The first hit is the product itself (or an exact duplicate title): take the best other.
    other = np.where(ids[:, 0] == rows, scores[:, 1], scores[:, 0])
    return float(np.median(other))


def grown_nn_cosine(x: np.ndarray, sample: int, rng: np.random.Generator) -> float:
    rows = rng.choice(len(x), min(sample, len(x)), replace=False)
    scores, _ = faiss.knn(x[rows], x, 2, metric=faiss.METRIC_INNER_PRODUCT)
    return float(np.median(scores[:, 1]))  # scores[:, 0] is the vector itself


def grow(base: np.ndarray, n: int, copy_cosine: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors: base rows round-robin (shuffled), each plus Gaussian noise.

    With noise N(0, s^2 I_d), |noise|^2 ~ s^2 d, so cos(copy, source) ~ 1 / sqrt(1 + s^2 d).
    """
    d = base.shape[1]
    s = np.sqrt((1 / copy_cosine**2 - 1) / d)
    order = rng.permutation(n) % len(base)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        src = base[order[start : start + 100_000]]
        block = src + rng.standard_normal(src.shape, dtype=np.float32) * np.float32(s)
        faiss.normalize_L2(block)
        out[start : start + len(block)] = block
    return out


def grown_shard(base: np.ndarray, start: int, size: int, copy_cosine: float, seed: int
                ) -> np.ndarray:
    """Rows ``start .. start + size`` of a grown set made shard by shard: base rows picked by
    a generator seeded from (seed, start), each plus noise as in ``grow``; the same arguments
    give the same shard."""
    rng = np.random.default_rng([seed, start])
    d = base.shape[1]
    s = np.sqrt((1 / copy_cosine**2 - 1) / d)
    block = base[rng.integers(len(base), size=size)]
    block = block + rng.standard_normal(block.shape, dtype=np.float32) * np.float32(s)
    block = np.ascontiguousarray(block, dtype=np.float32)
    faiss.normalize_L2(block)
    return block


def kind_config(base: IndexConfig, kind: str) -> IndexConfig:
    """``base`` for ``kind``: re-rank codes are IVF-PQ's only."""
    codes = base.rerank_codes if kind == "ivf_pq" else "float32"
    return replace(base, kind=kind, rerank_codes=codes)  # type: ignore[arg-type]


def peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sharded(args: argparse.Namespace, base_config: IndexConfig, kinds: list[str],
            products: np.ndarray, xq: np.ndarray, copy_cos: float, nn_cos: float) -> None:
    """The sweep over a grown set that is only ever held one shard at a time."""
    from aisle.indexing.ann import build_faiss_index_sharded, resolve_train_size

    starts = list(range(0, args.n, args.shard))
    sizes = [min(args.shard, args.n - a) for a in starts]

    def shards() -> Iterator[np.ndarray]:
        for a, size in zip(starts, sizes, strict=True):
            yield grown_shard(products, a, size, copy_cos, args.seed)

    train = max(resolve_train_size(kind_config(base_config, k), args.n,
                                   resolve_nlist(base_config, args.n)) for k in kinds)
    pick = np.random.default_rng(args.seed + 1)
    scores = np.full((len(xq), K), -np.inf, dtype=np.float32)
    truth = np.full((len(xq), K), -1, dtype=np.int64)
    samples = []
    started = time.perf_counter()
    for a, x in zip(starts, shards(), strict=True):  # pass 1: exact top 10, training sample
        s, i = faiss.knn(xq, x, K, metric=faiss.METRIC_INNER_PRODUCT)
        both_s, both_i = np.hstack([scores, s]), np.hstack([truth, i + a])
        order = np.argsort(-both_s, axis=1, kind="stable")[:, :K]
        scores = np.take_along_axis(both_s, order, axis=1)
        truth = np.take_along_axis(both_i, order, axis=1)
        share = round(train * len(x) / args.n)
        samples.append(x[np.sort(pick.choice(len(x), min(share, len(x)), replace=False))])
    sample = np.concatenate(samples)
    del samples, x, s, i, both_s, both_i  # the last shard and its merge: not needed again
    exact_s = time.perf_counter() - started
    print(f"\n{len(products):,} real product vectors -> {args.n:,} x {products.shape[1]} grown in "
          f"{len(starts)} shards of {args.shard:,} (copy cosine {copy_cos:.3f}; real median "
          f"nearest-neighbour cosine {nn_cos:.3f}); {len(xq):,} real queries; exact top-{K} "
          f"by scanning the shards in {exact_s:.0f}s ({exact_s * 1000 / len(xq):.1f} ms/query, "
          f"{faiss.omp_get_max_threads()} threads); training sample {len(sample):,}; nlist "
          f"{resolve_nlist(base_config, args.n)}\n")
    print(f"| kind | knobs | build s | bytes/vector | peak RSS GiB | served RSS GiB "
          f"| ms/query (CPU) | ms/query (wall) | recall@{K} |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    held = [sample]  # handed to the last build, which frees it once trained
    del sample
    for i, kind in enumerate(kinds):
        config = kind_config(base_config, kind)
        started = time.perf_counter()
        # Not bound to a name here: the last build holds the only reference, and frees it.
        index = build_faiss_index_sharded(
            config, args.n, held.pop() if i == len(kinds) - 1 else held[0], shards())
        build_s = time.perf_counter() - started
        size, served = saved_and_served(index, xq)
        size /= args.n
        searcher = searcher_for(index, config)
        for params in SWEEPS[kind]:
            wall, cpu, ids = timed_search(searcher, xq, params)
            print(f"| {kind} {codes_label(config)} "
                  f"| {knobs(params)} | {build_s:.0f} | {size:.0f} | {peak_rss_gb():.2f} "
                  f"| {served:.2f} | {cpu:.3f} | {wall:.3f} | {recall(ids, truth):.3f} |",
                  flush=True)
        del index, searcher


def codes_label(config: IndexConfig) -> str:
    """IVF-PQ's codes: PQ m x bits (fast-scan at 4 bits) and the re-rank codes."""
    if config.kind != "ivf_pq":
        return ""
    fast = " fast-scan" if config.fast_scan else ""
    return f"{config.pq_m}x{config.pq_nbits}{fast}, {config.rerank_codes} re-rank"


# A fresh process that loads a saved index and searches it, as a service would: its peak
# resident memory is what serving the index costs (no build, no training sample, no torch).
# Its high-water mark is read from /proc (VmHWM, this process image's own): getrusage's
# ru_maxrss survives fork and exec, so it would report the bench's own peak.
SERVE_CHILD = """
import sys
import faiss, numpy as np
index = faiss.read_index(sys.argv[1])
queries = np.load(sys.argv[2])
faiss.omp_set_num_threads(1)
for i in range(len(queries)):
    index.search(queries[i : i + 1], 10)
with open("/proc/self/status") as status:
    kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(kib / 2**20)
"""


def saved_and_served(index: faiss.Index, queries: np.ndarray) -> tuple[int, float]:
    """(bytes of the serialised index, peak RSS GiB of a process that loads and searches it)."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        faiss.write_index(index, str(path))
        np.save(Path(tmp) / "queries.npy", queries[:100])
        out = subprocess.run(
            [sys.executable, "-c", SERVE_CHILD, str(path), str(Path(tmp) / "queries.npy")],
            check=True, capture_output=True, text=True,
        )
        return path.stat().st_size, float(out.stdout.split()[-1])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f[:K]) & set(t[:K])) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / K


def timed_search(
    searcher: FaissSearcher, queries: np.ndarray, params: SearchParams
) -> tuple[float, float, np.ndarray]:
    """Single-thread, one query per call: (wall ms/query, CPU ms/query, ids)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        ids = np.empty((len(queries), K), dtype=np.int64)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(len(queries)):
            ids[i] = searcher.search(queries[i : i + 1], K, params)[1][0]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        faiss.omp_set_num_threads(threads)
    return wall * 1000 / len(queries), cpu * 1000 / len(queries), ids


def index_bytes(index: faiss.Index) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def knobs(params: SearchParams) -> str:
    parts = [f"{k}={v}" for k, v in vars(params).items() if v is not None]
    return " ".join(parts) or "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="catalog vectors (default 1M)")
    ap.add_argument("--queries", type=int, default=1000, help="real queries sampled")
    ap.add_argument("--real", type=int, default=0,
                    help="real products sampled from the two catalogs before encoding (0 = all)")
    ap.add_argument("--flat-queries", type=int, default=100,
                    help="queries timed on flat (one 1M flat search is ~100 ms)")
    ap.add_argument("--kinds", default=",".join(INDEX_KINDS), help="comma-separated kinds")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="IndexConfig override for every kind, e.g. hnsw_m=16")
    ap.add_argument("--copy-cosine", type=float, default=0.0,
                    help="cos(copy, source); 0 = sqrt(median real nearest-neighbour cosine)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard", type=int, default=0,
                    help="grow, search and build shard by shard, this many vectors a shard "
                    "(0: all in memory)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    # ivf_pq as the base kind, so that its own keys (rerank_codes) may be set; each kind below
    # keeps only what applies to it.
    base_config = load_config(IndexConfig, None, ["kind=ivf_pq", *args.set])
    rng = np.random.default_rng(args.seed)

    model = load_model(None)
    products, xq = real_embeddings(
        model, args.data, args.cache, args.real, args.queries, args.seed
    )
    del model  # its weights are not needed past encoding; the peak RSS below is the build's
    gc.collect()
    nn_cos = median_nn_cosine(products, 2000, rng)
    copy_cos = args.copy_cosine or float(np.sqrt(nn_cos))
    if args.shard:
        sharded(args, base_config, [k for k in kinds if k != "flat"], products, xq, copy_cos,
                nn_cos)
        return
    xb = grow(products, args.n, copy_cos, rng)
    grown_cos = grown_nn_cosine(xb, 200, rng)
    started = time.perf_counter()
    _, truth = faiss.knn(xq, xb, K, metric=faiss.METRIC_INNER_PRODUCT)
    print(
        f"\n{len(products):,} real product vectors -> {args.n:,} x {xb.shape[1]} "
        f"(copy cosine {copy_cos:.3f}; median nearest-neighbour cosine: real {nn_cos:.3f}, "
        f"grown {grown_cos:.3f}); "
        f"{len(xq):,} real queries; exact top-{K} in {time.perf_counter() - started:.1f}s "
        f"({faiss.omp_get_max_threads()} threads); "
        f"nlist (auto) = {resolve_nlist(base_config, args.n)}\n"
    )

    # Rows print as they are measured (a 1M run takes hours on a small shared CPU); flat goes
    # first in the default order so every later row has its ratio.
    print(f"| kind | knobs | build s | bytes/vector | ms/query (CPU) | ms/query (wall) "
          f"| recall@{K} | speed-up vs flat (CPU) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    flat_ms = 0.0
    for kind in kinds:
        config = kind_config(base_config, kind)
        started = time.perf_counter()
        index = build_faiss_index(config, xb)
        build_s = time.perf_counter() - started
        size = index_bytes(index) / args.n
        searcher = searcher_for(index, config)
        timed = xq[: args.flat_queries] if kind == "flat" else xq
        for params in SWEEPS[kind]:
            wall, cpu, ids = timed_search(searcher, timed, params)
            flat_ms = cpu if kind == "flat" else flat_ms
            ratio = f"{flat_ms / cpu:.0f}x" if flat_ms else "-"
            print(f"| {kind} | {knobs(params)} | {build_s:.0f} | {size:.0f} | {cpu:.3f} "
                  f"| {wall:.3f} | {recall(ids, truth[: len(timed)]):.3f} | {ratio} |", flush=True)
        del index, searcher


if __name__ == "__main__":
    main()
