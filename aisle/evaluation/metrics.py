"""Ranking metrics as pure functions: no files, no models.

``ranked_ids`` is one query's ranking, best first; ``grades`` maps the query's human-judged
product ids to their grade (0 = irrelevant). Products missing from ``grades`` are unjudged and
count as irrelevant (gain 0), as in full-catalog retrieval.

A product id repeated in ``ranked_ids`` counts only at its first occurrence; later copies take
gain 0 (and cannot be a "hit" again), so a ranker cannot inflate its score by repeating a
relevant product.

A metric that is undefined for a query returns ``None``; ``mean_metrics`` leaves such queries
out of that metric's mean and reports how many queries each mean covers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

# Grades are floats such as 2/3 written with limited precision; compare with a tolerance.
GRADE_TOLERANCE = 1e-9


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _first_k_unique(ranked_ids: Sequence[str], k: int) -> list[str | None]:
    """The top ``k`` positions, with repeats of an earlier id replaced by ``None`` (gain 0)."""
    seen: set[str] = set()
    out: list[str | None] = []
    for pid in ranked_ids[:k]:
        out.append(None if pid in seen else pid)
        seen.add(pid)
    return out


def dcg_at_k(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain with linear gain.

    ``DCG@k = sum_{i=1..min(k, n)} gain_i / log2(i + 1)``, positions ``i`` counted from 1.
    """
    _check_k(k)
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))


def ndcg_at_k(ranked_ids: Sequence[str], grades: Mapping[str, float], k: int) -> float | None:
    """Normalised DCG: ``DCG@k(ranking) / DCG@k(ideal)``.

    The gain at a position is the product's grade (0 when unjudged or a repeat). The ideal
    ranking sorts ALL judged grades of the query descending, including products the ranking
    never retrieved. Returns ``None`` when the ideal DCG is 0 (every judged grade is 0).
    """
    _check_k(k)
    ideal = dcg_at_k(sorted(grades.values(), reverse=True), k)
    if ideal <= 0.0:
        return None
    gains = [0.0 if pid is None else grades.get(pid, 0.0) for pid in _first_k_unique(ranked_ids, k)]
    return dcg_at_k(gains, k) / ideal


def condensed_ndcg_at_k(
    ranked_ids: Sequence[str], grades: Mapping[str, float], k: int
) -> float | None:
    """``ndcg_at_k`` of the ranking with its unjudged products dropped (a condensed list,
    Sakai, SIGIR 2007): how well the judged products are ordered, whatever the rest is.

    Judgments pooled from one engine leave most products another ranker puts first unjudged,
    and plain nDCG counts each as irrelevant; this one does not, so the two read together
    show how much of a difference is the pool's.
    """
    return ndcg_at_k([pid for pid in ranked_ids if pid in grades], grades, k)


def judged_at_k(ranked_ids: Sequence[str], grades: Mapping[str, float], k: int) -> float:
    """The share of the ``k`` top slots holding a judged product (a repeat or an empty slot
    holds none): how far the judgments reach into this ranking."""
    _check_k(k)
    return sum(pid is not None and pid in grades for pid in _first_k_unique(ranked_ids, k)) / k


def is_relevant(grade: float, relevant_grade: float) -> bool:
    """Whether a product graded ``grade`` counts as relevant: at least ``relevant_grade``, and
    never grade 0 (irrelevant), even where the threshold is 0 (judgments all 0)."""
    return grade > 0 and grade >= relevant_grade - GRADE_TOLERANCE


def any_relevant(qrels: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether some query has a product graded above 0: where none has, nDCG is undefined for
    every query, and a choice made by it (a fusion weight, an epoch) is made by nothing."""
    return any(g > 0 for grades in qrels.values() for g in grades.values())


def _relevant(grades: Mapping[str, float], relevant_grade: float) -> set[str]:
    """The products ``is_relevant`` at ``relevant_grade``."""
    return {pid for pid, g in grades.items() if is_relevant(g, relevant_grade)}


def recall_at_k(
    ranked_ids: Sequence[str], grades: Mapping[str, float], k: int, relevant_grade: float
) -> float | None:
    """``|relevant ∩ top-k| / |relevant|``, relevant meaning ``grade >= relevant_grade``.

    Returns ``None`` when the query has no relevant product.
    """
    _check_k(k)
    relevant = _relevant(grades, relevant_grade)
    if not relevant:
        return None
    found = relevant.intersection(ranked_ids[:k])
    return len(found) / len(relevant)


def mrr_at_k(
    ranked_ids: Sequence[str], grades: Mapping[str, float], k: int, relevant_grade: float
) -> float | None:
    """Reciprocal rank ``1 / rank`` of the first relevant product within the top ``k``.

    Ranks count from 1; 0.0 when no relevant product is in the top ``k``; ``None`` when the
    query has no relevant product (``grade >= relevant_grade``).
    """
    _check_k(k)
    relevant = _relevant(grades, relevant_grade)
    if not relevant:
        return None
    for rank, pid in enumerate(ranked_ids[:k], start=1):
        if pid in relevant:
            return 1.0 / rank
    return 0.0


def mean_metrics(per_query: Iterable[Mapping[str, float | None]]) -> dict[str, float]:
    """Average each metric over the queries where it is defined (not ``None``).

    For every metric name ``m`` the result holds ``m`` (the mean, NaN if no query defines it)
    and ``f"{m}_queries"`` (how many queries the mean covers, as a float).
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in per_query:
        for name, value in row.items():
            sums.setdefault(name, 0.0)
            counts.setdefault(name, 0)
            if value is not None:
                sums[name] += value
                counts[name] += 1
    out: dict[str, float] = {}
    for name in sums:
        out[name] = sums[name] / counts[name] if counts[name] else math.nan
        out[f"{name}_queries"] = float(counts[name])
    return out
