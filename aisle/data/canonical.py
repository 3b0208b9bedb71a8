"""Read and validate a canonical CSV directory (queries.csv, products.csv, judgments.csv).

Every error names the file, the row (1-based data row, header excluded) or column, and what
to fix. Nothing here writes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from aisle.data.fields import check_field_name, type_column
from aisle.data.schema import COLUMNS, JUDGMENTS, OPTIONAL_COLUMNS, PRODUCTS, QUERIES, SPLITS
from aisle.errors import DataError

log = logging.getLogger(__name__)


def normalize_query(text: str) -> str:
    """A query's text as splits and the query log compare it: case-folded, spaces collapsed."""
    return " ".join(text.casefold().split())


def read_text_table(path: Path, sep: str = ",") -> pd.DataFrame:
    """Every field of a UTF-8 delimited file with a header row, as strings.

    Each data row must have as many fields as the header: pandas would otherwise read one
    extra field per row as a row index and shift every column one place, or pad a short row
    with empty fields, and either is accepted silently. Header names must be distinct.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} has bytes that are not UTF-8 ({e.reason} at byte {e.start}); "
            "re-encode the file as UTF-8"
        ) from e
    try:
        with warnings.catch_warnings():
            # A row of the wrong length: _check_fields below says which, as an error.
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            df = pd.read_csv(
                io.StringIO(text), dtype=str, keep_default_na=False, sep=sep,
                quoting=csv.QUOTE_MINIMAL, index_col=False,
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: not a readable CSV ({e}); check quoting and separators") from e
    with _no_field_limit():
        _check_fields(path, text, sep)
    return df


@contextlib.contextmanager
def _no_field_limit() -> Iterator[None]:
    """Lift the csv module's 128 KiB field limit (pandas has none) for the ``with`` block."""
    old = csv.field_size_limit(2**31 - 1)  # the largest a C long holds on every platform
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _check_fields(path: Path, text: str, sep: str) -> None:
    """Refuse a repeated header name and a data row whose field count is not the header's."""
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(rows, None)
        if header is None:
            return  # empty file: read_csv says so
        names = [h.strip() for h in header]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataError(f"{path}: the header repeats column(s) {repeated}; name each once")
        data_row = 0
        for fields in rows:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank (or all-space) line, which pandas skips too
            data_row += 1
            if len(fields) != len(header):
                trailing = " (a trailing separator?)" if fields[-1] == "" else ""
                raise DataError(
                    f"{path}: row {data_row} has {len(fields)} fields, the header has "
                    f"{len(header)}{trailing}; quote fields that contain {sep!r}"
                )
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV ({e}); check quoting and separators") from e


def read_csv_strict(path: Path, table: str, sep: str = ",") -> pd.DataFrame:
    """Read one CSV as strings, checking encoding, field counts and required columns."""
    if not path.is_file():
        if path.is_symlink():
            raise DataError(f"{path}: a link to {os.readlink(path)}, which is not a file; fix "
                            "the link or remove it")
        if path.exists():
            raise DataError(f"{path}: not a file; a {table} table is a CSV file")
        raise DataError(f"{path}: file is missing; a {table} table needs {list(COLUMNS[table])}")
    df = read_text_table(path, sep)
    check_columns(df, table, path)
    keep = [*COLUMNS[table], *(c for c in OPTIONAL_COLUMNS.get(table, ()) if c in df.columns)]
    if table == PRODUCTS:  # extra product columns are fields (aisle/data/fields.py)
        keep += [c for c in df.columns if c not in keep]
    return df[keep]


def check_columns(df: pd.DataFrame, table: str, path: Path) -> None:
    """Refuse a ``table`` frame read from ``path`` that lacks a required column."""
    missing = [c for c in COLUMNS[table] if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}, "
            f"need {list(COLUMNS[table])}"
        )


def _row(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def _value(value: object) -> object:
    """A cell as a message shows it: 5.0, not np.float64(5.0) (a prepared table's grades)."""
    return value.item() if isinstance(value, np.generic) else value


def check_unique(df: pd.DataFrame, cols: list[str], path: Path) -> None:
    dup = df.duplicated(cols, keep="first").to_numpy()
    if dup.any():
        r = _row(df, dup)
        key = ", ".join(f"{c}={df.iloc[r - 1][c]!r}" for c in cols)
        raise DataError(f"{path}: row {r} repeats {key}; ids must be unique, remove the duplicate")


def check_nonempty(df: pd.DataFrame, col: str, path: Path, what: str) -> None:
    empty = (df[col].str.strip() == "").to_numpy()
    if empty.any():
        r = _row(df, empty)
        raise DataError(f"{path}: row {r} has an empty {col!r}; every {what} needs one")


def check_one_word(df: pd.DataFrame, col: str, path: Path) -> None:
    spaced = df[col].str.contains(r"\s", regex=True).to_numpy()
    if spaced.any():
        r = _row(df, spaced)
        raise DataError(
            f"{path}: row {r} has {col} {df[col].iloc[r - 1]!r}, with white space in it; ids are "
            "one word (TREC run and qrels files, which aisle writes and reads, split on spaces): "
            "replace the spaces, e.g. with '_'"
        )


# What pandas calls a column whose header name is empty (0-based position).
_UNNAMED = re.compile(r"Unnamed: (\d+)")


def validate_products(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    check_nonempty(df, "product_id", path, "product")
    check_one_word(df, "product_id", path)
    check_unique(df, ["product_id"], path)
    check_nonempty(df, "title", path, "product")
    known = {*COLUMNS[PRODUCTS], *OPTIONAL_COLUMNS[PRODUCTS]}
    extra = [c for c in df.columns if c not in known]
    for name in extra:
        unnamed = _UNNAMED.fullmatch(name)
        if unnamed:
            raise DataError(
                f"{path}: header column {int(unnamed[1]) + 1} has no name (a trailing "
                "separator?); name that column or remove it from every row"
            )
        check_field_name(name, str(path))
    # Only text is typed: a prepared table read to be prepared again has typed its columns.
    typed = {c: type_column(df[c]) for c in extra
             if pd.api.types.infer_dtype(df[c], skipna=False) in ("string", "empty")}
    return df.assign(**typed).reset_index(drop=True)


def validate_queries(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    check_nonempty(df, "query_id", path, "query")
    check_one_word(df, "query_id", path)
    check_unique(df, ["query_id"], path)
    check_nonempty(df, "query", path, "query")
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        r = _row(df, bad)
        raise DataError(
            f"{path}: row {r} has split {df['split'].iloc[r - 1]!r}; use one of {list(SPLITS)}"
        )
    if "count" in df.columns:
        # A count is how often the query was searched: a whole number that fits int64 (inf
        # would not cast, 1e30 would wrap negative, 1.7 would be cut to 1 without a word).
        counts = pd.to_numeric(df["count"], errors="coerce").astype("float64")
        values = counts.to_numpy()
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values < 0) | (values % 1 != 0) | (values >= 2.0**63)
        if bad.any():
            r = _row(df, bad)
            raise DataError(
                f"{path}: row {r} has count {df['count'].iloc[r - 1]!r}; counts are whole "
                "numbers >= 0 (how often the query was searched)"
            )
        df = df.assign(count=counts.astype("int64"))
    _warn_on_shared_texts(df, path)
    return df.reset_index(drop=True)


def _warn_on_shared_texts(df: pd.DataFrame, path: Path) -> None:
    """Warn (not refuse: it is the data owner's split) when one query text is in more than one
    split: its judgments would be trained on and then evaluated as unseen."""
    if df.empty:
        return
    texts = df["query"].map(normalize_query)
    counted = df.groupby(texts)["split"].nunique()  # vectorised: a log of millions
    shared = counted[counted > 1]
    if len(shared):
        text = shared.index[0]
        where = sorted(set(df["split"][texts == text]))
        log.warning(
            "%s: %d query text(s) are in more than one split (e.g. %r in %s): what is trained on "
            "is then evaluated as unseen; give each text one split", path, len(shared), text,
            " and ".join(where),
        )


def validate_judgments(
    df: pd.DataFrame, path: Path, query_ids: pd.Series, product_ids: pd.Series
) -> pd.DataFrame:
    grades = pd.to_numeric(df["grade"], errors="coerce")
    bad = grades.isna().to_numpy()
    if bad.any():
        r = _row(df, bad)
        raise DataError(
            f"{path}: row {r} has grade {_value(df['grade'].iloc[r - 1])!r}, not a number; "
            "grades are floats, 0 = irrelevant"
        )
    neg = (grades < 0).to_numpy() | ~np.isfinite(grades.to_numpy())
    if neg.any():
        r = _row(df, neg)
        raise DataError(
            f"{path}: row {r} has grade {_value(df['grade'].iloc[r - 1])!r}; grades must be "
            "finite and >= 0"
        )
    for col, known, table in (
        ("query_id", query_ids, QUERIES),
        ("product_id", product_ids, PRODUCTS),
    ):
        unknown = ~df[col].isin(known)
        if unknown.any():
            r = _row(df, unknown)
            raise DataError(
                f"{path}: row {r} has {col} {df[col].iloc[r - 1]!r}, which is not in the "
                f"{table} table; add it there or drop the judgment "
                f"({int(unknown.sum())} such row(s))"
            )
    check_unique(df, ["query_id", "product_id"], path)
    return df.assign(grade=grades.astype("float64")).reset_index(drop=True)


def read_canonical(directory: Path) -> dict[str, pd.DataFrame]:
    """Read and validate the three tables of a canonical CSV directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; pass a canonical CSV or prepared directory")
    paths = {t: directory / f"{t}.csv" for t in (PRODUCTS, QUERIES, JUDGMENTS)}
    products = validate_products(read_csv_strict(paths[PRODUCTS], PRODUCTS), paths[PRODUCTS])
    # A catalog alone (no queries.csv) is valid: it can be indexed and searched, not evaluated.
    if _present(paths[QUERIES]):
        queries = validate_queries(read_csv_strict(paths[QUERIES], QUERIES), paths[QUERIES])
    elif _present(paths[JUDGMENTS]):
        raise DataError(f"{paths[QUERIES]}: file is missing but judgments.csv needs it")
    else:
        queries = empty_table(QUERIES)
    if _present(paths[JUDGMENTS]):
        judgments = validate_judgments(
            read_csv_strict(paths[JUDGMENTS], JUDGMENTS),
            paths[JUDGMENTS],
            queries["query_id"],
            products["product_id"],
        )
    else:
        judgments = empty_table(JUDGMENTS)
    return {PRODUCTS: products, QUERIES: queries, JUDGMENTS: judgments}


def _present(path: Path) -> bool:
    """Whether the directory has something at ``path``: a broken link is a table that could
    not be read (``read_csv_strict`` says so), not a table left out."""
    return path.exists() or path.is_symlink()


def empty_table(table: str) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series([], dtype=str) for c in COLUMNS[table]})
    return df.astype({"grade": "float64"}) if table == JUDGMENTS else df
