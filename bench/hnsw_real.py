"""HNSW's efConstruction on a real catalog with its real queries, against exact search.

    python bench/hnsw_real.py --index runs/hd-base-int8 --data ../shared/data/homedepot

Reads the product vectors of a built index (any kind that can reconstruct them: flat, HNSW),
encodes the data's test queries with the index's model, and builds HNSW graphs (M = 32) at each
--ef-construction. For each graph and --ef-search it prints the build seconds (one thread),
single-thread µs per query (one query per call, process CPU time) and recall@10 against exact
search over the same vectors. This is the measurement behind IndexConfig.ef_construction.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

K = 10
_faiss: Any = faiss  # the SWIG module's stubs lack the search-parameter classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True, help="an index root or version dir")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/homedepot"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--ef-construction", default="40,200")
    ap.add_argument("--ef-search", default="32,64,128")
    ap.add_argument("--m", type=int, default=32)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from aisle.retrieval.retriever import index_model
    from aisle.retrieval.store import load_index

    index = load_index(args.index)
    stored = index.searcher.index  # type: ignore[attr-defined]
    xb = stored.reconstruct_n(0, stored.ntotal)
    q = pd.read_csv(args.data / "queries.csv", dtype=str, keep_default_na=False)
    texts = q.loc[q["split"] == args.split, "query"].drop_duplicates().tolist()
    xq = np.ascontiguousarray(index_model(index).encode_query(texts).numpy(), dtype=np.float32)
    _, truth = faiss.knn(xq, xb, K, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"{len(xb):,} products x {xb.shape[1]}, {len(xq):,} {args.split} queries, M = {args.m}")
    print("| efConstruction | build s (1 thread) | ef_search | µs/query (CPU) | recall@10 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    faiss.omp_set_num_threads(1)
    for efc in (int(v) for v in args.ef_construction.split(",")):
        graph = faiss.IndexHNSWFlat(xb.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = efc
        started = time.perf_counter()
        graph.add(xb)
        build_s = time.perf_counter() - started
        for ef in (int(v) for v in args.ef_search.split(",")):
            params = _faiss.SearchParametersHNSW(efSearch=ef)
            cpu = time.process_time()
            found = np.empty((len(xq), K), dtype=np.int64)
            for i in range(len(xq)):
                found[i] = graph.search(xq[i : i + 1], K, params=params)[1][0]
            us = (time.process_time() - cpu) / len(xq) * 1e6
            recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
            print(f"| {efc} | {build_s:.1f} | {ef} | {us:.0f} | {recall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
