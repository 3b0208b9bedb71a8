"""The canonical layout (see the shared data README): three tables, string ids, float grades."""

from __future__ import annotations

import pyarrow as pa

from aisle.errors import AisleError

PRODUCTS = "products"
QUERIES = "queries"
JUDGMENTS = "judgments"
TABLES = (PRODUCTS, QUERIES, JUDGMENTS)

# Required columns per table. Products may also carry an optional ``partition`` column.
COLUMNS: dict[str, tuple[str, ...]] = {
    PRODUCTS: ("product_id", "title", "description", "brand", "category"),
    QUERIES: ("query_id", "query", "split"),
    JUDGMENTS: ("query_id", "product_id", "grade", "raw_label"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {PRODUCTS: ("partition",), QUERIES: ("count",)}
ID_KEYS: dict[str, list[str]] = {
    PRODUCTS: ["product_id"],
    QUERIES: ["query_id"],
    JUDGMENTS: ["query_id", "product_id"],
}
SPLITS = ("train", "dev", "test")

PRODUCT_FIELDS = ("title", "brand", "category", "description")


def check_grade_threshold(
    absolute_key: str, absolute: float, fraction_key: str, fraction: float
) -> None:
    """Refuse a grade threshold given as a fraction outside (0, 1] or a negative grade."""
    if not 0.0 < fraction <= 1.0:
        raise AisleError(
            f"{fraction_key} must be in (0, 1], got {fraction}: it is a fraction of the dataset's "
            f"top grade (or set {absolute_key}, an absolute grade)"
        )
    if absolute < 0:
        raise AisleError(f"{absolute_key} must be >= 0 (0 = use {fraction_key}), got {absolute}")


def grade_threshold(absolute: float, fraction: float, top_grade: float) -> float:
    """A grade threshold that a config gives as an absolute grade (> 0) or else as a fraction
    of the dataset's top grade, so that one config fits any grade scale (0-2, 0-3, 0/1)."""
    return absolute if absolute > 0 else fraction * top_grade


ARROW_SCHEMAS: dict[str, pa.Schema] = {
    PRODUCTS: pa.schema([(c, pa.string()) for c in COLUMNS[PRODUCTS]]),
    QUERIES: pa.schema([(c, pa.string()) for c in COLUMNS[QUERIES]]),
    JUDGMENTS: pa.schema(
        [
            ("query_id", pa.string()),
            ("product_id", pa.string()),
            ("grade", pa.float64()),
            ("raw_label", pa.string()),
        ]
    ),
}
