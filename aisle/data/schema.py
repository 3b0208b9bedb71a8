"""The canonical layout (see the shared data README): three tables, string ids, float grades."""

from __future__ import annotations

import pyarrow as pa

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
