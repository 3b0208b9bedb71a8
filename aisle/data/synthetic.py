"""A small seeded product-search dataset in the canonical layout, for demos and tests.

Products are "<brand> <colour> <kind> <size>" over a home-improvement vocabulary; queries name a
kind, a brand and kind, or a colour and kind. Grades follow the words a product shares with the
query: 2 when it has every query word, 1 when it has the kind only, 0 for a judged non-match.
Products also carry a price (a number field) and in_stock (a boolean field) to filter on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from aisle.artifacts import CANONICAL, atomic_dir

KINDS = [
    "cordless drill",
    "claw hammer",
    "paint roller",
    "ceiling fan",
    "garden hose",
    "door knob",
    "light bulb",
    "tile saw",
    "wood screws",
    "shower head",
    "toilet seat",
    "kitchen faucet",
    "extension cord",
    "ladder",
    "lawn mower",
    "circular saw",
    "wall paint",
    "deck stain",
    "smoke detector",
    "water heater",
    "storage shelf",
    "tool box",
    "paint brush",
    "leaf blower",
]
BRANDS = ["Ridgid", "Dewalt", "Behr", "Moen", "Glacier Bay", "Husky", "Ryobi", "Delta", "Kohler"]
COLOURS = ["white", "black", "brushed nickel", "red", "oak", "chrome", "grey"]
SIZES = ["small", "12 in.", "24 in.", "2-pack", "heavy duty", "1 gal."]


def _split(text: str) -> str:
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "test" if h < 2 else "dev" if h < 3 else "train"


def generate(n_products: int = 400, n_queries: int = 120, seed: int = 0) -> dict[str, pd.DataFrame]:
    possible = {t for kind in KINDS for t in (
        kind, *(f"{b} {kind}".lower() for b in BRANDS), *(f"{c} {kind}" for c in COLOURS))}
    if not 0 <= n_queries <= len(possible):
        raise ValueError(f"n_queries is {n_queries}; the sample's vocabulary makes "
                         f"{len(possible)} distinct query texts at most")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_products):
        kind, brand = KINDS[i % len(KINDS)], BRANDS[rng.integers(len(BRANDS))]
        colour, size = COLOURS[rng.integers(len(COLOURS))], SIZES[rng.integers(len(SIZES))]
        rows.append(
            {
                "product_id": f"p{i:05d}",
                "title": f"{brand} {colour} {kind} {size}",
                "description": f"A {colour} {kind} by {brand}, {size}",
                "brand": brand,
                "category": f"tools > {kind.split()[-1]}",
                "_kind": kind,
                "_words": set(f"{brand} {colour} {kind}".lower().split()),
            }
        )
    products = pd.DataFrame(rows)
    # Typed fields to filter on (aisle/data/fields.py), from a generator of their own so the
    # titles, queries and judgments of a seed stay what they were before fields existed.
    fields = np.random.default_rng([seed, 1])
    products["price"] = [f"{p:.2f}" for p in np.round(fields.lognormal(3.0, 0.8, n_products), 2)]
    products["in_stock"] = np.where(fields.random(n_products) < 0.8, "true", "false")
    queries: list[dict[str, str]] = []
    judgments: list[dict[str, object]] = []
    seen: set[str] = set()
    while len(queries) < n_queries:
        kind = KINDS[rng.integers(len(KINDS))]
        shape = rng.integers(3)
        text = (
            kind
            if shape == 0
            else (
                f"{BRANDS[rng.integers(len(BRANDS))]} {kind}".lower()
                if shape == 1
                else f"{COLOURS[rng.integers(len(COLOURS))]} {kind}"
            )
        )
        if text in seen:
            continue
        seen.add(text)
        qid = f"q{len(queries):05d}"
        queries.append({"query_id": qid, "query": text, "split": _split(text)})
        words = set(text.split())
        same_kind = products[products["_kind"] == kind]
        judged = same_kind.sample(n=min(6, len(same_kind)), random_state=int(rng.integers(1 << 30)))
        other = products[products["_kind"] != kind].sample(n=2, random_state=len(queries))
        for _, p in pd.concat([judged, other]).iterrows():
            grade = 2.0 if words <= p["_words"] else 1.0 if p["_kind"] == kind else 0.0
            judgments.append(
                {
                    "query_id": qid,
                    "product_id": p["product_id"],
                    "grade": grade,
                    "raw_label": str(grade),
                }
            )
    return {
        "products": products.drop(columns=["_kind", "_words"]),
        "queries": pd.DataFrame(queries),
        "judgments": pd.DataFrame(judgments),
    }


def write_sample(out: Path, n_products: int = 400, n_queries: int = 120, seed: int = 0) -> Path:
    """Write the sample as a canonical CSV directory at ``out`` (atomically)."""
    tables = generate(n_products, n_queries, seed)
    with atomic_dir(Path(out), CANONICAL) as tmp:
        for name, df in tables.items():
            df.to_csv(tmp / f"{name}.csv", index=False)
    return Path(out)
