"""Thin evaluators: a retriever, qid -> query text and qid -> {pid: grade} in, metrics out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from aisle.evaluation.metrics import (
    condensed_ndcg_at_k,
    judged_at_k,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

log = logging.getLogger(__name__)

# (query texts, k) -> ranked (product_id, score) lists, one per query.
Retriever = Callable[[Sequence[str], int], list[list[tuple[str, float]]]]

NDCG_K = 10
RECALL_K = 100
MRR_K = 10


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    run: dict[str, list[tuple[str, float]]]  # query_id -> ranked (product_id, score)


def query_metrics(
    ranked: Sequence[str], grades: Mapping[str, float], top_grade: float
) -> dict[str, float | None]:
    """One query's metrics (``None`` where the query cannot define one, see metrics.py):
    nDCG@10, recall@100 and MRR@10; beside nDCG@10, its condensed form (unjudged products
    dropped) and judged@10 (the share of the top 10 that raters judged), which tell a worse
    ranking from a ranking of unjudged products (homedepot's judgments were pooled from a
    lexical engine)."""
    return {
        f"ndcg@{NDCG_K}": ndcg_at_k(ranked, grades, NDCG_K),
        f"condensed_ndcg@{NDCG_K}": condensed_ndcg_at_k(ranked, grades, NDCG_K),
        f"judged@{NDCG_K}": judged_at_k(ranked, grades, NDCG_K),
        f"recall@{RECALL_K}": recall_at_k(ranked, grades, RECALL_K, top_grade),
        f"mrr@{MRR_K}": mrr_at_k(ranked, grades, MRR_K, top_grade),
    }


def score_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
) -> dict[str, float]:
    """``query_metrics`` averaged over the judged queries of ``qrels`` (a query the run lacks
    ranks nothing)."""
    return mean_metrics(
        query_metrics(run.get(qid, ()), grades, top_grade) for qid, grades in qrels.items()
    )


def evaluate(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
    depth: int = RECALL_K,
    batch_size: int = 256,
) -> EvalResult:
    """Retrieve ``depth`` products for every judged query and score the run."""
    qids = [q for q in queries if q in qrels]
    run: dict[str, list[tuple[str, float]]] = {}
    for start in tqdm(range(0, len(qids), batch_size), desc="retrieving", unit="batch"):
        batch = qids[start : start + batch_size]
        for qid, hits in zip(batch, retriever([queries[q] for q in batch], depth), strict=True):
            run[qid] = hits
    ranked = {qid: [pid for pid, _ in hits] for qid, hits in run.items()}
    metrics = score_run(ranked, {q: qrels[q] for q in qids}, top_grade)
    return EvalResult(metrics=metrics, run=run)
