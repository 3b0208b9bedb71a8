"""BM25 analyzers on a real catalog with its real queries: build time, query cost, relevance.

    python bench/lexical.py --data ../shared/data/homedepot [--split dev --k1 0.5,0.9 --b 0.4,0.6
                                                             --no-speller]

Builds BM25 indexes (retrieval/analyzer.py) over the catalog's product text: the "word" analyzer
at bm25s's k1 1.5 / b 0.75 without a speller (the baseline), the default IndexConfig without
its speller (retrieval/term_matcher.py), then the "product" analyzer with it (without it under
--no-speller) at each --k1 x --b (by default only the IndexConfig default). For each it
times the split's queries one per call (process CPU time: what hybrid serving pays per query
for its lexical side) and scores the run (nDCG@10, recall@100). Ratios are against the
baseline, measured in the same run. On dev with --no-speller, the grid is the measurement
behind IndexConfig's bm25_k1 and bm25_b.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path

DEPTH = 200  # hybrid's default lexical candidate depth (FusionConfig.lexical_depth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/homedepot"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the queries")
    ap.add_argument("--k1", default="", help="comma-separated k1 values for the product analyzer")
    ap.add_argument("--b", default="", help="comma-separated b values for the product analyzer")
    ap.add_argument("--no-speller", action="store_true",
                    help="grid cells without the speller (how k1 and b were picked)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bm25s").propagate = False  # it logs each build at DEBUG

    from aisle.data.dataset import load_dataset
    from aisle.evaluation.evaluator import score_run
    from aisle.evaluation.run import split_qrels, split_top_grade
    from aisle.retrieval.config import IndexConfig, stored_index_config
    from aisle.retrieval.lexical import BM25Index
    from aisle.towers.text import product_texts

    ds = load_dataset(args.data)
    texts, ids = product_texts(ds.products), ds.products["product_id"].tolist()
    qrels = split_qrels(ds, args.split)
    queries = ds.query_texts()
    qids = [q for q in qrels if q in queries]
    print(f"{len(texts):,} products, {len(qids):,} judged {args.split} queries, depth {DEPTH}")
    print("| analyzer | fuzzy | k1 | b | build s | µs/query p50 (CPU) | mean | nDCG@10 | "
          "recall@100 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    default = IndexConfig()
    k1s = [float(v) for v in args.k1.split(",")] if args.k1 else [default.bm25_k1]
    bs = [float(v) for v in args.b.split(",")] if args.b else [default.bm25_b]
    configs = [stored_index_config({}), replace(default, bm25_fuzzy=False)] + [
        replace(default, bm25_k1=k1, bm25_b=b, bm25_fuzzy=not args.no_speller)
        for k1 in k1s
        for b in bs
    ]
    baseline: tuple[float, float, float] | None = None
    for config in configs:
        started = time.process_time()
        index = BM25Index.from_config(texts, ids, config)
        build_s = time.process_time() - started
        costs = []
        for _ in range(args.repeat):
            for qid in qids:
                started = time.process_time()
                index.search([queries[qid]], DEPTH)
                costs.append(time.process_time() - started)
        run = {q: [p for p, _ in hits] for q, hits in
               zip(qids, index.search([queries[q] for q in qids], DEPTH), strict=True)}
        metrics = score_run(run, qrels, split_top_grade(ds, qrels))
        p50, mean = statistics.median(costs) * 1e6, statistics.fmean(costs) * 1e6
        baseline = baseline or (build_s, p50, mean)
        print(f"| {config.bm25_analyzer} | {config.bm25_fuzzy} | {config.bm25_k1} "
              f"| {config.bm25_b} | {build_s:.1f} "
              f"({build_s / baseline[0]:.2f}x) | {p50:.0f} ({p50 / baseline[1]:.2f}x) "
              f"| {mean:.0f} ({mean / baseline[2]:.2f}x) | {metrics['ndcg@10']:.4f} "
              f"| {metrics['recall@100']:.4f} |")


if __name__ == "__main__":
    main()
