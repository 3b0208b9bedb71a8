"""Labelled query pairs for choosing the de-duplication threshold, and the sweep.

Duplicates: two queries whose top-grade judged products mostly coincide (see PairsConfig).
Non-duplicates: queries that share a prefix with a duplicate's query but not a single judged
product, as they would sit together in one suggestion list. A pair is "train" when both
queries are in the train split, else "heldout".
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pandas as pd

from aisle.autocomplete.config import PairsConfig
from aisle.autocomplete.text import key, numbers
from aisle.data.dataset import Dataset, judgments_at_least
from aisle.errors import DataError

PAIR_COLUMNS = ["query_a", "query_b", "label", "split"]


def _sets(judgments: pd.DataFrame) -> dict[str, frozenset[str]]:
    return {str(q): frozenset(g) for q, g in judgments.groupby("query_id")["product_id"]}


def duplicate_pairs(ds: Dataset, cfg: PairsConfig) -> list[tuple[str, str]]:
    """(query_id, query_id) pairs whose top products overlap enough (sorted, unique)."""
    least = cfg.top_products_grade(ds.top_grade or 0.0)
    top = _sets(judgments_at_least(ds.judgments, least))
    top = {q: s for q, s in top.items() if len(s) >= cfg.min_products}
    by_product: dict[str, list[str]] = defaultdict(list)
    for q in sorted(top):
        for p in top[q]:
            by_product[p].append(q)
    out = set()
    for qs in by_product.values():
        for a, b in itertools.combinations(qs, 2):
            shared = len(top[a] & top[b])
            if shared >= cfg.min_shared and shared / len(top[a] | top[b]) >= cfg.min_jaccard:
                out.add((a, b))
    return sorted(out)


def build_pairs(ds: Dataset, cfg: PairsConfig) -> pd.DataFrame:
    """The labelled set: columns query_a, query_b (texts), label (1 = duplicate), split."""
    if ds.judgments.empty:
        raise DataError(f"dataset {ds.name!r} has no judgments; labelled pairs need them")
    text = ds.query_texts()
    split = dict(zip(ds.queries["query_id"], ds.queries["split"], strict=True))
    judged = _sets(ds.judgments)
    positives = duplicate_pairs(ds, cfg)
    by_word: dict[str, list[str]] = defaultdict(list)
    by_chars: dict[str, list[str]] = defaultdict(list)
    for q in sorted(judged):
        k = key(text[q])
        by_word[k.split(" ")[0]].append(q)
        by_chars[k[: cfg.prefix_chars]].append(q)
    rng = np.random.default_rng(cfg.seed)
    taken = {frozenset(p) for p in positives}
    negatives: list[tuple[str, str]] = []
    for q in sorted({q for pair in positives for q in pair}):
        k = key(text[q])
        pool = [c for c in dict.fromkeys(by_word[k.split(" ")[0]] + by_chars[k[: cfg.prefix_chars]])
                if c != q and not judged[q] & judged[c] and frozenset((q, c)) not in taken]
        pick = rng.permutation(len(pool))[: cfg.negatives_per_query]
        for i in sorted(pick):
            taken.add(frozenset((q, pool[i])))
            negatives.append((q, pool[i]))
    rows = [(text[a], text[b], label, "train" if split[a] == split[b] == "train" else "heldout")
            for label, pairs in ((1, positives), (0, negatives)) for a, b in pairs]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def sweep(labels: np.ndarray, cosines: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """Precision and recall of "duplicate" (cosine >= t) at each threshold t."""
    labels = labels.astype(bool)
    rows = []
    for t in thresholds:
        predicted = cosines >= t
        tp = int((predicted & labels).sum())
        n_pred = int(predicted.sum())
        rows.append({"threshold": round(float(t), 4), "precision": tp / n_pred if n_pred else
                     float("nan"), "recall": tp / max(int(labels.sum()), 1), "predicted": n_pred})
    return pd.DataFrame(rows)


def _finite(value: object) -> float | None:
    x = float(value)  # type: ignore[arg-type]
    return x if np.isfinite(x) else None


def choose_threshold(
    pairs: pd.DataFrame, cosine: Callable[[list[str], list[str]], np.ndarray], cfg: PairsConfig
) -> dict[str, object]:
    """The lowest threshold with train precision >= target, and its held-out P/R.

    ``cosine(texts_a, texts_b)`` gives the pairwise cosines used for de-duplication. A pair
    whose texts state different numbers is never predicted a duplicate, at any threshold, as
    de-duplication never merges them (``lookup``'s number groups): "24 inch vanity" beside
    "36 inch vanity" must not push the threshold up for pairs the rule already keeps apart."""
    a, b = pairs["query_a"].tolist(), pairs["query_b"].tolist()
    cos = np.asarray(cosine(a, b), dtype=np.float64).copy()
    cos[[numbers(x) != numbers(y) for x, y in zip(a, b, strict=True)]] = -np.inf
    grid = np.round(np.arange(0.50, 1.0001, 0.01), 2)
    result: dict[str, object] = {}
    for name in ("train", "heldout"):
        part = (pairs["split"] == name).to_numpy()
        result[name] = sweep(pairs["label"].to_numpy()[part], cos[part], grid)
        result[f"{name}_counts"] = {"duplicates": int(pairs["label"][part].sum()),
                                    "non_duplicates": int((pairs["label"][part] == 0).sum())}
    counts = result["train_counts"]
    assert isinstance(counts, dict)
    if min(counts.values()) < cfg.min_tuning_pairs:
        raise DataError(
            f"too few train pairs to tune the threshold ({counts['duplicates']} duplicates, "
            f"{counts['non_duplicates']} non-duplicates; pairs.min_tuning_pairs is "
            f"{cfg.min_tuning_pairs}): build without --tune-threshold (threshold "
            "from the config), or loosen the pairs.* rules that draw them"
        )
    train = result["train"]
    assert isinstance(train, pd.DataFrame)
    ok = train[train["precision"] >= cfg.target_precision]
    if ok.empty:
        raise DataError(f"no threshold reaches precision {cfg.target_precision} on the train "
                        "pairs; lower pairs.target_precision or check the model")
    threshold = float(ok["threshold"].min())
    held = result["heldout"]
    assert isinstance(held, pd.DataFrame)
    at = held[held["threshold"] == threshold].iloc[0]
    tr = train[train["threshold"] == threshold].iloc[0]
    result["summary"] = {
        "threshold": threshold, "target_precision": cfg.target_precision,
        "train_precision": float(tr["precision"]), "train_recall": float(tr["recall"]),
        # None (JSON null) when no held-out pair is predicted a duplicate, rather than NaN.
        "heldout_precision": _finite(at["precision"]), "heldout_recall": _finite(at["recall"]),
        "train_counts": result["train_counts"], "heldout_counts": result["heldout_counts"],
    }
    return result
