"""Query-path choices, measured on a split (dev): spelling, BM25 term matching, hybrid's
candidate depth per side, and the index kind behind the dense side.

    python bench/query_path.py --data runs/demo/data --index runs/demo/index

Every row gives nDCG@10, condensed nDCG@10 (unjudged products dropped), judged@10 and
recall@100, and for the differences in nDCG@10 against the first row of its table a paired
bootstrap 95% interval over queries. The depth and kind tables also time one hybrid search
per query (k = 10, the query's vector already computed, as for a cached query): p50 and p99
in ms, on this machine, in this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aisle.data.dataset import load_dataset
from aisle.evaluation.metrics import (
    condensed_ndcg_at_k,
    judged_at_k,
    ndcg_at_k,
    recall_at_k,
)
from aisle.retrieval.config import IndexConfig, Mode
from aisle.retrieval.query import PreparedQuery, QueryPreparer
from aisle.retrieval.querytext import case_blind
from aisle.retrieval.retriever import Retriever, index_model, titles_speller
from aisle.retrieval.searcher import searcher_for
from aisle.retrieval.spelling import MIN_WORD
from aisle.retrieval.store import ProductIndex, load_index
from aisle.towers.model import TwoTowerModel

log = logging.getLogger("bench.query_path")
ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = 2000
# Queries each variant searches untimed before its latency is taken.
WARMUP = 20


def per_query(runs: dict[str, list[str]], qrels: dict[str, dict[str, float]],
              top_grade: float) -> dict[str, np.ndarray]:
    """Each metric per judged query (NaN where it is undefined), in qrels order."""
    rows: dict[str, list[float]] = {"ndcg": [], "condensed": [], "judged": [], "recall": []}
    for qid, grades in qrels.items():
        ranked = runs.get(qid, [])
        for name, value in (
            ("ndcg", ndcg_at_k(ranked, grades, 10)),
            ("condensed", condensed_ndcg_at_k(ranked, grades, 10)),
            ("judged", judged_at_k(ranked, grades, 10)),
            ("recall", recall_at_k(ranked, grades, 100, top_grade)),
        ):
            rows[name].append(np.nan if value is None else value)
    return {k: np.array(v) for k, v in rows.items()}


def interval(diff: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap 95% interval of the mean of per-query differences."""
    diff = diff[~np.isnan(diff)]
    rng = np.random.default_rng(seed)
    means = rng.choice(diff, size=(BOOTSTRAP, len(diff))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


class Bench:
    def __init__(self, data: Path, index_dir: Path, split: str) -> None:
        ds = load_dataset(data)
        self.qrels = ds.qrels(split)
        assert ds.top_grade is not None
        self.top_grade = ds.top_grade
        texts = ds.query_texts()
        self.qids = [q for q in self.qrels if q in texts]
        self.texts = [texts[q] for q in self.qids]
        self.index = load_index(index_dir, eager=True)
        self.model: TwoTowerModel = index_model(self.index)
        self.fold = case_blind(self.model)
        self._vectors: dict[str, np.ndarray] = {}

    def vectors(self, queries: Sequence[PreparedQuery]) -> np.ndarray:
        todo = sorted({q.text for q in queries} - set(self._vectors))
        for start in range(0, len(todo), 256):
            batch = todo[start : start + 256]
            for text, v in zip(batch, self.model.encode_query(batch).numpy(), strict=True):
                self._vectors[text] = v
        return np.stack([self._vectors[q.text] for q in queries]).astype(np.float32)

    def retriever(self, min_word: int = MIN_WORD, match_terms: bool = True,
                  index: ProductIndex | None = None, depths: tuple[int, int] | None = None
                  ) -> Retriever:
        speller = titles_speller(self.index.titles, self.model)
        speller.min_word = min_word
        fusion = self.index.fusion()
        if depths is not None:
            fusion = dataclasses.replace(fusion, dense_depth=depths[0], lexical_depth=depths[1])
        return Retriever(self.model, index or self.index, QueryPreparer(speller, self.fold),
                         fusion, match_terms=match_terms)

    def run(self, retriever: Retriever, mode: Mode, k: int) -> dict[str, np.ndarray]:
        queries = retriever.prepare(self.texts)
        vectors = self.vectors(queries)
        found = retriever.search(queries, k, mode, vectors)
        runs = {q: [h.product_id for h in f.hits] for q, f in zip(self.qids, found, strict=True)}
        return per_query(runs, self.qrels, self.top_grade)

    def latency(self, retriever: Retriever, mode: Mode) -> tuple[float, float]:
        queries = retriever.prepare(self.texts)
        vectors = self.vectors(queries)
        for i, q in enumerate(queries[:WARMUP]):  # untimed: first-query costs of this variant
            retriever.search([q], 10, mode, vectors[i : i + 1])
        took = []
        for i, q in enumerate(queries):
            started = time.perf_counter()
            retriever.search([q], 10, mode, vectors[i : i + 1])
            took.append((time.perf_counter() - started) * 1000)
        return float(np.percentile(took, 50)), float(np.percentile(took, 99))


def table(title: str, rows: list[tuple[str, dict[str, np.ndarray], str]]) -> None:
    print(f"\n{title}")
    print(f"| {'variant':<54} | nDCG@10 | cond. nDCG@10 | judged@10 | rec@100 | "
          f"d nDCG@10 vs first [95% CI] | latency |")
    print(f"|{'-' * 56}|---------|---------------|-----------|---------|"
          f"------------------------------|---------|")
    first = rows[0][1]["ndcg"]
    for name, m, extra in rows:
        lo, hi = interval(m["ndcg"] - first)
        delta = np.nanmean(m["ndcg"] - first)
        print(f"| {name:<54} | {np.nanmean(m['ndcg']):.4f}  | {np.nanmean(m['condensed']):.4f}"
              f"        | {np.nanmean(m['judged']):.4f}    | {np.nanmean(m['recall']):.4f}  | "
              f"{delta:+.4f} [{lo:+.4f}, {hi:+.4f}]     | {extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared or canonical dir")
    parser.add_argument("--index", type=Path, required=True, help="an index built over it")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--depths", default="200,25,50,100,400,100/200,150/200,50/200,200/100",
                        help="hybrid candidate depths: D (both sides) or D/L (dense/lexical); "
                        "the first is the table's reference row")
    parser.add_argument("--depth-kind", choices=["flat", "hnsw"], default="hnsw",
                        help="the dense side's index in the depth table")
    parser.add_argument("--skip", default="", help="tables to skip: spelling,depth,kind")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bench = Bench(args.data, args.index, args.split)
    skip = set(args.skip.split(","))
    log.info("%d %s queries, index %s", len(bench.qids), args.split, bench.index.root)

    if "spelling" not in skip:
        rows = []
        for min_word, match in ((MIN_WORD, True), (MIN_WORD, False), (4, True), (4, False)):
            r = bench.retriever(min_word, match)
            name = f"speller from {min_word} letters, BM25 term matching {'on' if match else 'off'}"
            rows.append((f"hybrid: {name}", bench.run(r, "hybrid", 100), ""))
            rows.append((f"dense: {name}", bench.run(r, "dense", 100), ""))
        rows.sort(key=lambda row: not row[0].startswith("hybrid"))
        table(f"spelling ({args.split}, k = 100)", rows)

    if "depth" not in skip:
        rows = []
        searched = with_kind(bench.index, args.depth_kind)
        for spec in args.depths.split(","):
            dense, _, lexical = spec.partition("/")
            depths = (int(dense), int(lexical or dense))
            r = bench.retriever(index=searched, depths=depths)
            p50, p99 = bench.latency(r, "hybrid")
            rows.append((f"hybrid, depth dense {depths[0]} / lexical {depths[1]} (k = 10)",
                         bench.run(r, "hybrid", 10), f"{p50:.2f} / {p99:.2f} ms"))
        table(f"hybrid candidate depth ({args.depth_kind} dense side, {args.split}; k = 10, so "
              "recall@100 means nothing here and condensed nDCG@10 condenses the top 10 only: "
              "a depth's effect deeper in the list needs aisle evaluate (k = 100) and aisle "
              "compare)", rows)

    if "kind" not in skip:
        flat = with_kind(bench.index, "flat")
        approx = with_kind(bench.index, "hnsw")
        rows = []
        for name, index in (("flat", flat), ("hnsw (M 32, ef_search 64)", approx)):
            r = bench.retriever(index=index)
            for mode in ("hybrid", "dense"):
                p50, p99 = bench.latency(r, mode)  # type: ignore[arg-type]
                rows.append((f"{mode}, {name}", bench.run(r, mode, 100),  # type: ignore[arg-type]
                             f"{p50:.2f} / {p99:.2f} ms"))
        table(f"index kind ({args.split}, k = 100; latency at k = 10)", rows)


def with_kind(index: ProductIndex, kind: str) -> ProductIndex:
    """``index`` searched through a new FAISS index of its vectors of ``kind`` (flat or
    hnsw), built as ``aisle index`` builds it (IndexConfig's M and efConstruction)."""
    import faiss

    vectors = index.searcher.index.reconstruct_n(0, index.searcher.count)  # type: ignore[attr-defined]
    config = IndexConfig(kind=kind)  # type: ignore[arg-type]
    started = time.perf_counter()
    if kind == "flat":
        built = faiss.IndexFlatIP(vectors.shape[1])
    else:
        built = faiss.IndexHNSWFlat(vectors.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        built.hnsw.efConstruction = config.ef_construction
    built.add(np.ascontiguousarray(vectors))
    log.info("%s built in %.1f s", kind, time.perf_counter() - started)
    return dataclasses.replace(index, searcher=searcher_for(built, config))

if __name__ == "__main__":
    main()
