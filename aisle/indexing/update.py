"""``aisle index update``: a new version from the current one and today's catalog.

Products are matched by ``product_id``; a product whose tower text changed (another text hash)
counts as removed and added again. Nothing unchanged is encoded again: every vector comes
from the embedding cache unless its text is new.

Which index kinds change in place (``ann.supports_removal``): flat and IVF-Flat remove the
deleted/changed vectors with ``remove_ids`` and add the new ones; an IVF index keeps the
centroids it was trained with (drift grows with churn: rebuild now and then with
``aisle index --force``). HNSW cannot unlink graph nodes and IVF-PQ's exact re-rank cannot
remove vectors: for them the whole structure is rebuilt from the cached vectors, with no
re-embedding, and the log says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import faiss
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from aisle.artifacts import atomic_dir, read_manifest
from aisle.configs import to_dict
from aisle.data.dataset import catalog_manifest, prepared_dir
from aisle.data.schema import PRODUCTS
from aisle.errors import AisleError, ArtifactError, ManifestMismatch
from aisle.indexing.ann import ADD_BLOCK, supports_removal, uses_gpu
from aisle.indexing.build import (
    base_manifest,
    check_catalog,
    embed_for_build,
    fitting_config,
    job_manifest,
    make_faiss_index,
    partition_dir_name,
    partition_groups,
    publish_version,
    write_index_dir,
)
from aisle.indexing.embed_cache import EmbeddingCache, cache_key
from aisle.indexing.embed_job import EmbedEngine, check_engine
from aisle.indexing.vectors import stored_vectors
from aisle.indexing.versions import (
    BUILD_LOCK,
    DEFAULT_KEEP,
    EMBED_CACHE,
    VERSIONS,
    WORK,
    check_keep,
    locked,
    new_version_id,
)
from aisle.retrieval.config import IndexConfig, stored_index_config
from aisle.retrieval.layout import is_versioned
from aisle.retrieval.retriever import index_model
from aisle.retrieval.store import (
    INDEX_FILE,
    KIND,
    PARTITIONS_DIR,
    ROWS_FILE,
    load_index,
    recorded_runtime,
)
from aisle.towers.config import Backend
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Delta:
    kept: np.ndarray  # old row positions that stay (same id, same text)
    kept_new: np.ndarray  # their positions in the new catalog
    removed: np.ndarray  # old row positions that go (deleted, or text changed)
    added: np.ndarray  # new catalog positions to add (new, or text changed)


def diff(old: pd.DataFrame, new: pd.DataFrame) -> Delta:
    """Compare two row maps by (product_id, text_hash)."""
    old_key = old["product_id"] + "\0" + old["text_hash"]
    new_key = new["product_id"] + "\0" + new["text_hash"]
    where = pd.Index(new_key).get_indexer(pd.Index(old_key))
    kept = np.flatnonzero(where >= 0)
    added = np.setdiff1d(np.arange(len(new)), where[kept])
    return Delta(kept, where[kept], np.flatnonzero(where < 0), added)


def _is_bare_flat(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexFlat)


@dataclass(frozen=True)
class OldIndex:
    index: faiss.Index
    rows: pd.DataFrame
    config: IndexConfig


def apply_update(
    config: IndexConfig, old: OldIndex | None, new_rows: pd.DataFrame, vectors: np.ndarray
) -> tuple[faiss.Index, pd.DataFrame]:
    """The ``config`` index over ``new_rows``/``vectors`` (catalog order), changed in place from
    ``old`` when its kind supports removal. Returns it and its row map (with labels)."""
    if old is None or old.config != config or not supports_removal(config.kind):
        if old is not None and old.config == config:
            log.info("%s cannot remove vectors: rebuilding it from this update's vectors (the "
                     "embedding cache's, where it holds them)", config.kind)
        index = make_faiss_index(config, vectors)
        return index, new_rows.assign(label=np.arange(len(new_rows), dtype=np.int64))
    old_rows = old.rows
    d = diff(old_rows, new_rows)
    labels = old_rows["label"].to_numpy(dtype=np.int64)
    index = old.index
    index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(labels[d.removed])))
    added = np.ascontiguousarray(vectors[d.added], dtype=np.float32)
    if _is_bare_flat(index):  # positional: removal renumbers the survivors 0..n-1
        kept_labels = np.arange(len(d.kept), dtype=np.int64)
        new_labels = np.arange(len(d.kept), len(d.kept) + len(d.added), dtype=np.int64)
        index.add(added)
    else:  # IVF or an id map: ids stay, new ones come after the largest ever used
        kept_labels = labels[d.kept]
        start = int(labels.max()) + 1 if len(labels) else 0
        new_labels = np.arange(start, start + len(d.added), dtype=np.int64)
        index.add_with_ids(added, new_labels)
    rows = pd.concat(
        [
            new_rows.iloc[d.kept_new].assign(label=kept_labels),
            new_rows.iloc[d.added].assign(label=new_labels),
        ],
        ignore_index=True,
    )
    log.info("%s updated in place: %d kept, %d removed, %d added", config.kind, len(d.kept),
             len(d.removed), len(d.added))
    return index, rows


def _read_old(directory: Path | None) -> OldIndex | None:
    if directory is None or not (directory / ROWS_FILE).is_file():
        return None
    return _refused_if_corrupt(directory, _read_old_files)


def _check_old(directory: Path) -> None:
    """Refuse before any work what ``_read_old`` would refuse after the embedding, reading
    only the counts: the row map's metadata and the FAISS index with its vectors mapped,
    not copied (a partition is read whole once, by the update itself)."""
    if (directory / ROWS_FILE).is_file():
        _refused_if_corrupt(directory, _check_old_files)


def _refused_if_corrupt(directory: Path, read: Callable[[Path], T]) -> T:
    try:
        return read(directory)
    except ArtifactError:
        raise
    except (OSError, ValueError, RuntimeError) as e:  # faiss raises RuntimeError
        raise ArtifactError(f"{directory} is corrupt ({type(e).__name__}: {e}); run a full "
                            "build: aisle index build --force") from e


def _read_old_files(directory: Path) -> OldIndex:
    rows = pd.read_parquet(directory / ROWS_FILE)
    _check_updatable(directory, list(rows.columns))
    config = stored_index_config(read_manifest(directory, KIND).get("index_config", {}))
    index = faiss.read_index(str(directory / INDEX_FILE))
    _check_counts(directory, index.ntotal, len(rows))
    return OldIndex(index, rows, config)


def _check_old_files(directory: Path) -> None:
    rows = pq.ParquetFile(directory / ROWS_FILE)
    _check_updatable(directory, rows.schema_arrow.names)
    mapped = faiss.read_index(str(directory / INDEX_FILE), faiss.IO_FLAG_MMAP_IFC)
    _check_counts(directory, mapped.ntotal, rows.metadata.num_rows)


def _check_updatable(directory: Path, columns: list[str]) -> None:
    if "text_hash" not in columns or "label" not in columns:
        raise ArtifactError(
            f"{directory} was built before incremental updates (no text hashes); "
            "run a full build once: aisle index --data ... --out ... --force"
        )


def _check_counts(directory: Path, vectors: int, rows: int) -> None:
    if vectors != rows:
        # Changed in place, its row labels would point at other products' vectors.
        raise ArtifactError(
            f"{directory}: its {INDEX_FILE} holds {vectors} vectors, its {ROWS_FILE} "
            f"{rows} rows (files of two different builds?), so an update cannot change "
            "it; run a full build: aisle index build --force"
        )


def _cache_current_vectors(directory: Path, cache_dir: Path, model: TwoTowerModel) -> int:
    """Add to the embedding cache the vectors of ``directory`` (the current version, whose
    runtime is ``model``'s) that it lacks, read back from its FAISS index: a version built
    from a vector file has none in the cache, and an update would otherwise encode every
    product again (and a rebuilt kind, HNSW or IVF-PQ, replace the file's vectors of unchanged
    products). Returns how many were added."""
    try:
        rows = pd.read_parquet(directory / ROWS_FILE, columns=["text_hash", "label"])
    except (OSError, ValueError, KeyError):
        return 0  # a version from before text hashes: _read_old says to build again
    cache = EmbeddingCache(cache_dir, cache_key(model.fingerprint, model.runtime), model.dim)
    hashes = rows["text_hash"].to_numpy(dtype=object)
    missing = np.flatnonzero(~cache.holds(list(hashes)))
    if not len(missing):
        return 0
    try:
        index = faiss.read_index(str(directory / INDEX_FILE))
        labels = rows["label"].to_numpy(dtype=np.int64)
        for start in range(0, len(missing), ADD_BLOCK):
            part = missing[start:start + ADD_BLOCK]
            cache.add(list(hashes[part]), stored_vectors(index, labels[part]))
    except (ArtifactError, RuntimeError) as e:  # compact re-rank codes; faiss's errors
        log.warning("the vectors of %s cannot be read back (%s): its products are embedded "
                    "again", directory.name, e)
        return 0
    log.info("cached %d vectors of version %s (not embedded here)", len(missing),
             directory.name)
    return len(missing)


def update_version(
    data: Path,
    root: Path,
    model: TwoTowerModel | None = None,
    engine: EmbedEngine = "local",
    keep: int = DEFAULT_KEEP,
    *,
    model_ref: str | None = None,
    backend: Backend | None = None,
) -> Path:
    """Publish ``ROOT/versions/<new id>`` = the current version updated to ``data``'s catalog.

    ``model`` defaults to the current version's, loaded from ``model_ref`` if given (another
    directory of the same weights), with ``backend`` (default: the backend that embedded the
    current version); another model is refused (a full build), as is a current version whose
    index or partition holds another count of vectors than of rows (before any work). Refused
    while another build or update of the same root runs (``ROOT/.build.lock``).
    """
    check_keep(keep)  # before any work: a bad keep used to fail after publishing
    check_engine(engine)
    if model is not None and (model_ref is not None or backend is not None):
        raise ValueError("pass a loaded model, or model_ref/backend to load one, not both")
    root = Path(root)
    if not is_versioned(root):
        raise ArtifactError(
            f"{root} is not a versioned index root (no CURRENT); build one first: "
            f"aisle index --data ... --out {root}"
        )
    with locked(root, BUILD_LOCK, "aisle index update", wait=False):
        return _update_version(data, root, model, engine, keep, model_ref, backend)


def _on_this_host(config: IndexConfig) -> IndexConfig:
    """The current version's index config, to build on this machine: a version built with
    ``device=gpu`` is updated on the CPU where faiss sees no GPU (the device is where it was
    built, not what it is; an update has no option to change it). Decided here, before the
    embedding, not after it (``uses_gpu`` refuses only ``device=gpu``)."""
    if config.device != "gpu":
        return config
    try:
        uses_gpu(config)
    except AisleError:
        log.warning("the current version was built with device=gpu and faiss sees no GPU "
                    "here: this update builds its index on the CPU (device=auto)")
        return replace(config, device="auto")
    return config


def _mixing(built_with: str | None, recorded: str, model: TwoTowerModel) -> str:
    """Why ``model`` must not embed the products of a version whose vectors ``recorded``
    (its runtime) made, and what to run instead."""
    if built_with is not None and built_with != model.backend:
        return (f"the current version's vectors were embedded with the {built_with} backend, "
                f"this model runs on {model.backend}; an update must not mix them. Load the "
                f"model with that backend (aisle index update --backend {built_with}), or run "
                "a full build (aisle index build --force)")
    if built_with is None:  # a vector file's runtime that aisle does not run
        return (f"the current version's vectors were made by {recorded} (its vector file "
                f"says), this model runs {model.runtime}; an update must not mix them. Run a "
                "full build: aisle index build --force, or --vectors with a new file made the "
                "same way")
    # Same backend, so both are int8: another export, or a version from before exports were
    # recorded (which cannot say whether its export is this one).
    return (f"the current version's vectors were embedded by {recorded}, this model runs "
            f"{model.runtime}: another int8 export of it (or one the version did not record); "
            "an update must not mix them. Run a full build (aisle index build --force)")


def _update_version(data: Path, root: Path, model: TwoTowerModel | None, engine: EmbedEngine,
                    keep: int, model_ref: str | None, backend: Backend | None) -> Path:
    started = time.perf_counter()
    current = load_index(root)
    built_with = current.manifest["model"].get("backend")  # absent in older versions
    if model is None:
        model = index_model(current, model_ref, backend or built_with)
    if model.fingerprint != current.model_fingerprint:
        raise ManifestMismatch(
            f"the current version was built by model {current.model_ref}; an update keeps the "
            "model. A new model changes every vector: run a full build with --model instead"
        )
    recorded = recorded_runtime(current.manifest)
    if recorded is None:
        log.warning("the current version does not record what embedded its vectors (a vector "
                    "file that named no runtime, or a version from before runtimes were "
                    "recorded): this update embeds every product on %s and builds the index "
                    "from those vectors alone, so that it holds one runtime", model.runtime)
    elif model.runtime != recorded or built_with not in (None, model.backend):
        raise ManifestMismatch(_mixing(built_with, recorded, model))
    config = _on_this_host(stored_index_config(current.manifest["index_config"]))
    # Vectors of an unknown runtime are not kept: the index is built anew from the embedded ones.
    read_old = _read_old if recorded is not None else lambda directory: None
    with prepared_dir(Path(data)) as prep:
        data_manifest = catalog_manifest(prep)
        check_catalog(prep, data)
        if current.manifest["data"]["products_fingerprint"] == data_manifest["fingerprints"][
            PRODUCTS
        ]:
            log.info("current version %s already holds this catalog", current.root.name)
            return current.root
        if recorded is not None:
            for rel in current.manifest.get("partitions", {}).values():
                _check_old(current.root / rel)  # one it cannot update: refused before any work
            _cache_current_vectors(current.root, root / EMBED_CACHE, model)
        embedded = embed_for_build(prep, model, root / WORK, root / EMBED_CACHE, engine,
                                   config)
    vid = new_version_id()
    base = base_manifest(config, model, data_manifest)
    manifest = {
        **base,
        **job_manifest(embedded, engine, started),
        "fusion": current.manifest.get("fusion", base["fusion"]),  # keep a tuned fusion
        # and the record that it was tuned, by which a later rebuild keeps it too
        **{k: current.manifest[k] for k in ("fusion_tuning",) if k in current.manifest},
        "version": vid,
        "updated_from": current.root.name,
    }
    old_layout = current.manifest.get("partitions", {})
    rows = embedded.rows
    parts = partition_groups(rows)
    layout = {name: f"{PARTITIONS_DIR}/{partition_dir_name(name)}" for name in parts}
    with atomic_dir(root / VERSIONS / vid, None) as tmp:
        for name, pos in parts.items():
            old_dir = current.root / old_layout[name] if name in old_layout else None
            sub = rows.iloc[pos].reset_index(drop=True)
            used = fitting_config(config, len(pos), model.dim, f"partition {name!r}")
            index, sub_rows = apply_update(used, read_old(old_dir), sub, embedded.vectors[pos])
            write_index_dir(tmp / layout[name], index, sub_rows, sub_rows["text"].tolist(),
                            {**manifest, "partition": name, "index_config": to_dict(used)})
        index, all_rows = apply_update(config, read_old(current.root), rows, embedded.vectors)
        write_index_dir(tmp, index, all_rows, all_rows["text"].tolist(),
                        {**manifest, "partitions": layout})
    publish_version(root, vid, keep, replacing=current.root.name)
    log.info("updated %s -> %s in %.1fs (%d products encoded)", current.root.name, vid,
             time.perf_counter() - started, embedded.encoded)
    return root / VERSIONS / vid
