"""Where a cold query's time goes: each stage of one query through the query path, in process.

    python bench/cold_path.py --index runs/demo/index --data runs/demo/data
    python bench/cold_path.py --index runs/demo/index --data runs/demo/data --backend torch
    python bench/cold_path.py --index runs/demo/index --data runs/demo/data --query-tower static

A cold query is one no cache has seen: it is prepared (normalised, spell-corrected), encoded
by the query tower, searched on both sides to hybrid's candidate depth and fused. Each stage is
timed on its own, one query per call and one thread for faiss, over the split's distinct
queries (the first 20 warm the process up and are not counted); the last row is the whole
hybrid search, through the same ``Retriever.search`` the service and ``aisle search`` call
(its spelling by then cached, as the first row's is not).
Prints p50 / p99 / mean ms per stage, CPU time (the honest number on a shared machine) and
wall. The service adds HTTP, the event loop and its thread hops on top (bench/serve.py).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from aisle.data.dataset import load_dataset
from aisle.retrieval.fusion import fuse
from aisle.retrieval.retriever import index_model, open_retriever
from aisle.retrieval.store import load_index

WARMUP = 20


def timed(calls: list[Callable[[], Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(CPU ms, wall ms) of each call."""
    cpu, wall = [], []
    for call in calls:
        c, w = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return np.array(cpu) * 1000, np.array(wall) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=400, help="distinct queries timed")
    parser.add_argument("--backend", default=None,
                        help="query tower backend (torch, onnx-fp32, onnx-int8; default: the "
                        "index's tower config)")
    parser.add_argument("--model", default=None, help="model dir (default: the index's model)")
    parser.add_argument("--query-tower", default=None, choices=("auto", "transformer", "static"),
                        help="which query tower (default: the index's tower config)")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    ds = load_dataset(args.data)
    texts = ds.queries.loc[ds.queries["split"] == args.split, "query"].drop_duplicates()
    texts = texts.tolist()[: args.queries + WARMUP]
    if len(texts) <= WARMUP:
        parser.error(f"the {args.split} split has {len(texts)} distinct queries; timing needs "
                     f"more than the {WARMUP} that warm the process up")
    index = load_index(args.index)
    model = index_model(index, args.model, args.backend, args.query_tower)
    retriever = open_retriever(index, model)
    faiss.omp_set_num_threads(1)

    fusion = retriever.fusion
    depth = max(args.k, fusion.lexical_depth)  # BM25's; the dense side's is fusion.dense_depth
    # Timed first: the speller caches each word's correction, so a later pass is warm.
    spelling = timed([lambda t=t: retriever.prepare([t]) for t in texts])
    prepared = [retriever.prepare([t]) for t in texts]
    vectors = [retriever.embed(q) for q in prepared]
    dense_and_lexical = [retriever.candidates(q, args.k, v) for q, v in zip(prepared, vectors,
                                                                          strict=True)]
    stages: dict[str, list[Callable[[], Any]]] = {
        f"encode ({model.query_runtime})": [lambda q=q: retriever.embed(q) for q in prepared],
        f"dense + BM25 candidates (depths {fusion.dense_depth} / {depth})": [
            lambda q=q, v=v: retriever.candidates(q, args.k, v)
            for q, v in zip(prepared, vectors, strict=True)],
        f"BM25 candidates (depth {depth})": [
            lambda q=q: retriever.lexical_ranked(q, depth) for q in prepared],
        "fusion": [lambda c=c: fuse(c[0][0], c[1][0], args.k, retriever.fusion)
                   for c in dense_and_lexical],
        "whole hybrid search (texts in)": [
            lambda t=t: retriever.search_texts([t], args.k, "hybrid") for t in texts],
    }
    print(f"{len(texts) - WARMUP} {args.split} queries of {ds.name}, k {args.k}, index "
          f"{args.index}, {model.query_runtime} query tower, one query a call, one faiss thread\n")
    print("| stage | CPU p50 ms | CPU p99 ms | CPU mean ms | wall mean ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    results = {"prepare (normalise, spell; first sight)": spelling}
    term_matcher = getattr(retriever.lexical, "_speller", None)
    for name, calls in stages.items():
        # BM25 caches its term corrections: forgotten before each stage, so that the stages
        # that search it meet each query's words as the service first does.
        if term_matcher is not None:
            term_matcher.correct.cache_clear()
        results[name] = timed(calls)
    for name, (cpu, wall) in results.items():
        cpu, wall = cpu[WARMUP:], wall[WARMUP:]
        print(f"| {name} | {np.percentile(cpu, 50):.3f} | {np.percentile(cpu, 99):.3f} "
              f"| {cpu.mean():.3f} | {wall.mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
