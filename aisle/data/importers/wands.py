"""Wayfair ANnotation DataSet (WANDS) -> canonical CSV directory.

The input is the dataset's ``dataset/`` directory with three tab-separated files:
``product.csv``, ``query.csv`` and ``label.csv``.

Mapping:
- grade: Exact = 2, Partial = 1, Irrelevant = 0; ``raw_label`` keeps the word.
- split: WANDS has none. Each query text is hashed (normalised, sha256): 80% ``train``,
  10% ``dev``, 10% ``test``, the same on every run and machine.
- products: the whole catalog, judged or not (retrieval runs over all of it).
  title = product_name, description = product_description, brand is empty (WANDS has none),
  category = the category hierarchy with " / " turned into " > ", or product_class when the
  hierarchy is empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from aisle.data.importers.common import (
    check_label_values,
    check_unique_ids,
    drop_empty,
    drop_repeated_judgments,
    read_delimited,
    row_of,
    split_of,
    write_canonical,
)
from aisle.errors import DataError

log = logging.getLogger(__name__)

GRADES: dict[str, float] = {"Exact": 2.0, "Partial": 1.0, "Irrelevant": 0.0}
# Fractions of query texts (by hash) for dev and test; the rest is train.
DEV_FRACTION = 0.10
TEST_FRACTION = 0.10

PRODUCT_FILE, QUERY_FILE, LABEL_FILE = "product.csv", "query.csv", "label.csv"
PRODUCT_COLUMNS = (
    "product_id",
    "product_name",
    "product_class",
    "category hierarchy",
    "product_description",
)
QUERY_COLUMNS = ("query_id", "query")
LABEL_COLUMNS = ("query_id", "product_id", "label")


def import_wands(src: Path, out: Path) -> Path:
    """Convert the WANDS directory ``src`` into a canonical CSV directory at ``out``."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(
            f"{src}: not a directory; pass the WANDS dataset/ directory holding "
            f"{PRODUCT_FILE}, {QUERY_FILE} and {LABEL_FILE}"
        )
    products = read_products(src / PRODUCT_FILE)
    queries = read_queries(src / QUERY_FILE)
    judgments = read_labels(src / LABEL_FILE, queries["query_id"], products["product_id"])
    products, queries, judgments = drop_empty(products, queries, judgments, src)
    return write_canonical(out, products, queries, judgments)


def read_products(path: Path) -> pd.DataFrame:
    df = read_delimited(path, PRODUCT_COLUMNS)
    df["product_id"] = df["product_id"].str.strip()
    check_unique_ids(df, "product_id", path)
    hierarchy = df["category hierarchy"].str.strip().str.replace(r"\s+/\s+", " > ", regex=True)
    return pd.DataFrame(
        {
            "product_id": df["product_id"],
            "title": df["product_name"].str.strip(),
            "description": df["product_description"].str.strip(),
            "brand": "",
            "category": hierarchy.where(hierarchy != "", df["product_class"].str.strip()),
        }
    )


def read_queries(path: Path) -> pd.DataFrame:
    df = read_delimited(path, QUERY_COLUMNS)
    df["query_id"] = df["query_id"].str.strip()
    check_unique_ids(df, "query_id", path)
    q = pd.DataFrame({"query_id": df["query_id"], "query": df["query"].str.strip()})
    q["split"] = [split_of(t, dev=DEV_FRACTION, test=TEST_FRACTION) for t in q["query"]]
    return q


def read_labels(path: Path, query_ids: pd.Series, product_ids: pd.Series) -> pd.DataFrame:
    df = read_delimited(path, LABEL_COLUMNS)
    for col in ("query_id", "product_id", "label"):
        df[col] = df[col].str.strip()
    grades = check_label_values(df["label"], GRADES, path, "label")
    for col, known, file in (
        ("query_id", query_ids, QUERY_FILE),
        ("product_id", product_ids, PRODUCT_FILE),
    ):
        unknown = ~df[col].isin(known).to_numpy()
        if unknown.any():
            r = row_of(unknown)
            raise DataError(
                f"{path}: row {r} has {col} {df[col].iloc[r - 1]!r}, which is not in {file} "
                f"({int(unknown.sum())} such row(s)); use the {file} that came with it"
            )
    judgments = pd.DataFrame(
        {
            "query_id": df["query_id"],
            "product_id": df["product_id"],
            "grade": grades,
            "raw_label": df["label"],
        }
    )
    return drop_repeated_judgments(judgments, path)
