"""What re-ranking costs: one query's first-stage candidates scored by the cross-encoder.

    python bench/rerank.py --index runs/demo/index --data runs/demo/data \
        --reranker runs/demo/reranker

Each query of the split (distinct, the first 10 warm the process up) gets its top ``--depth``
first-stage products (the index's default mode, as ``aisle search`` ranks), and the
cross-encoder scores those pairs in one call, as the re-ranking stage does. Every backend the
cross-encoder has (torch fp32, ONNX fp32, ONNX int8, which scores a pair a call) runs over the
same pairs in the same process, interleaved query by query so machine noise falls on all of
them alike; so does the int8 graph scoring each query's pairs in one call, as it did before
2026-12-05, with how far its scores and top 10 differ. Prints p50 / p95 / mean wall ms per
query, CPU ms, and each backend's p50 as a ratio of torch's.
Threads: ``--threads`` sets torch's (default all); ONNX Runtime uses every core (fp32 as
intra-op threads, int8 as one worker per core, aisle/towers/calls.py).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from aisle.artifacts import read_manifest
from aisle.data.dataset import load_dataset
from aisle.rerank.model import BATCH, KIND, OnnxCrossScorer, load_reranker
from aisle.retrieval.rerank import rerank_pairs
from aisle.retrieval.retriever import index_model, open_retriever
from aisle.retrieval.store import load_index

WARMUP = 10
TOP = 10
BATCHED = "onnx-int8, a query a call"


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

    manifest = read_manifest(args.reranker, KIND)
    manifest_files = manifest.get("onnx", {}).get("files", {})
    backends = ["torch", *(f"onnx-{p}" for p in ("fp32", "int8") if p in manifest_files)]
    scorers = {b: load_reranker(args.reranker, b).scorer for b in backends}  # type: ignore[arg-type]
    if "int8" in manifest_files:  # the int8 graph as it ran before 2026-12-05: a call a query
        backends.append(BATCHED)
        scorers[BATCHED] = OnnxCrossScorer.from_export(
            args.reranker, manifest,
            args.reranker / manifest["onnx"]["dir"] / manifest_files["int8"], int8=True,
            per_call=BATCH)
    scores: dict[str, list[np.ndarray]] = {b: [] for b in backends}
    wall: dict[str, list[float]] = {b: [] for b in backends}
    cpu: dict[str, list[float]] = {b: [] for b in backends}
    for i, query_pairs in enumerate(pairs):
        for b in backends:
            c, w = time.process_time(), time.perf_counter()
            scores[b].append(scorers[b].score(query_pairs))
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
        ms = np.array(wall[b])
        print(f"| {b} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 95):.1f} | "
              f"{ms.mean():.1f} | {np.mean(cpu[b]):.1f} | "
              f"{np.percentile(ms, 50) / base:.2f} |")
    if BATCHED in scores:
        alone, batched = scores["onnx-int8"], scores[BATCHED]
        diff = np.concatenate([np.abs(a - b) for a, b in zip(alone, batched, strict=True)])
        moved = np.mean([not np.array_equal(top(a), top(b))
                         for a, b in zip(alone, batched, strict=True)])
        print(f"int8, a pair a call against a query's pairs in one call: mean |logit diff| "
              f"{diff.mean():.4f} (max {diff.max():.4f}); queries whose cross-encoder top "
              f"{TOP} differs in order: {moved:.1%}")


def top(scores: np.ndarray) -> np.ndarray:
    """The first ``TOP`` candidates by score, best first (ties by position)."""
    return np.argsort(-scores, kind="stable")[:TOP]


if __name__ == "__main__":
    main()
