"""The one function that turns a product record into tower input.

Training, indexing, BM25 and serving all call ``product_text`` so the towers see the same
strings everywhere. The title leads unmarked (it is what a shopper's query most resembles, and a
title-only catalog gives exactly the title); every other non-empty field follows with a marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import pandas as pd

from aisle.data.schema import PRODUCT_FIELDS

SEPARATOR = " | "


def product_text(
    record: Mapping[str, object],
    fields: Sequence[str] = PRODUCT_FIELDS,
    max_description_chars: int = 300,
) -> str:
    """``"<title> | brand: <brand> | category: <category> | description: <description>"``.

    Empty or missing fields are left out. ``fields`` picks which fields appear, in order.
    """
    parts: list[str] = []
    for field in fields:
        value = record.get(field)
        # Any scalar pandas calls missing: None, NaN (numpy's float32 one too), pd.NA, NaT.
        if value is None or (pd.api.types.is_scalar(value) and pd.isna(cast(Any, value))):
            continue
        text = " ".join(str(value).split())
        if field == "description" and len(text) > max_description_chars:
            text = text[:max_description_chars].rsplit(" ", 1)[0]
        if not text:
            continue
        parts.append(text if field == "title" else f"{field}: {text}")
    return SEPARATOR.join(parts)


def product_texts(
    frame: pd.DataFrame,
    fields: Sequence[str] = PRODUCT_FIELDS,
    max_description_chars: int = 300,
) -> list[str]:
    """``product_text`` for every row of a products frame."""
    cols = [f for f in fields if f in frame.columns]
    rows: Iterable[Mapping[str, object]] = (
        dict(zip(cols, values, strict=True)) for values in frame[cols].itertuples(index=False)
    )
    return [product_text(r, fields, max_description_chars) for r in rows]
