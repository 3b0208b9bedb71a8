"""Runs side by side on one split: each metric's mean with a bootstrap interval, and each run
against the first (the baseline): the difference with its interval, a paired randomisation
test's p-value, and wins / ties / losses by query. What ``aisle compare`` prints and
``aisle report`` draws."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aisle.errors import DataError
from aisle.evaluation.evaluator import query_metrics
from aisle.evaluation.stats import (
    CONFIDENCE,
    RESAMPLES,
    bootstrap_ci,
    randomization_test,
    wins_ties_losses,
)

log = logging.getLogger(__name__)

# The order of the table; condensed nDCG@10 and judged@10 sit beside nDCG@10 on purpose.
METRICS = ("ndcg@10", "condensed_ndcg@10", "judged@10", "recall@100", "mrr@10")


@dataclass(frozen=True)
class MetricSummary:
    mean: float
    low: float
    high: float
    queries: int


@dataclass(frozen=True)
class PairedSummary:
    delta: float
    low: float
    high: float
    p_value: float
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class RunSummary:
    name: str
    metrics: dict[str, MetricSummary]
    # None for the first run: the baseline the others are tested against
    against_baseline: dict[str, PairedSummary] | None


# metric -> query id -> value, for the queries where the metric is defined
PerQuery = dict[str, dict[str, float]]


def per_query(
    ranked: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
) -> PerQuery:
    """Every metric of every judged query where it is defined (a query the run lacks ranks
    nothing), as ``score_run`` averages them."""
    out: PerQuery = {m: {} for m in METRICS}
    for qid, grades in qrels.items():
        for name, value in query_metrics(ranked.get(qid, ()), grades, top_grade).items():
            if value is not None and name in out:
                out[name][qid] = value
    return out


def check_coverage(
    name: str, ranked: Mapping[str, Sequence[str]], qrels: Mapping[str, Any]
) -> None:
    """Refuse a run that answers none of the split's queries (written for another split or
    dataset); warn when it misses some (they count as ranking nothing)."""
    covered = sum(qid in ranked for qid in qrels)
    if covered == 0:
        raise DataError(
            f"run {name!r} holds none of the split's {len(qrels)} judged queries; was it "
            "written for another split or dataset?"
        )
    if covered < len(qrels):
        log.warning("run %r lacks %d of the split's %d judged queries; they score 0",
                    name, len(qrels) - covered, len(qrels))


def compare_runs(
    runs: Mapping[str, Mapping[str, Sequence[str]]],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[RunSummary]:
    """Summaries of ``runs`` (name -> query id -> ranked product ids), the first one the
    baseline. Intervals are ``CONFIDENCE`` percentile bootstrap intervals over queries."""
    if not runs:
        raise ValueError("compare needs at least one run")
    for name, ranked in runs.items():
        check_coverage(name, ranked, qrels)
    scored = {name: per_query(ranked, qrels, top_grade) for name, ranked in runs.items()}
    baseline = next(iter(scored.values()))
    summaries = []
    for i, (name, metrics) in enumerate(scored.items()):
        means: dict[str, MetricSummary] = {}
        paired: dict[str, PairedSummary] = {}
        for metric in METRICS:
            qids = sorted(metrics[metric])
            if not qids:
                continue  # no query of the split defines it (e.g. no top-grade product)
            values = np.array([metrics[metric][q] for q in qids])
            ci = bootstrap_ci(values, resamples, CONFIDENCE, seed)
            means[metric] = MetricSummary(float(values.mean()), ci.low, ci.high, len(qids))
            if i == 0:
                continue
            base = np.array([baseline[metric][q] for q in qids])
            diff_ci = bootstrap_ci(values - base, resamples, CONFIDENCE, seed)
            wins, ties, losses = wins_ties_losses(base, values)
            paired[metric] = PairedSummary(
                delta=float((values - base).mean()),
                low=diff_ci.low,
                high=diff_ci.high,
                p_value=randomization_test(base, values, resamples, seed),
                wins=wins,
                ties=ties,
                losses=losses,
            )
        summaries.append(RunSummary(name, means, None if i == 0 else paired))
    return summaries


def summaries_json(summaries: Sequence[RunSummary]) -> list[dict[str, Any]]:
    return [asdict(s) for s in summaries]


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_table(summaries: Sequence[RunSummary]) -> str:
    """A plain-text table: one block per metric, one row per run."""
    level = f"{CONFIDENCE:.0%}"
    baseline = summaries[0].name
    width = max(len(s.name) for s in summaries)
    lines = [f"baseline: {baseline}; intervals: {level} bootstrap over queries; "
             "p: paired randomisation test against the baseline"]
    for metric in METRICS:
        if metric not in summaries[0].metrics:
            continue
        m0 = summaries[0].metrics[metric]
        lines.append(f"\n{metric} ({m0.queries} queries)")
        lines.append(f"  {'run':<{width}}  {'mean':>7}  {level + ' CI':>17}  "
                     f"{'delta':>8}  {'delta ' + level + ' CI':>19}  {'p':>6}  {'W/T/L':>13}")
        for s in summaries:
            m = s.metrics[metric]
            row = f"  {s.name:<{width}}  {m.mean:7.4f}  [{m.low:.4f}, {m.high:.4f}]"
            if s.against_baseline is not None:
                d = s.against_baseline[metric]
                row += (f"  {d.delta:+8.4f}  [{d.low:+.4f}, {d.high:+.4f}]  {_p(d.p_value):>6}  "
                        f"{f'{d.wins}/{d.ties}/{d.losses}':>13}")
            lines.append(row)
    return "\n".join(lines)
