"""Suggestion candidates: the query log (ranked first) and phrases mined from the catalog."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Literal

import pandas as pd

from aisle.autocomplete.clean import Cleaned
from aisle.autocomplete.config import AutocompleteConfig
from aisle.autocomplete.text import key, shown, variant_key
from aisle.data.dataset import Dataset

LOG, CATALOG = "log", "catalog"
COLUMNS = ["text", "key", "source", "popularity"]
# A mined phrase ends on a word of 2+ letters that is not a stop word: "Delta Vero" is a
# suggestion, "Delta Vero 1-Handle", "BEHR Premium 1-gal." and "... in" are not.
_LAST_WORD = re.compile(r"^[a-z][a-z'&-]*[a-z]$")
_STOP = frozenset(["a", "an", "and", "by", "for", "from", "in", "into", "of", "on", "or",
                   "the", "to", "with"])
PopularitySource = Literal["count", "judged_products", "rows"]


def _display(variants: Counter[str]) -> str:
    """The most frequent form shown (they differ in spacing, accents or punctuation), ties
    broken alphabetically."""
    return min(variants, key=lambda t: (-variants[t], t))


def log_suggestions(
    ds: Dataset, clean: Callable[[str], Cleaned]
) -> tuple[pd.DataFrame, PopularitySource, dict[str, int]]:
    """One suggestion per query as ``clean`` shows it, with its popularity, and how many
    queries are shown corrected and how many not at all.

    Queries shown alike up to case, accents and spacing are one suggestion, their popularity
    summed: a misspelt query counts for its correction. Popularity is the log's ``count``
    column when it has one. Without it (homedepot), every query text occurs once, so counting
    rows says nothing; the number of judged products is used instead: the judged pairs were
    sampled from search traffic, so a query with more of them was, we assume, searched more
    often. Without judgments either, 1 per row."""
    q = ds.queries
    source: PopularitySource
    if "count" in q.columns:
        weights, source = q["count"].astype("int64"), "count"
    elif len(ds.judgments):
        judged = ds.judgments.groupby("query_id").size()
        weights = q["query_id"].map(judged).fillna(0).astype("int64").clip(lower=1)
        source = "judged_products"
    else:
        weights, source = pd.Series(1, index=q.index, dtype="int64"), "rows"
    popularity: Counter[str] = Counter()
    variants: dict[str, Counter[str]] = defaultdict(Counter)
    counts = Counter(queries=len(q), corrected=0, dropped=0)
    for text, w in zip(q["query"], weights, strict=True):
        cleaned = clean(text)
        if cleaned.text is None:
            counts["dropped"] += 1
            continue
        counts["corrected"] += cleaned.corrected
        k = variant_key(cleaned.text)
        if k:
            popularity[k] += int(w)
            variants[k][cleaned.text] += max(int(w), 1)
    rows = []
    for k, total in popularity.items():
        text = _display(variants[k])
        rows.append((text, key(text), LOG, total))
    counts["suggestions"] = len(rows)
    return pd.DataFrame(rows, columns=COLUMNS), source, dict(counts)


def _phrases(title: str, ngram_max: int) -> dict[str, str]:
    """variant key -> surface text of a title's leading 1..ngram_max words that end on a
    word."""
    surface = str(title).split()
    folded = [key(w) for w in surface]
    out: dict[str, str] = {}
    for n in range(1, min(ngram_max, len(surface)) + 1):
        last = folded[n - 1]
        if _LAST_WORD.match(last) and last not in _STOP:
            out["".join(folded[:n])] = " ".join(surface[:n])
    return out


def catalog_suggestions(
    products: pd.DataFrame, config: AutocompleteConfig, exclude: set[str]
) -> pd.DataFrame:
    """Leading title phrases, brands and category parts named by enough products, shown in
    lower case; the ``config.max_catalog`` most common ones whose variant key is not in
    ``exclude`` (the log's). Their words are the catalog's own: no spelling to clean."""
    counts: Counter[str] = Counter()
    variants: dict[str, Counter[str]] = defaultdict(Counter)
    for title, brand, category in zip(
        products["title"], products["brand"], products["category"], strict=True
    ):
        found = _phrases(title, config.ngram_max)
        for value in (brand, *str(category).split(">")):
            if variant_key(str(value)):
                found[variant_key(str(value))] = str(value)
        for k, text in found.items():
            counts[k] += 1
            variants[k][shown(text)] += 1
    ranked = sorted(
        (k for k, c in counts.items() if c >= config.catalog_min_products and k not in exclude),
        key=lambda k: (-counts[k], len(k), k),
    )[: config.max_catalog]
    shown_as = {k: _display(variants[k]) for k in ranked}
    rows = [(shown_as[k], key(shown_as[k]), CATALOG, counts[k]) for k in ranked]
    return pd.DataFrame(rows, columns=COLUMNS)


def tiers(frame: pd.DataFrame) -> pd.Series:
    """0: a log query spelled right, 1: one whose words the speller changed (autocomplete
    should not teach typos; only artifacts built before log queries were cleaned have any),
    2: a catalog phrase. Needs the ``canonical`` column."""
    misspelled = (frame["canonical"] != frame["key"]).astype("int64")
    return misspelled.where(frame["source"] == LOG, 2)


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Global order: tier, then popularity, shorter key, alphabetical. A suggestion's row
    number in the artifact is its rank among exact prefix matches."""
    order = pd.DataFrame({"tier": tiers(frame), "neg": -frame["popularity"],
                          "len": frame["key"].str.len(), "key": frame["key"]})
    idx = order.sort_values(["tier", "neg", "len", "key"], kind="stable").index
    return frame.loc[idx].reset_index(drop=True)
