"""Could a static query tower stand in for the transformer one? (#24's cold path)

A cold hybrid query's largest CPU share is the query tower: MiniLM-L6, int8, about a millisecond
a query here. A static tower (the mean of one learnt vector per word piece, as
sentence-transformers' ``StaticEmbedding``) costs a table lookup. This bench learns one from the
index's own query tower and measures what it gives up, with nothing written to disk:

    python bench/static_query.py --data runs/demo/data --index runs/demo/index

Each seed's student is learnt as `aisle static-query` learns one (aisle/training/static.py: the
train split's queries and the catalog's titles, cosine distillation from the query tower the
index serves with, no judgment seen), kept in memory, and searched through ``StaticTower``, the
product's own encoder. The product vectors (the index) stay as they are. `aisle static-query`
writes one seed's tower into the model; this bench says how much seeds differ.

Printed: on ``--split`` (dev), hybrid at the index's fusion and dense alone, each as nDCG@10,
condensed nDCG@10, judged@10, recall@100 and the paired bootstrap 95% interval of the nDCG@10
difference against the query tower, per seed; then each tower's CPU time a query, one query a
call, and the ratio.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from query_path import per_query, table

from aisle.data.dataset import load_dataset
from aisle.evaluation.run import open_index_retriever
from aisle.retrieval.config import Mode
from aisle.retrieval.retriever import Retriever
from aisle.towers.model import load_model
from aisle.towers.static import StaticTower
from aisle.training.static import StaticConfig, distill

log = logging.getLogger("bench.static_query")
Encode = Callable[[Sequence[str]], np.ndarray]


def encode_all(encode: Encode, texts: list[str], batch: int = 256) -> np.ndarray:
    out = [encode(texts[s:s + batch]) for s in range(0, len(texts), batch)]
    return np.concatenate(out).astype(np.float32)


def scored(retriever: Retriever, ds_qrels: dict[str, dict[str, float]], top_grade: float,
           qids: list[str], queries: list, vectors: np.ndarray, mode: Mode
           ) -> dict[str, np.ndarray]:
    found = retriever.search(queries, 100, mode, vectors)
    runs = {q: [h.product_id for h in f.hits] for q, f in zip(qids, found, strict=True)}
    return per_query(runs, ds_qrels, top_grade)


def cpu_ms(encode: Encode, texts: Sequence[str]) -> float:
    for text in texts[:20]:  # untimed: first-call costs
        encode([text])
    started = time.process_time()
    for text in texts:
        encode([text])
    return (time.process_time() - started) / len(texts) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared or canonical dir")
    parser.add_argument("--index", type=Path, required=True, help="an index built over it")
    parser.add_argument("--split", default="dev", help="the split scored (train is learnt on)")
    parser.add_argument("--seeds", default="13,14", help="one student per seed")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--titles", type=int, default=-1,
                        help="catalog titles learnt on as stand-in queries (-1: all)")
    parser.add_argument("--timed", type=int, default=1000, help="queries timed per tower")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    ds = load_dataset(args.data)
    retriever = open_index_retriever(args.index, None, ds, query_tower="transformer")
    model = retriever.model
    start = load_model(model.ref, backend="torch", query_tower="transformer")
    train = ds.queries.loc[ds.queries["split"] == "train", "query"].astype(str).tolist()
    titles = ds.products["title"].astype(str).tolist()
    teacher: Encode = lambda batch: model.encode_query(batch).numpy()  # noqa: E731

    qrels = ds.qrels(args.split)
    assert ds.top_grade is not None
    texts = ds.query_texts()
    qids = [q for q in qrels if q in texts]
    prepared = retriever.prepare([texts[q] for q in qids])
    searched = [q.text for q in prepared]
    students: list[tuple[int, Encode]] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = replace(StaticConfig(), seed=seed, epochs=args.epochs, titles=args.titles,
                      min_mean_cosine=0.0)
        student, record = distill(model, start, train, titles, cfg)
        log.info("seed %d: held-out agreement %s", seed, record["agreement"])
        tower = StaticTower(student.table(), student.tokenizer, f"seed {seed}",
                            model.config.max_query_length)
        students.append((seed, lambda batch, t=tower: t.encode(batch).numpy()))

    for mode in ("hybrid", "dense"):
        rows = [(f"{mode}: the query tower ({model.runtime})",
                 scored(retriever, qrels, ds.top_grade, qids, prepared,
                        encode_all(teacher, searched), mode), "")]  # type: ignore[arg-type]
        for seed, encode in students:
            rows.append((f"{mode}: static query tower, seed {seed}",
                         scored(retriever, qrels, ds.top_grade, qids, prepared,
                                encode_all(encode, searched), mode), ""))  # type: ignore[arg-type]
        fused = f"; weight {retriever.fusion.weight}" if mode == "hybrid" else ""
        table(f"{mode} ({args.split}, k = 100{fused}; no latency here: see below)", rows)

    timed = searched[:args.timed]
    tower = cpu_ms(teacher, timed)
    static = cpu_ms(students[0][1], timed)
    print(f"\nquery encoding, one query a call, {len(timed)} {args.split} queries: "
          f"CPU ms a query")
    print("| tower | CPU ms | x query tower |\n| --- | --- | --- |")
    print(f"| query tower ({model.runtime}) | {tower:.3f} | 1.00 |")
    print(f"| static (numpy) | {static:.3f} | {static / tower:.4f} |")


if __name__ == "__main__":
    main()
