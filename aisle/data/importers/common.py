"""Shared pieces of the importers: split assignment, source reading, cleaning, atomic output.

Splits are assigned from the query text alone (normalised: case-folded, whitespace collapsed),
hashed with sha256, so the same text always lands in the same split on any machine and in
any Python process, and two ids that share a text never cross splits.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from aisle.artifacts import CANONICAL, atomic_dir
from aisle.data.canonical import normalize_query, read_text_table
from aisle.data.dataset import load_dataset
from aisle.data.schema import COLUMNS, JUDGMENTS, PRODUCTS, QUERIES
from aisle.errors import DataError

log = logging.getLogger(__name__)

Split = Literal["train", "dev", "test"]

# An HTML tag or comment: "<" then a letter, "/" or "!--". A bare "<" is text ("USB <-> HDMI",
# "load < 5 kg > 2 kg"), which a plain "<[^>]*>" would cut out up to the next ">".
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)
_SPACE = re.compile(r"[ \t\f\v\u00a0]+")


def hash_fraction(text: str) -> float:
    """A stable number in [0, 1) for ``text`` (sha256 of its normalised form)."""
    digest = hashlib.sha256(normalize_query(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(text: str, dev: float, test: float) -> Split:
    """``test`` for the first ``test`` fraction of hash space, then ``dev``, else ``train``."""
    u = hash_fraction(text)
    if u < test:
        return "test"
    if u < test + dev:
        return "dev"
    return "train"


def clean_text(text: str) -> str:
    """Strip HTML tags and entities, collapse spaces within lines, drop blank lines."""
    text = html.unescape(_TAG.sub(" ", text)).replace("\r\n", "\n").replace("\r", "\n")
    lines = (_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def row_of(mask: np.ndarray | pd.Series) -> int:
    """1-based position of the first true value (a data row; the header is not counted)."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def read_delimited(path: Path, columns: Iterable[str], sep: str = "\t") -> pd.DataFrame:
    """Read a delimited UTF-8 text file as strings, checking it exists and has ``columns``."""
    columns = list(columns)
    if not path.is_file():
        raise DataError(f"{path}: file is missing; it must hold the columns {columns}")
    df = read_text_table(path, sep)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}, need {columns}"
        )
    return df.reset_index(drop=True)


def check_unique_ids(df: pd.DataFrame, col: str, path: Path) -> None:
    dup = df.duplicated(col, keep="first").to_numpy()
    if dup.any():
        r = row_of(dup)
        raise DataError(
            f"{path}: row {r} repeats {col} {df[col].iloc[r - 1]!r}; ids must be unique, "
            "remove the duplicate row"
        )


def check_label_values(
    labels: pd.Series,
    grades: dict[str, float],
    path: Path,
    col: str,
    source_rows: pd.Series | None = None,
) -> pd.Series:
    """Map ``labels`` to grades, raising on the first value the mapping does not know.

    ``source_rows`` gives each label's row number in the source when rows were filtered.
    """
    mapped = labels.map(grades)
    bad = mapped.isna().to_numpy()
    if bad.any():
        i = row_of(bad) - 1
        r = i + 1 if source_rows is None else int(source_rows.iloc[i])
        raise DataError(
            f"{path}: row {r} has {col} {labels.iloc[i]!r}, which is not a known label; "
            f"use one of {sorted(grades)}"
        )
    return mapped.astype("float64")


def drop_repeated_judgments(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Drop exact repeats of a (query, product) judgment; raise when repeats disagree."""
    keys = ["query_id", "product_id"]
    same = df.duplicated([*keys, "raw_label"], keep="first")
    df = df[~same.to_numpy()]
    clash = df.duplicated(keys, keep="first").to_numpy()
    if clash.any():
        first = df.iloc[row_of(clash) - 1]
        raise DataError(
            f"{path}: query_id {first['query_id']!r} and product_id {first['product_id']!r} are "
            "judged more than once with different labels; keep one judgment per pair"
        )
    if same.any():
        log.warning("%s: dropped %d repeated judgment(s)", path, int(same.sum()))
    return df.reset_index(drop=True)


def drop_empty(
    products: pd.DataFrame, queries: pd.DataFrame, judgments: pd.DataFrame, source: Path
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop products without a title and queries without text, and their judgments.

    Such rows cannot be encoded; a large public dump may hold a few, which should not make
    the whole import fail. How many were dropped is logged.
    """
    no_title = products["title"].str.strip() == ""
    no_text = queries["query"].str.strip() == ""
    if no_title.any() or no_text.any():
        untitled, textless = products["product_id"][no_title], queries["query_id"][no_text]
        kept = ~judgments["product_id"].isin(untitled) & ~judgments["query_id"].isin(textless)
        log.warning(
            "%s: dropped %d product(s) with no title, %d query(ies) with no text and the %d "
            "judgment(s) of them",
            source,
            int(no_title.sum()),
            int(no_text.sum()),
            int((~kept).sum()),
        )
        judgments = judgments[kept.to_numpy()]
    return (
        products[~no_title.to_numpy()].reset_index(drop=True),
        queries[~no_text.to_numpy()].reset_index(drop=True),
        judgments.reset_index(drop=True),
    )


def write_canonical(
    out: Path, products: pd.DataFrame, queries: pd.DataFrame, judgments: pd.DataFrame
) -> Path:
    """Write the three canonical CSVs to ``out`` atomically, after checking they load.

    The check runs on the temp directory, so an invalid result is never published.
    """
    out = Path(out)
    tables = {PRODUCTS: products, QUERIES: queries, JUDGMENTS: judgments}
    with atomic_dir(out, CANONICAL) as tmp:
        for name, df in tables.items():
            df = df.loc[:, list(COLUMNS[name])]
            text = [c for c in df.columns if c != "grade"]
            # pandas does not quote a field holding a lone "\r", and its reader splits rows
            # there; newlines are normalised to "\n", which it does quote.
            df[text] = df[text].apply(lambda s: s.str.replace("\r\n?", "\n", regex=True))
            df.to_csv(tmp / f"{name}.csv", index=False, encoding="utf-8", lineterminator="\n")
        try:
            load_dataset(tmp)
        except DataError as e:
            # The temporary tree is gone when this is read: name the table, and say whose rows
            # the numbers count.
            why = str(e).replace(f"{tmp}{os.sep}", "")
            raise DataError(f"{out}: the importer produced invalid output ({why}; rows count the "
                            "importer's output, after the rows it drops)") from e
    log.info(
        "wrote %s: %d products, %d queries, %d judgments",
        out,
        len(products),
        len(queries),
        len(judgments),
    )
    return out
