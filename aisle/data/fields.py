"""Product fields: the catalog columns that search filters on and returns with each result.

Every catalog has ``brand`` and ``category`` (text; empty = unknown). A products table may carry
more columns (``price``, ``in_stock``, ``size_oz``, ...); each is typed once, when the table is
read, by what all its non-empty values are:

- ``number``: every value parses as a finite number ("4.99", "12", "1e3") and none is written
  with a leading zero: a column holding "00123" or "07" is a code (a UPC, a zip code, a SKU),
  kept as text so that it reads back as written;
- ``boolean``: every value is ``true`` or ``false`` (any case; "0"/"1" read as numbers);
- ``string``: anything else.

An empty value is missing (null) and matches no filter. Field names are what filters and the
API name them by: a letter or ``_``, then letters, digits or ``_`` (at most 64).
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

from aisle.errors import DataError

FieldType = Literal["string", "number", "boolean"]

# Always stored: every catalog has them (possibly empty).
TEXT_FIELDS = ("brand", "category")
# Product columns that are not fields: the id, the text the towers read and the partition.
NOT_FIELDS = frozenset({"product_id", "title", "description", "partition"})
# Names an index's row map uses itself (the product text, its hash, the FAISS id).
RESERVED = frozenset({"text", "text_hash", "label"})
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
BOOLEANS = {"true": True, "false": False}
# "00123", "-07": a digit after a leading zero marks a code, not a quantity ("0.5" is a number).
LEADING_ZERO = r"[+-]?0\d"


def check_field_name(name: str, where: str) -> None:
    if not FIELD_NAME.fullmatch(name):
        raise DataError(
            f"{where}: column {name!r} is not a usable field name (a letter or '_', then "
            "letters, digits or '_', at most 64); rename or drop it"
        )
    if name in RESERVED:
        raise DataError(f"{where}: column {name!r} is a name aisle keeps for itself "
                        f"({', '.join(sorted(RESERVED))}); rename it")


def type_column(values: pd.Series) -> pd.Series:
    """A column of strings, typed: float64 (NaN = missing), pandas ``boolean`` (NA = missing)
    or the stripped strings ("" = missing)."""
    text = values.astype(str).str.strip()
    present = text != ""
    if not present.any():
        return text
    numbers = pd.to_numeric(text.where(present), errors="coerce")
    if (bool((numbers.notna() == present).all()) and np.isfinite(numbers[present]).all()
            and not text.str.match(LEADING_ZERO).any() and _exact(text[present])):
        return numbers.astype("float64")
    lowered = text.str.lower()
    if bool(lowered[present].isin(list(BOOLEANS)).all()):
        return lowered.map(BOOLEANS).astype("boolean")
    return text


def _exact(text: pd.Series) -> bool:
    """Whether every whole number in ``text`` survives float64: a code of 16 digits or more
    (an 18-digit SSCC, an order number) would be rounded, and two codes could read back as
    one."""
    long = text[text.str.fullmatch(r"[+-]?\d{16,}")]
    return all(abs(int(v)) <= 2**53 for v in long)


def field_type(values: pd.Series) -> FieldType:
    """The type of an already typed column (as ``type_column`` or a parquet file gives it)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "number"
    present = values.dropna()
    if len(present) and all(isinstance(v, (bool, np.bool_)) for v in present):
        return "boolean"  # a nullable boolean read back from parquet as objects
    return "string"


def field_columns(products: pd.DataFrame) -> list[str]:
    """The columns of ``products`` that are fields: brand, category, then any extra columns in
    table order."""
    extra = [c for c in products.columns
             if c not in NOT_FIELDS and c not in TEXT_FIELDS and c not in RESERVED]
    return [*(c for c in TEXT_FIELDS if c in products.columns), *extra]


def field_types(products: pd.DataFrame) -> dict[str, FieldType]:
    return {c: field_type(products[c]) for c in field_columns(products)}
