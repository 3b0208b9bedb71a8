"""Prepared datasets: typed parquet tables plus a manifest with counts and fingerprints.

``load_dataset`` accepts either a prepared directory (manifest.json + parquet) or a canonical
CSV directory, which it validates and holds in memory ("prepared on the fly").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aisle.artifacts import (
    MANIFEST,
    atomic_dir,
    read_manifest,
    restore_missing,
    sha256_file,
    write_manifest,
)
from aisle.data.canonical import (
    check_columns,
    read_canonical,
    validate_judgments,
    validate_products,
    validate_queries,
)
from aisle.data.fields import field_type
from aisle.data.schema import (
    ARROW_SCHEMAS,
    COLUMNS,
    ID_KEYS,
    JUDGMENTS,
    OPTIONAL_COLUMNS,
    PRODUCTS,
    QUERIES,
    TABLES,
)
from aisle.errors import DataError
from aisle.evaluation.metrics import GRADE_TOLERANCE

log = logging.getLogger(__name__)

KIND = "aisle.dataset"
# Small row groups let the index build stream the catalog in blocks of this size.
ROW_GROUP_SIZE = 4096


def table_fingerprint(df: pd.DataFrame, table: str) -> str:
    """Content hash of a table: stable across file formats and row order of the source."""
    h = hashlib.sha256()
    h.update(",".join(df.columns).encode())
    ordered = df.sort_values(ID_KEYS[table], kind="stable")
    h.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return h.hexdigest()


def judgments_at_least(judgments: pd.DataFrame, grade: float) -> pd.DataFrame:
    """The judgments with ``grade >= grade``, compared within ``GRADE_TOLERANCE`` as the metrics
    compare grades: training positives, autocomplete's top products."""
    return judgments[judgments["grade"] >= grade - GRADE_TOLERANCE]


@dataclass(frozen=True)
class Dataset:
    """The three canonical tables, validated. ``root`` is the prepared dir, if any."""

    products: pd.DataFrame
    queries: pd.DataFrame
    judgments: pd.DataFrame
    name: str
    root: Path | None = None

    def fingerprint(self, table: str) -> str:
        return table_fingerprint(getattr(self, table), table)

    @property
    def top_grade(self) -> float | None:
        """The highest judged grade: what recall and MRR count as relevant."""
        return float(self.judgments["grade"].max()) if len(self.judgments) else None

    def query_texts(self) -> dict[str, str]:
        """query_id -> query text, all splits."""
        return dict(zip(self.queries["query_id"], self.queries["query"], strict=True))

    def split_queries(self, split: str) -> pd.DataFrame:
        q = self.queries[self.queries["split"] == split]
        if q.empty:
            counts = self.queries["split"].value_counts()
            found = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no queries at all"
            raise DataError(
                f"dataset {self.name!r} has no queries in split {split!r} (it has {found}); "
                f"set split = {split} for some judged queries in queries.csv"
            )
        return q

    def split_judgments(self, split: str) -> pd.DataFrame:
        """The judgments of the queries of ``split``."""
        qids = set(self.split_queries(split)["query_id"])
        return self.judgments[self.judgments["query_id"].isin(qids)]

    def qrels(self, split: str) -> dict[str, dict[str, float]]:
        """query_id -> {product_id: grade} for the judged queries of ``split``."""
        j = self.split_judgments(split)
        out: dict[str, dict[str, float]] = {}
        for qid, pid, g in zip(j["query_id"], j["product_id"], j["grade"], strict=True):
            out.setdefault(qid, {})[pid] = float(g)
        return out


def _to_arrow(df: pd.DataFrame, table: str) -> pa.Table:
    schema = ARROW_SCHEMAS[table]
    extra = [c for c in df.columns if c not in schema.names]
    for c in extra:
        schema = schema.append(pa.field(c, _arrow_type(df[c], c, table)))
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def _arrow_type(values: pd.Series, name: str, table: str) -> pa.DataType:
    """An extra column's type: the query log's count, or a product field's (fields.py)."""
    if table == QUERIES and name == "count":
        return pa.int64()
    return {"number": pa.float64(), "boolean": pa.bool_()}.get(field_type(values), pa.string())


def prepare(data: Path, out: Path) -> Path:
    """Validate ``data`` (CSV or prepared) and publish typed parquet + manifest at ``out``."""
    # A prepared directory edited after preparation is read as it is now: preparing it again
    # is how its manifest comes to describe the edit (the checks would refuse it).
    ds = load_dataset(data, as_prepared=False)
    with atomic_dir(Path(out), KIND) as tmp:
        write_prepared(ds, tmp)
    log.info("prepared %s -> %s", data, out)
    return Path(out)


def write_prepared(ds: Dataset, directory: Path) -> None:
    counts, prints, files = {}, {}, {}
    for t in TABLES:
        df = getattr(ds, t)
        path = directory / f"{t}.parquet"
        pq.write_table(_to_arrow(df, t), path, row_group_size=ROW_GROUP_SIZE)
        counts[t] = len(df)
        prints[t] = table_fingerprint(df, t)
        files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    combined = hashlib.sha256("".join(prints[t] for t in TABLES).encode()).hexdigest()
    write_manifest(
        directory,
        {
            "kind": KIND,
            "name": ds.name,
            "counts": counts,
            "fingerprints": prints,
            "fingerprint": combined,
            # The bytes written: a table edited in place, its row count kept, is caught by them
            # (the fingerprints above describe the tables as prepared, not as they are now).
            "files": files,
            "top_grade": ds.top_grade,
        },
    )


def is_prepared(directory: Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def load_dataset(directory: Path, as_prepared: bool = True) -> Dataset:
    """The dataset in ``directory`` (canonical CSVs, or prepared parquet). A prepared one is
    checked to be as ``aisle prepare`` wrote it (each table's row count and bytes, where its
    manifest records them) unless ``as_prepared`` is False (``prepare`` itself, reading
    tables that may have been edited since)."""
    directory = Path(directory)
    restore_missing(directory)  # before it is taken for a missing or a CSV directory
    if not is_prepared(directory):
        csv = read_canonical(directory)
        return Dataset(csv[PRODUCTS], csv[QUERIES], csv[JUDGMENTS], name=_dir_name(directory))
    manifest = read_manifest(directory, KIND)
    counts, named = manifest.get("counts"), manifest.get("name")
    if as_prepared and not (isinstance(counts, dict) and isinstance(named, str)
                            and all(type(counts.get(t)) is int for t in TABLES)):
        raise DataError(f"{directory / MANIFEST}: incomplete (each table's row count and the "
                        "dataset's name); run `aisle prepare` again")
    tables: dict[str, pd.DataFrame] = {}
    for t in TABLES:
        path = directory / f"{t}.parquet"
        try:
            # Read once: the bytes parsed are the bytes hashed (a file replaced between a parse
            # and a second read for the hash would pass as prepared), and a large table is not
            # read twice.
            data = path.read_bytes()
            tables[t] = pq.read_table(pa.BufferReader(data)).to_pandas()
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{path}: unreadable ({e}); run `aisle prepare` again") from e
        if as_prepared:
            assert isinstance(counts, dict)
            _check_count(path, len(tables[t]), counts[t])
            _check_bytes(path, manifest, data)
        del data
    if not as_prepared:
        tables = _check_edited(tables, directory)
    name = named if isinstance(named, str) and named else _dir_name(directory)
    return Dataset(tables[PRODUCTS], tables[QUERIES], tables[JUDGMENTS], name=name,
                   root=directory)


def _dir_name(directory: Path) -> str:
    """The absolute path's name: "." or "data/hd/.." would otherwise name it "" or ".."."""
    return Path(os.path.abspath(directory)).name


def _check_edited(tables: dict[str, pd.DataFrame], directory: Path) -> dict[str, pd.DataFrame]:
    """The checks a CSV directory gets, on the tables of a prepared one read to be prepared
    again: it may have been edited since (a repeated id, an empty title, a judgment of an
    unknown product, a column dropped or retyped), and its new manifest would vouch for it."""
    paths = {t: directory / f"{t}.parquet" for t in TABLES}
    for t in TABLES:
        df, path = tables[t], paths[t]
        check_columns(df, t, path)
        for c in (*COLUMNS[t], *OPTIONAL_COLUMNS.get(t, ())):
            if c in ("grade", "count") or c not in df.columns:
                continue  # numbers, checked as such below
            if isinstance(df[c].dtype, pd.CategoricalDtype | pd.StringDtype):
                # Written so by pandas (a category, pandas' own string type): text as objects,
                # as the CSV path reads it; a missing value becomes None, refused below.
                df[c] = df[c].astype(object).where(df[c].notna(), None)
            if pd.api.types.infer_dtype(df[c], skipna=False) not in ("string", "empty"):
                row, value = next(((i, v) for i, v in enumerate(df[c].tolist(), start=1)
                                   if not isinstance(v, str)), (0, None))
                raise DataError(f"{path}: row {row} has {c} {value!r}, not text; every {c} "
                                "is a string")
    products = validate_products(tables[PRODUCTS], paths[PRODUCTS])
    queries = validate_queries(tables[QUERIES], paths[QUERIES])
    judgments = validate_judgments(tables[JUDGMENTS], paths[JUDGMENTS], queries["query_id"],
                                   products["product_id"])
    return {PRODUCTS: products, QUERIES: queries, JUDGMENTS: judgments}


def _check_count(path: Path, rows: int, counted: int) -> None:
    if rows != counted:
        raise DataError(
            f"{path}: has {rows} rows, manifest says {counted}; "
            "the directory was modified after preparation, run `aisle prepare` again"
        )


def _check_bytes(path: Path, manifest: dict[str, Any], data: bytes | None = None) -> None:
    """Refuse ``path`` when its bytes (``data`` where they were read already) are not those
    ``aisle prepare`` wrote (its size, then its sha256, as the manifest records them; a
    manifest from before they were recorded records none, and nothing is checked)."""
    files = manifest.get("files")
    wrote = files.get(path.name) if isinstance(files, dict) else None
    if not isinstance(wrote, dict):
        return
    if data is not None:
        same = (len(data) == wrote.get("bytes")
                and hashlib.sha256(data).hexdigest() == wrote.get("sha256"))
    else:
        try:
            same = (path.stat().st_size == wrote.get("bytes")
                    and sha256_file(path) == wrote.get("sha256"))
        except OSError as e:
            raise DataError(f"{path}: unreadable ({e}); run `aisle prepare` again") from e
    if not same:
        raise DataError(
            f"{path}: its bytes are not those `aisle prepare` wrote (the manifest's size and "
            "sha256); the directory was modified after preparation, run `aisle prepare` again "
            f"(--data {path.parent} takes the edit, into a new --out)"
        )


def catalog_manifest(prepared: Path) -> dict[str, Any]:
    """The manifest of ``prepared``, its products file checked as ``load_dataset`` checks it
    (readable, the rows its manifest counts, the bytes it records: hashed, not parsed),
    for the jobs that stream the catalog (an index build or update records the manifest's
    fingerprint: it would be built, or an update called current, for a catalog it does not
    hold)."""
    manifest = read_manifest(Path(prepared), KIND)
    path = Path(prepared) / f"{PRODUCTS}.parquet"
    try:
        rows = product_count(prepared)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: unreadable ({e}); run `aisle prepare` again") from e
    counts = manifest.get("counts")
    counted = counts.get(PRODUCTS) if isinstance(counts, dict) else None
    if isinstance(counted, int):
        _check_count(path, rows, counted)
    _check_bytes(path, manifest)
    return manifest


@contextlib.contextmanager
def prepared_dir(data: Path) -> Iterator[Path]:
    """Yield a prepared directory for ``data``: itself, or a temp preparation of a CSV dir."""
    data = Path(data)
    restore_missing(data)
    if is_prepared(data):
        yield data
        return
    with tempfile.TemporaryDirectory(prefix="aisle-prepared-") as tmp:
        out = Path(tmp) / (_dir_name(data) or "dataset")
        prepare(data, out)
        yield out


def iter_product_blocks(prepared: Path) -> Iterator[pd.DataFrame]:
    """Stream the products table of a prepared dir one parquet row group at a time."""
    pf = pq.ParquetFile(Path(prepared) / f"{PRODUCTS}.parquet")
    for i in range(pf.num_row_groups):
        yield pf.read_row_group(i).to_pandas()


def product_count(prepared: Path) -> int:
    return int(pq.ParquetFile(Path(prepared) / f"{PRODUCTS}.parquet").metadata.num_rows)


__all__ = [
    "JUDGMENTS",
    "PRODUCTS",
    "QUERIES",
    "Dataset",
    "catalog_manifest",
    "iter_product_blocks",
    "load_dataset",
    "prepare",
    "prepared_dir",
]
