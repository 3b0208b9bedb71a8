"""Amazon Shopping Queries Dataset (ESCI) -> canonical CSV directory.

The input is one parquet file: the examples table merged with the products table on
``(product_locale, product_id)``, as the dataset's own README does::

    ex = pd.read_parquet("shopping_queries_dataset_examples.parquet")
    pr = pd.read_parquet("shopping_queries_dataset_products.parquet")
    ex.merge(pr, on=["product_locale", "product_id"], how="left").to_parquet("esci.parquet")

Mapping:
- grade: E (exact) = 3, S (substitute) = 2, C (complement) = 1, I (irrelevant) = 0;
  ``raw_label`` keeps the letter.
- split: the source ``test`` stays ``test``. The source ``train`` is divided by hashing the
  normalised query text: about 10% goes to ``dev``, the rest stays ``train``. A text that
  appears in the source test split under any id goes to ``test`` under every id, so no query
  text crosses splits.
- products: one row per product; description = product_description and the bullet points,
  HTML tags stripped, then ``color: X`` when a colour is given; brand = product_brand;
  category is empty (ESCI has none).
- small_version: with ``small_version=True`` only the rows the dataset marks
  ``small_version == 1`` are kept: the reduced set of its task 1 (query-product ranking), on
  which the dataset's paper reports its baselines. Off, every row is kept.
- locale: only rows whose ``product_locale`` matches are kept. With ``locale=None`` every
  locale is kept and product ids become ``"<locale>:<product_id>"``, because the same ASIN
  names different (differently worded) products in different marketplaces.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aisle.data.importers import LOCALES
from aisle.data.importers.common import (
    check_label_values,
    clean_text,
    drop_empty,
    drop_repeated_judgments,
    normalize_query,
    row_of,
    split_of,
    write_canonical,
)
from aisle.errors import DataError

log = logging.getLogger(__name__)

GRADES: dict[str, float] = {"E": 3.0, "S": 2.0, "C": 1.0, "I": 0.0}
# Fraction of the source train split's query texts that become the dev split.
DEV_FRACTION = 0.10

REQUIRED = ("query_id", "query", "product_id", "esci_label", "split", "product_title")
# Text columns that may be absent (read as empty); product_locale is required to filter.
OPTIONAL = ("product_description", "product_bullet_point", "product_brand", "product_color")
LOCALE = "product_locale"
SMALL = "small_version"
ROW = "__row"
EXAMPLE_COLUMNS = (ROW, "query_id", "query", "product_id", "esci_label", "split")
PRODUCT_TEXT = ("product_title", *OPTIONAL)


def import_esci(src: Path, out: Path, locale: str | None = "us",
                small_version: bool = False) -> Path:
    """Convert the merged ESCI parquet ``src`` into a canonical CSV directory at ``out``;
    ``small_version``: only the rows of the dataset's reduced task-1 set."""
    src, out = Path(src), Path(out)
    if locale is not None and locale not in LOCALES:
        raise ValueError(f"locale {locale!r} is not an ESCI locale; use one of {list(LOCALES)}")
    table = read_esci(src, locale, small_version)
    if table.num_rows == 0:
        which = f"locale {locale!r}" + (f" with {SMALL} = 1" if small_version else "")
        raise DataError(f"{src}: no rows for {which}; check the {LOCALE!r} column"
                        + (f" and the {SMALL!r} column" if small_version else ""))
    has_locale = LOCALE in table.column_names
    df = to_frame(table, [*EXAMPLE_COLUMNS, *([LOCALE] if has_locale else [])], src)
    check_required_values(df, src)
    if locale is None and has_locale:
        df["product_id"] = df[LOCALE] + ":" + df["product_id"]
    queries = build_queries(df, src)
    # The merged file repeats each product's text on every example row; only the first
    # occurrence is converted, which keeps memory near the size of the catalog.
    first = np.flatnonzero(~df["product_id"].duplicated().to_numpy())
    text = to_frame(table.take(first), [c for c in PRODUCT_TEXT if c in table.column_names], src)
    products = build_products(df["product_id"].iloc[first].reset_index(drop=True), text)
    judgments = pd.DataFrame(
        {
            "query_id": df["query_id"],
            "product_id": df["product_id"],
            "grade": check_label_values(df["esci_label"], GRADES, src, "esci_label", df[ROW]),
            "raw_label": df["esci_label"],
        }
    )
    judgments = drop_repeated_judgments(judgments, src)
    products, queries, judgments = drop_empty(products, queries, judgments, src)
    log.info("ESCI %s (locale %s): %d source rows", src, locale or "all", len(df))
    return write_canonical(out, products, queries, judgments)


def read_esci(src: Path, locale: str | None, small_version: bool = False) -> pa.Table:
    """Read the columns the import needs, with a 1-based source row number for messages."""
    if not src.is_file():
        raise DataError(f"{src}: file is missing; pass the merged ESCI examples+products parquet")
    try:
        names = set(pq.read_schema(src).names)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{src}: not a readable parquet file ({e}); pass the ESCI parquet") from e
    need = [*REQUIRED, LOCALE] if locale is not None else list(REQUIRED)
    if small_version:
        need.append(SMALL)
    missing = [c for c in need if c not in names]
    if missing:
        raise DataError(
            f"{src}: missing column(s) {missing}; found {sorted(names)}; merge the ESCI "
            "examples and products tables so it holds "
            f"{[*REQUIRED, *OPTIONAL, LOCALE, *([SMALL] if small_version else [])]}"
        )
    cols = [*need, *(c for c in (*OPTIONAL, LOCALE) if c in names and c not in need)]
    try:
        table = pq.read_table(src, columns=cols)
        table = table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1)))
        if small_version:
            try:
                flags = table[SMALL].cast(pa.int64())
            except pa.ArrowException as e:
                raise DataError(f"{src}: column {SMALL!r} is not whole numbers ({e}); the ESCI "
                                "column holds 1 for a row of the reduced set, else 0") from e
            table = table.filter(pc.fill_null(pc.equal(flags, 1), False))
        if locale is not None:
            table = table.filter(pc.equal(table[LOCALE].cast(pa.string()), locale))
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{src}: not a readable parquet file ({e}); pass the ESCI parquet") from e
    return table


def to_frame(table: pa.Table, columns: list[str], src: Path) -> pd.DataFrame:
    """Convert ``columns`` one by one, so a bad column is named (stored pandas metadata is
    ignored, which also keeps binary columns as bytes for ``to_text`` to check)."""
    data: dict[str, pd.Series] = {}
    for col in columns:
        try:
            values = table[col].to_pandas()
        except pa.ArrowException as e:
            raise DataError(f"{src}: column {col!r} is unreadable ({e}); store it as text") from e
        data[col] = values if col == ROW else to_text(values, src, col)
    return pd.DataFrame(data)


def to_text(col: pd.Series, src: Path, name: str) -> pd.Series:
    """Ids and text as ``str`` (ids may be stored as ints; nulls become empty strings)."""

    if isinstance(col.dtype, pd.StringDtype):
        return col.fillna("").astype(str).str.strip()

    def one(v: object) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))  # an integer id column with nulls is read back as floats
        if isinstance(v, bytes):
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{src}: column {name!r} holds bytes that are not UTF-8 ({e.reason}); "
                    "store the text as UTF-8 strings"
                ) from e
        return str(v)

    return col.map(one).astype(str).str.strip()


def check_required_values(df: pd.DataFrame, src: Path) -> None:
    for col in ("query_id", "product_id", "esci_label"):
        empty = (df[col] == "").to_numpy()
        if empty.any():
            r = int(df[ROW].iloc[row_of(empty) - 1])
            raise DataError(f"{src}: row {r} has no {col}; every example needs one")
    bad = ~df["split"].isin(("train", "test")).to_numpy()
    if bad.any():
        i = row_of(bad) - 1
        raise DataError(
            f"{src}: row {int(df[ROW].iloc[i])} has split {df['split'].iloc[i]!r}; the ESCI "
            "split column holds 'train' or 'test'"
        )


def build_queries(df: pd.DataFrame, src: Path) -> pd.DataFrame:
    """One row per query id, with the split rule in the module docstring."""
    first = df.groupby("query_id", sort=False)["query"].transform("first")
    clash = (df["query"] != first).to_numpy()
    if clash.any():
        i = row_of(clash) - 1
        raise DataError(
            f"{src}: row {int(df[ROW].iloc[i])} gives query_id {df['query_id'].iloc[i]!r} "
            f"the text {df['query'].iloc[i]!r}, but an earlier row gives it {first.iloc[i]!r}; "
            "each query_id must have one text"
        )
    q = df.drop_duplicates("query_id")[["query_id", "query"]].reset_index(drop=True)
    key = q["query"].map(normalize_query)
    test_keys = set(df["query"][df["split"] == "test"].map(normalize_query))
    q["split"] = [
        "test" if k in test_keys else split_of(t, dev=DEV_FRACTION, test=0.0)
        for k, t in zip(key, q["query"], strict=True)
    ]
    return q


def build_products(product_ids: pd.Series, text: pd.DataFrame) -> pd.DataFrame:
    """Catalog rows from one source row per product; ``text`` holds that row's text columns."""

    def col(name: str) -> pd.Series:
        return text[name] if name in text.columns else pd.Series([""] * len(text), dtype=str)

    descriptions = [
        "\n".join(x for x in (clean_text(d), clean_text(b), f"color: {c}" if c else "") if x)
        for d, b, c in zip(
            col("product_description"),
            col("product_bullet_point"),
            col("product_color"),
            strict=True,
        )
    ]
    return pd.DataFrame(
        {
            "product_id": product_ids,
            "title": text["product_title"].map(clean_text),
            "description": descriptions,
            "brand": col("product_brand").map(clean_text),
            "category": "",
        }
    )
