"""What re-ranking costs: one query's first-stage candidates scored by the cross-encoder.

    python bench/rerank.py --index runs/demo/index --data runs/demo/data \
        --reranker runs/demo/reranker

Each query of the split (distinct, the first 10 warm the process up) gets its top ``--depth``
first-stage products (the index's default mode, as ``aisle search`` ranks), and the
cross-encoder scores those pairs in one call, as the re-ranking stage does. Every backend the
cross-encoder has (torch fp32, ONNX fp32, ONNX int8) runs over the same pairs in the same
process, interleaved query by query so machine noise falls on all of them alike. Prints
p50 / p95 / mean wall ms per query, CPU ms, and each backend's p50 as a ratio of torch's.
Threads: torch and ONNX Runtime use every core they are given (``--threads``, default all).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from aisle.data.dataset import load_dataset
from aisle.rerank.model import load_reranker
from aisle.retrieval.rerank import rerank_pairs
from aisle.retrieval.retriever import index_model, open_retriever
from aisle.retrieval.store import load_index

WARMUP = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    parser.add_argument("--reranker", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", type=int, default=200, help="distinct queries timed")
    parser.add_argument("--depth", type=int, default=50, help="candidates per query")
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_dataset(args.data)
    texts = sorted(set(ds.split_queries(args.split)["query"].astype(str)))
    texts = texts[: args.queries + WARMUP]
    index = load_index(args.index)
    retriever = open_retriever(index, index_model(index))
    found = retriever.search_texts(texts, args.depth)
    pairs = []
    for f in found:
        head = [h.product_id for h in f.hits]
        pairs.append(rerank_pairs(f.query.text, head, retriever.rerank_texts(head)))

    manifest_files = load_reranker(args.reranker, "torch").manifest.get("onnx", {}).get(
        "files", {})
    backends = ["torch", *(f"onnx-{p}" for p in ("fp32", "int8") if p in manifest_files)]
    scorers = {b: load_reranker(args.reranker, b).scorer for b in backends}  # type: ignore[arg-type]
    wall: dict[str, list[float]] = {b: [] for b in backends}
    cpu: dict[str, list[float]] = {b: [] for b in backends}
    for i, query_pairs in enumerate(pairs):
        for b in backends:
            c, w = time.process_time(), time.perf_counter()
            scorers[b].score(query_pairs)
            if i >= WARMUP:
                cpu[b].append((time.process_time() - c) * 1000)
                wall[b].append((time.perf_counter() - w) * 1000)

    mean_pairs = np.mean([len(p) for p in pairs[WARMUP:]])
    print(f"{len(wall['torch'])} {args.split} queries, {mean_pairs:.1f} candidates each, "
          f"{torch.get_num_threads()} threads")
    print("| backend | p50 ms | p95 ms | mean ms | CPU ms (mean) | p50 / torch p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = float(np.percentile(wall["torch"], 50))
    for b in backends:
        w = np.array(wall[b])
        print(f"| {b} | {np.percentile(w, 50):.1f} | {np.percentile(w, 95):.1f} | "
              f"{w.mean():.1f} | {np.mean(cpu[b]):.1f} | "
              f"{np.percentile(w, 50) / base:.2f} |")


if __name__ == "__main__":
    main()
