"""Product vectors computed elsewhere: read, check and write the parquet ``aisle index`` takes.

The file: one row per product, columns ``product_id`` (string) and ``vector`` (a
``fixed_size_list<float32>[D]``, or a plain ``list<float32|float64>`` whose rows all have D
values), and the key-value metadata ``aisle.model_fingerprint`` naming the model that made the
vectors (``aisle.model_ref`` is informational). Row order does not matter. ``write_vectors``
writes that layout; ``aisle index export-vectors`` writes it from a built index. The optional
key ``aisle.runtime`` says what ran the model (``TwoTowerModel.runtime``: torch, onnx-fp32, or
which int8 export; any other name is kept as given): the index records it, so an update embeds
new products the same way or refuses to mix. A file that names none makes an index whose runtime
is unknown (recorded as null): a build without ``--vectors`` embeds the catalog again rather
than trust it, and an update embeds every product and replaces the file's vectors.

Checked before anything is written, each refused with a one-line ``VectorFileError`` (the
fingerprint with ``ManifestMismatch``): the fingerprint is the model's; D is the model's
dimension; no null, NaN or infinite value; every vector has unit L2 norm (within ``NORM_TOL``;
never normalised silently: a file of unnormalised vectors usually came from the wrong place);
no product id twice; every catalog product has a vector; and no vector for a product the
catalog lacks. Extra ids are refused, not dropped: they mean the file was made for another
catalog (or another day's), and an index built from it would silently mix the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aisle.artifacts import publish, read_manifest, sha256_file, sibling_temp
from aisle.data.dataset import iter_product_blocks
from aisle.errors import ArtifactError, DataError, ManifestMismatch
from aisle.indexing.embed_cache import text_hashes
from aisle.indexing.embed_job import EmbeddedCatalog, row_columns
from aisle.retrieval.layout import resolve_index_dir
from aisle.retrieval.store import INDEX_FILE, KIND, ROWS_FILE, recorded_runtime
from aisle.towers.model import TwoTowerModel

FINGERPRINT_KEY = b"aisle.model_fingerprint"
MODEL_REF_KEY = b"aisle.model_ref"
RUNTIME_KEY = b"aisle.runtime"
ID_COLUMN = "product_id"
VECTOR_COLUMN = "vector"
# The same tolerance the FAISS build applies (ann._check_vectors): float32 towers' outputs
# are within 1e-6 of unit length.
NORM_TOL = 1e-3
SHOWN = 3  # example ids in a refusal


class VectorFileError(DataError):
    """A product-vector file cannot be used for this model and catalog."""


@dataclass(frozen=True)
class ProductVectors:
    """A checked vector file, in its own row order."""

    product_ids: np.ndarray  # (n,) str
    vectors: np.ndarray  # (n, D) float32, unit rows
    fingerprint: str
    sha256: str
    path: Path
    runtime: str | None = None  # what ran the model, when the file says


def check_vectors_out(path: Path) -> None:
    """Refuse an output path that holds something other than a vector file (a mistyped
    ``--out`` would replace the catalog, say, with parquet bytes)."""
    if not path.exists() and not path.is_symlink():
        return
    hint = "pick another output path (or delete it yourself if nothing in it is needed)"
    if not path.is_file():
        raise ArtifactError(f"{path} exists and is not a file; {hint}")
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        metadata = {}
    if FINGERPRINT_KEY not in metadata:
        raise ArtifactError(f"{path} exists and is not a vector file aisle wrote; {hint}")


def write_vectors(
    path: Path, product_ids: np.ndarray, vectors: np.ndarray, fingerprint: str, model_ref: str = "",
    runtime: str | None = None,
) -> Path:
    """Write ``vectors`` (one row per product id) as the parquet ``aisle index --vectors``
    takes; ``runtime``: what ran the model (``TwoTowerModel.runtime``), when known. The file
    appears complete or not at all."""
    path = Path(path)
    check_vectors_out(path)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    values = pa.array(x.reshape(-1), type=pa.float32())
    table = pa.table({
        ID_COLUMN: pa.array([str(p) for p in product_ids], type=pa.string()),
        VECTOR_COLUMN: pa.FixedSizeListArray.from_arrays(values, x.shape[1]),
    }).replace_schema_metadata({FINGERPRINT_KEY: fingerprint.encode(),
                                MODEL_REF_KEY: model_ref.encode(),
                                **({RUNTIME_KEY: runtime.encode()} if runtime else {})})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_temp(path, "tmp")
    try:
        pq.write_table(table, tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _matrix(column: pa.ChunkedArray, dim: int, path: Path) -> np.ndarray:
    arr = column.combine_chunks()
    if not (pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type)
            or pa.types.is_large_list(arr.type)):
        raise VectorFileError(f"{path}: column {VECTOR_COLUMN!r} is {arr.type}; it must be a "
                              "list of floats (fixed_size_list<float32>[D] or list<float32>)")
    if not pa.types.is_floating(arr.type.value_type):
        raise VectorFileError(f"{path}: vectors hold {arr.type.value_type}, not floats")
    if arr.null_count:
        raise VectorFileError(f"{path}: {arr.null_count} product(s) have a null vector")
    lengths = np.asarray(pc.list_value_length(arr).to_numpy(zero_copy_only=False))
    if len(arr) and (lengths.min() != dim or lengths.max() != dim):
        bad = int(lengths[lengths != dim][0])
        raise VectorFileError(f"{path}: vectors have {bad} dimensions, the model's have {dim}; "
                              "these vectors come from another model")
    values = arr.flatten()
    if values.null_count:
        raise VectorFileError(f"{path}: {values.null_count} vector value(s) are null")
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)


def read_vectors(path: Path, fingerprint: str, dim: int) -> ProductVectors:
    """Read and check the file against the model (``fingerprint``, ``dim``); not the catalog
    (``align``) does that."""
    path = Path(path)
    if not path.is_file():
        raise VectorFileError(f"{path}: no such vector file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise VectorFileError(f"{path}: not a readable parquet file ({e})") from None
    missing = {ID_COLUMN, VECTOR_COLUMN} - set(table.column_names)
    if missing:
        raise VectorFileError(f"{path}: lacks column(s) {sorted(missing)}; it needs "
                              f"{ID_COLUMN!r} and {VECTOR_COLUMN!r}")
    metadata = table.schema.metadata or {}
    named = metadata.get(FINGERPRINT_KEY, b"").decode()
    if not named:
        raise VectorFileError(f"{path}: names no model (parquet key-value metadata "
                              f"{FINGERPRINT_KEY.decode()!r}); write it with "
                              "aisle.indexing.vectors.write_vectors or aisle index export-vectors")
    if named != fingerprint:
        raise ManifestMismatch(f"{path}: vectors were made by model fingerprint {named}, the "
                               f"model given has {fingerprint}; pass the model that made them")
    x = _matrix(table.column(VECTOR_COLUMN), dim, path)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise VectorFileError(f"{path}: {int(bad.sum())} vector(s) hold NaN or inf")
    norms = np.linalg.norm(x, axis=1)
    off = np.abs(norms - 1.0) >= NORM_TOL
    if off.any():
        raise VectorFileError(
            f"{path}: {int(off.sum())} vector(s) are not unit length (norms "
            f"{norms[off].min():.4g}..{norms[off].max():.4g}); divide each by its L2 norm "
            "(v / np.linalg.norm(v, axis=1, keepdims=True)) and write the file again"
        )
    ids = table.column(ID_COLUMN).to_pandas().astype(str)
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise VectorFileError(f"{path}: {len(dup)} product id(s) appear twice, e.g. "
                              f"{list(dup[:SHOWN])}; keep one vector per product")
    runtime = metadata.get(RUNTIME_KEY, b"").decode().strip() or None
    return ProductVectors(ids.to_numpy(), x, named, sha256_file(path), path, runtime)


def align(found: ProductVectors, catalog_ids: pd.Series) -> np.ndarray:
    """The vectors in catalog order; refuse a missing or an extra product."""
    position = pd.Index(found.product_ids).get_indexer(catalog_ids.astype(str))
    lacking = catalog_ids[position < 0]
    if len(lacking):
        raise VectorFileError(f"{found.path}: {len(lacking)} catalog product(s) have no "
                              f"vector, e.g. {list(lacking[:SHOWN])}")
    extra = pd.Index(found.product_ids).difference(pd.Index(catalog_ids.astype(str)))
    if len(extra):
        raise VectorFileError(f"{found.path}: {len(extra)} vector(s) are for products not in "
                              f"the catalog, e.g. {list(extra[:SHOWN])}; the file was made for "
                              "another catalog: drop those rows or index that catalog")
    return np.ascontiguousarray(found.vectors[position])


def catalog_from_file(prepared: Path, model: TwoTowerModel, path: Path) -> tuple[
        EmbeddedCatalog, dict[str, object]]:
    """The catalog's rows (as the embedding job makes them) with the file's vectors, and what
    the manifest records of the file. Nothing is encoded."""
    found = read_vectors(path, model.fingerprint, model.dim)
    frames = []
    for block in iter_product_blocks(prepared):
        texts = model.product_texts(block)
        frames.append(block[row_columns(block)].assign(text=texts, text_hash=text_hashes(texts)))
    if not frames:
        raise DataError(f"{prepared}: the catalog has no products; nothing to index")
    rows = pd.concat(frames, ignore_index=True)
    vectors = align(found, rows["product_id"])
    source: dict[str, object] = {
        "source": "file", "path": str(found.path.resolve()), "sha256": found.sha256,
        "model_fingerprint": found.fingerprint, "runtime": found.runtime, "count": len(vectors),
    }
    return EmbeddedCatalog(rows, vectors, encoded=0, resumed_blocks=0), source


def stored_vectors(index: faiss.Index, labels: np.ndarray | pd.Series) -> np.ndarray:
    """The vectors a built index holds for FAISS ids ``labels``. Every kind ``aisle index``
    builds keeps the float32 vectors exactly (ivf_pq in its exact re-rank's
    ``IndexRefineFlat``), so nothing needs encoding again; one with compact re-rank codes
    (``rerank_codes`` fp16 or sq8) is refused."""
    if isinstance(index, faiss.IndexRefine) and not isinstance(
            faiss.downcast_index(index.refine_index), faiss.IndexFlat):
        raise ArtifactError(
            "this index keeps compact re-rank codes (rerank_codes fp16 or sq8), not the float "
            "vectors, so it cannot give them back; embed the catalog again (the embedding "
            "cache holds them) or export from an index built with rerank_codes=float32")
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and not isinstance(index, faiss.IndexRefine):
        # An IVF index finds a vector by id only through a direct map; a hash table also
        # serves the sparse ids an updated index has.
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    ids = np.ascontiguousarray(labels, dtype=np.int64)
    return np.asarray(index.reconstruct_batch(ids), dtype=np.float32)


def export_vectors(index_dir: Path, out: Path) -> Path:
    """Write the catalog vectors of a built index (an index root's CURRENT version, or one
    index directory) as a vector file ``aisle index --vectors`` takes back."""
    check_vectors_out(Path(out))  # before reading the index: a refusal costs nothing
    directory = resolve_index_dir(Path(index_dir))
    manifest = read_manifest(directory, KIND)
    rows = pd.read_parquet(directory / ROWS_FILE, columns=["product_id", "label"])
    vectors = stored_vectors(faiss.read_index(str(directory / INDEX_FILE)), rows["label"])
    model = manifest["model"]
    return write_vectors(out, rows["product_id"].to_numpy(), vectors,
                         str(model["fingerprint"]), str(model["ref"]),
                         recorded_runtime(manifest))
