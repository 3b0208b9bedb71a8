"""BM25 query latency: bm25s's dense get_scores against BM25Index's sparse scorer, same run.

    python bench/bm25_latency.py [--data ../shared/data/homedepot --k 10,50,100,200
                                  --limit 0 --repeat 1]

Builds the default BM25 index (IndexConfig) over the catalog's product text, then searches every
query of queries.csv one per call, as hybrid serving does, two ways, interleaved query by query
so both see the same machine: "dense" is BM25Index.search as it was before the sparse scorer
(bm25s's get_scores over the whole catalog, then flatnonzero, partition and lexsort), "sparse"
is BM25Index.search. Every pair of result lists must hold the same ids in the same order with
scores within 1e-6 relative; the run fails otherwise. Prints wall-clock p50 and p99 per call in
milliseconds for each k and the dense/sparse ratios, then what analysing the query and
correcting its terms costs: the same on both paths, with the speller's per-term cache cold (a
term's first sight) and warm (the timed passes run after a pass over every query warms it).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np

from aisle.retrieval.lexical import BM25Index

logger = logging.getLogger("bm25_latency")

REPO = Path(__file__).resolve().parents[1]
Hits = list[tuple[str, float]]


def dense_search(index: BM25Index, query: str, k: int) -> Hits:
    """BM25Index.search's body before the sparse scorer: the baseline and the reference."""
    (tokens,) = index._analyze([query])
    known = [t for t in map(index._known, tokens) if t]
    if not known:
        return []
    scores = np.asarray(index._retriever.get_scores(known), dtype=np.float64)
    hits = np.flatnonzero(scores > 0.0)
    if len(hits) > k:
        kth = np.partition(scores[hits], len(hits) - k)[len(hits) - k]
        hits = hits[scores[hits] >= kth]
    order = np.lexsort((hits, -scores[hits]))[:k]
    return [(str(index._ids[i]), float(scores[i])) for i in hits[order]]


def same(reference: Hits, got: Hits) -> bool:
    return [p for p, _ in reference] == [p for p, _ in got] and all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)
        for (_, a), (_, b) in zip(reference, got, strict=True)
    )


def percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(seconds) * 1e3, [50, 99])
    return float(p50), float(p99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "homedepot")
    ap.add_argument("--k", default="10,50,100,200", help="comma-separated depths")
    ap.add_argument("--limit", type=int, default=0, help="first N queries only (0: all)")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes over the queries")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bm25s").propagate = False  # it logs each build at DEBUG

    from aisle.data.dataset import load_dataset
    from aisle.retrieval.config import IndexConfig
    from aisle.towers.text import product_texts

    ds = load_dataset(args.data)
    started = time.perf_counter()
    index = BM25Index.from_config(
        product_texts(ds.products), ds.products["product_id"].tolist(), IndexConfig()
    )
    logger.info("built over %d products in %.1f s", len(index), time.perf_counter() - started)
    queries = ds.queries["query"].tolist()
    if args.limit:
        queries = queries[: args.limit]
    depths = [int(v) for v in args.k.split(",")]
    for query in queries[:200]:  # warm caches and lazy imports on both paths
        dense_search(index, query, max(depths))
        index.search([query], max(depths))

    # Both paths analyse the query and correct its terms first. The speller caches its
    # answers per term: the first pass pays each correction, later ones (the timed paths
    # too) find them cached.
    analysis: dict[str, list[float]] = {"cold": [], "warm": []}
    if index._speller is not None:  # the warm-up above filled it
        index._speller.correct.cache_clear()
    for seconds in analysis.values():
        for query in queries:
            t0 = time.perf_counter()
            (tokens,) = index._analyze([query])
            for term in tokens:
                index._known(term)
            seconds.append(time.perf_counter() - t0)
    rows = []
    for k in depths:
        dense: list[float] = []
        sparse: list[float] = []
        mismatches = inexact = hits = 0
        for _ in range(args.repeat):
            for query in queries:
                t0 = time.perf_counter()
                reference = dense_search(index, query, k)
                t1 = time.perf_counter()
                (got,) = index.search([query], k)
                t2 = time.perf_counter()
                dense.append(t1 - t0)
                sparse.append(t2 - t1)
                mismatches += not same(reference, got)
                inexact += reference != got  # any score off by a bit
                hits += len(got)
        logger.info("k=%d: %d queries x %d, %d hits, %d mismatches, %d not bit for bit",
                    k, len(queries), args.repeat, hits, mismatches, inexact)
        rows.append((k, percentiles(dense), percentiles(sparse), mismatches))

    print(f"{len(index):,} products, {len(queries):,} queries x {args.repeat}, "
          "wall ms per single-query call")
    print("| k | dense p50 | dense p99 | sparse p50 | sparse p99 | p50 ratio | p99 ratio "
          "| mismatches |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, (d50, d99), (s50, s99), bad in rows:
        print(f"| {k} | {d50:.3f} | {d99:.3f} | {s50:.3f} | {s99:.3f} | {d50 / s50:.1f}x "
              f"| {d99 / s99:.1f}x | {bad} |")
    print("of which query analysis and term correction, the same on both paths (the table's"
          " passes run with the speller's cache warm):")
    for cache, seconds in analysis.items():
        a50, a99 = percentiles(seconds)
        print(f"  speller cache {cache}: p50 {a50:.3f}, p99 {a99:.3f}")
    if any(bad for *_, bad in rows):
        raise SystemExit("the sparse scorer's results differ from get_scores'")


if __name__ == "__main__":
    main()
