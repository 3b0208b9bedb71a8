"""BM25 analyzers on a real catalog with its real queries: build time, query cost, relevance.

    python bench/lexical.py --data ../shared/data/homedepot

Builds one BM25 index per analyzer (indexing/analyzer.py) over the catalog's product text, at
each analyzer's k1/b (the default IndexConfig's for "product", bm25s's 1.5/0.75 for "word"),
then times the split's queries one per call (process CPU time, what hybrid serving pays per
query for its lexical side) and scores the runs (nDCG@10, recall@100). Ratios are against the
"word" analyzer, measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

DEPTH = 200  # hybrid's default candidate depth (FusionConfig.depth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/homedepot"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the queries")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each build at DEBUG

    from aisle.data.dataset import load_dataset
    from aisle.evaluation.evaluator import score_run
    from aisle.evaluation.run import split_qrels, split_top_grade
    from aisle.indexing.config import IndexConfig, stored_index_config
    from aisle.indexing.lexical import BM25Index
    from aisle.towers.text import product_texts

    ds = load_dataset(args.data)
    texts, ids = product_texts(ds.products), ds.products["product_id"].tolist()
    qrels = split_qrels(ds, args.split)
    queries = ds.query_texts()
    qids = [q for q in qrels if q in queries]
    print(f"{len(texts):,} products, {len(qids):,} judged {args.split} queries, depth {DEPTH}")
    print("| analyzer | k1 | b | build s | µs/query p50 (CPU) | mean | nDCG@10 | recall@100 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = {}
    for config in (stored_index_config({}), IndexConfig()):
        started = time.process_time()
        index = BM25Index.build(
            texts, ids, config.bm25_analyzer, config.bm25_k1, config.bm25_b
        )
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
        rows[config.bm25_analyzer] = (build_s, p50, mean)
        print(f"| {config.bm25_analyzer} | {config.bm25_k1} | {config.bm25_b} | {build_s:.1f} "
              f"| {p50:.0f} | {mean:.0f} | {metrics['ndcg@10']:.4f} "
              f"| {metrics['recall@100']:.4f} |")
    word, product = rows["word"], rows["product"]
    print(f"product / word: build {product[0] / word[0]:.2f}x, query p50 "
          f"{product[1] / word[1]:.2f}x, query mean {product[2] / word[2]:.2f}x")


if __name__ == "__main__":
    main()
