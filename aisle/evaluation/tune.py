"""``aisle tune-fusion``: pick the hybrid fusion on a split (dev) and make it the index default.

Dense and lexical candidates are retrieved once; every fusion setting re-fuses them, so a grid
of settings costs little more than one evaluation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from aisle.artifacts import read_manifest, write_manifest
from aisle.data.dataset import load_dataset
from aisle.errors import AisleError, DataError
from aisle.evaluation.evaluator import score_run
from aisle.evaluation.metrics import any_relevant
from aisle.evaluation.run import (
    open_index_retriever,
    reported_metrics,
    rounded,
    split_qrels,
    split_top_grade,
)
from aisle.retrieval.config import FusionConfig
from aisle.retrieval.fusion import fuse
from aisle.retrieval.store import KIND
from aisle.towers.config import Backend, QueryTower

log = logging.getLogger(__name__)

WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))
RRF_KS = (10.0, 30.0, 60.0, 100.0)
SELECT = "ndcg@10"


def fusion_grid(base: FusionConfig) -> list[FusionConfig]:
    return [replace(base, method="convex", weight=w) for w in WEIGHTS] + [
        replace(base, method="rrf", rrf_k=k) for k in RRF_KS
    ]


def pick_fusion(
    table: Sequence[tuple[FusionConfig, dict[str, float]]], current: FusionConfig
) -> tuple[FusionConfig, dict[str, float]]:
    """The best row of ``table`` by ``SELECT``, then by recall@100 (a metric no query defines,
    NaN, counts lowest). Among rows still tied, the index's ``current`` fusion is kept: data
    that cannot tell settings apart is no reason to change it (on a small split every setting
    may tie, and the grid's first is convex weight 0, BM25 alone); else the grid's first."""

    def key(row: tuple[FusionConfig, dict[str, float]]) -> tuple[float, ...]:
        values = (row[1][SELECT], row[1]["recall@100"])
        return tuple(-math.inf if math.isnan(v) else v for v in values)

    top = max(key(row) for row in table)
    tied = [row for row in table if key(row) == top]
    return next((row for row in tied if row[0] == current), tied[0])


def tune_fusion(
    data: Path, index: Path, split: str = "dev", model: str | None = None, write: bool = True,
    backend: Backend | None = None,
    query_tower: QueryTower | None = None,
) -> dict[str, Any]:
    if split == "test":
        log.warning("tuning on the test split makes its test numbers optimistic; use dev")
    ds = load_dataset(data)
    qrels = split_qrels(ds, split)
    if not any_relevant(qrels):
        # nDCG@10 is undefined for every query: each setting would tie at NaN and the first
        # of the grid (weight 0, BM25 alone) would be written as the index's tuned default.
        raise DataError(
            f"dataset {ds.name!r} has no {split}-split judgment with a grade above 0: the "
            f"fusion is chosen by {SELECT}, which needs judged relevant products for some "
            f"{split} queries; judge some, or tune on another split (--split)"
        )
    retriever = open_index_retriever(index, model, ds, backend=backend, query_tower=query_tower)
    if not retriever.has_lexical:
        raise AisleError(f"{index} has no BM25 index: there is no hybrid fusion to tune")
    queries = ds.query_texts()
    qids = [q for q in qrels if q in queries]
    # Prepared as every search prepares them (normalised, spell-corrected once for both sides).
    prepared = retriever.prepare([queries[q] for q in qids])
    dense, lexical = retriever.candidates(prepared, 100)
    top_grade = split_top_grade(ds, qrels)
    table = []
    for cfg in fusion_grid(retriever.fusion):
        run = {
            q: [pid for pid, _ in fuse(d, lx, 100, cfg)]
            for q, d, lx in zip(qids, dense, lexical, strict=True)
        }
        table.append((cfg, score_run(run, qrels, top_grade)))
    best, metrics = pick_fusion(table, retriever.fusion)
    log.info("best fusion on %s: %s -> %s", split, best, metrics)
    reported = reported_metrics(metrics)  # NaN is not JSON: a metric no query defines is null
    if write:
        # The directory tuned: for a versioned root, the version that was CURRENT at load.
        target = retriever.index.root
        manifest = read_manifest(target, KIND)
        manifest["fusion"] = asdict(best)
        manifest["fusion_tuning"] = {
            "split": split,
            "metric": SELECT,
            "metrics": reported,
            # which query tower chose the weight (a static tower's vectors are not the
            # transformer's, and the best weight can differ between them)
            "query_runtime": retriever.model.query_runtime,
        }
        write_manifest(target, manifest)
    return {
        "best": asdict(best),
        "metrics": reported,
        "grid": [
            {
                "method": c.method,
                "weight": c.weight,
                "rrf_k": c.rrf_k,
                SELECT: rounded(m[SELECT]),
                "recall@100": rounded(m["recall@100"]),
            }
            for c, m in table
        ],
    }
