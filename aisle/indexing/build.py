"""``aisle index``: embed the catalog (embed_job), write FAISS + row map + BM25 + manifest.

``build_version`` publishes an immutable ``ROOT/versions/<id>/`` and switches ``ROOT/CURRENT``
(versions.py); ``build_index`` writes one plain index directory (what a version holds). A
catalog with a ``partition`` column also gets one index per partition under ``partitions/``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from aisle.artifacts import atomic_dir, check_replaceable, read_manifest, write_manifest
from aisle.configs import to_dict
from aisle.data.dataset import catalog_manifest, prepared_dir, product_count
from aisle.data.fields import field_columns, field_types
from aisle.data.schema import PRODUCTS
from aisle.errors import AisleError, ArtifactError, DataError
from aisle.indexing.ann import build_faiss_index, check_buildable, uses_gpu
from aisle.indexing.embed_cache import EmbeddingCache, cache_key
from aisle.indexing.embed_job import (
    PARTITION,
    EmbeddedCatalog,
    EmbedEngine,
    check_engine,
    embed_catalog,
)
from aisle.indexing.vectors import catalog_from_file
from aisle.indexing.versions import (
    BUILD_LOCK,
    DEFAULT_KEEP,
    EMBED_CACHE,
    VERSIONS,
    WORK,
    check_index_root,
    check_keep,
    current_id,
    locked,
    new_version_id,
    promote,
    prune,
)
from aisle.retrieval.config import FusionConfig, IndexConfig, stored_index_config
from aisle.retrieval.layout import resolve_index_dir
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.store import (
    INDEX_FILE,
    KIND,
    LEXICAL_DIR,
    PARTITIONS_DIR,
    ROWS_FILE,
    file_sizes,
    index_is_current,
)
from aisle.towers.config import runtime_backend
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)

ROW_COLUMNS = ["product_id", "title", "text_hash", "label"]


def make_faiss_index(config: IndexConfig, vectors: np.ndarray) -> faiss.Index:
    """The FAISS index of ``config.kind`` over ``vectors`` (row i gets id i)."""
    return build_faiss_index(config, vectors)


def fitting_config(config: IndexConfig, count: int, dim: int, what: str) -> IndexConfig:
    """``config``, or flat where ``count`` vectors are too few to train it (a small partition:
    exact search over a few thousand vectors is as fast as any ANN index). Flat builds on the
    CPU, so a ``device=gpu`` of the whole catalog's IVF index becomes ``auto`` there."""
    try:
        check_buildable(config, count, dim)
    except AisleError as e:
        log.info("%s: %d products are too few for %s (%s); using flat", what, count,
                 config.kind, e)
        device = "auto" if config.device == "gpu" else config.device
        return replace(config, kind="flat", device=device)
    return config


def partition_dir_name(name: str) -> str:
    """A file-system-safe, collision-free directory name for a partition value."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60].lstrip(".") or "_"
    return slug if slug == name else f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def partition_groups(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """partition name -> catalog positions; products with an empty partition are in none."""
    if PARTITION not in rows.columns:
        return {}
    names = rows[PARTITION].fillna("").astype(str).str.strip().to_numpy()
    return {str(k): np.flatnonzero(names == k) for k in sorted(set(names) - {""})}


def base_manifest(
    config: IndexConfig, model: TwoTowerModel, data_manifest: dict[str, Any],
    from_file: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``from_file``: the record of a vector file the catalog's vectors came from; what ran the
    model is then the file's to say (null when it does not), not ``model``'s."""
    runtime = model.runtime if from_file is None else from_file.get("runtime")
    return {
        "kind": KIND,
        "index_config": to_dict(config),
        "model": {
            "ref": model.ref,
            "fingerprint": model.fingerprint,
            # Which query tower searches is not the index's to say (the product tower made
            # its vectors): index_model runs the model's default unless told otherwise.
            "tower_config": {k: v for k, v in to_dict(model.config).items()
                             if k != "query_tower"},
            # What actually embedded the catalog (the config may say auto): an update must
            # embed new products the same way, or one index would mix torch and int8 vectors.
            "backend": runtime_backend(runtime),
            # And which int8 export, if any: vectors of another export must not be mixed in.
            "runtime": runtime,
        },
        "dim": model.dim,
        "lexical": {"kind": "bm25s", "dir": LEXICAL_DIR},
        "fusion": to_dict(FusionConfig()),
        "data": {
            "name": data_manifest["name"],
            "products_fingerprint": data_manifest["fingerprints"][PRODUCTS],
        },
    }


def kept_fusion(previous: Path | None, model: TwoTowerModel) -> dict[str, Any]:
    """What a rebuild keeps of the index it replaces (``previous``, None: none): the fusion
    ``aisle tune-fusion`` chose, when ``previous`` was built by the same towers, whose dense
    scores then mean what they meant when it was tuned (a new catalog changes them no more
    than an update does, which keeps it too). Built by another model, the fusion starts
    from the default again (logged: tune it again); an untuned one needs nothing kept."""
    if previous is None:
        return {}
    try:
        manifest = read_manifest(previous, KIND)
    except ArtifactError:
        return {}  # nothing readable to keep; the build says what it replaces, if anything
    if "fusion_tuning" not in manifest:
        return {}
    if manifest.get("model", {}).get("fingerprint") != model.fingerprint:
        log.warning("%s's fusion was tuned for another model's vectors and is not kept: run "
                    "aisle tune-fusion on the new index", previous)
        return {}
    log.info("keeping the fusion tuned for %s: %s", previous, manifest["fusion"])
    return {"fusion": manifest["fusion"], "fusion_tuning": manifest["fusion_tuning"]}


def write_index_dir(
    directory: Path,
    index: faiss.Index,
    rows: pd.DataFrame,
    texts: list[str],
    manifest: dict[str, Any],
) -> None:
    """One index directory: ``rows`` (with FAISS ``label`` per row) must match ``index``.
    The rows' fields (brand, category and any typed extra columns) are stored with them, and
    the manifest's ``fields`` says each one's type.

    The BM25 index is built as ``manifest["index_config"]`` says, so the two always agree.
    """
    assert index.ntotal == len(rows) == len(texts), (index.ntotal, len(rows), len(texts))
    lexical = stored_index_config(manifest["index_config"])
    directory.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(directory / INDEX_FILE))
    fields = field_columns(rows)
    rows[[*ROW_COLUMNS, *fields]].to_parquet(directory / ROWS_FILE, index=False)
    # BM25 over the very strings the product tower embedded, for lexical and hybrid modes.
    BM25Index.from_config(texts, rows["product_id"].tolist(), lexical).save(
        directory / LEXICAL_DIR
    )
    write_manifest(directory, {**manifest, "count": int(index.ntotal),
                               "fields": field_types(rows[fields]),
                               "files": file_sizes(directory)})


def write_catalog(
    directory: Path,
    config: IndexConfig,
    embedded: EmbeddedCatalog,
    manifest: dict[str, Any],
) -> None:
    """The whole catalog's index plus one per partition, built from embedded vectors."""
    rows = embedded.rows.assign(label=np.arange(len(embedded.rows), dtype=np.int64))
    parts = partition_groups(rows)
    layout = {name: f"{PARTITIONS_DIR}/{partition_dir_name(name)}" for name in parts}
    dim = int(embedded.vectors.shape[1])
    for name, pos in parts.items():
        sub = rows.iloc[pos].assign(label=np.arange(len(pos), dtype=np.int64))
        used = fitting_config(config, len(pos), dim, f"partition {name!r}")
        write_index_dir(
            directory / layout[name],
            make_faiss_index(used, embedded.vectors[pos]),
            sub,
            sub["text"].tolist(),
            {**manifest, "partition": name, "index_config": to_dict(used)},
        )
    write_index_dir(
        directory,
        make_faiss_index(config, embedded.vectors),
        rows,
        rows["text"].tolist(),
        {**manifest, "partitions": layout},
    )


def check_catalog(prep: Path, data: Path) -> None:
    """Refuse a catalog with no products, naming ``data``: what the user gave, where ``prep``
    may be a temporary preparation of a CSV directory."""
    if product_count(prep) == 0:
        raise DataError(f"{data}: the catalog has no products; nothing to index")


def embed_for_build(
    prep: Path,
    model: TwoTowerModel,
    work: Path,
    cache_dir: Path | None,
    engine: EmbedEngine,
    config: IndexConfig,
) -> EmbeddedCatalog:
    """Check the config can index this catalog (its callers have refused an empty one:
    ``check_catalog``), then run the embedding job."""
    check_buildable(config, product_count(prep), model.dim)  # before any embedding work
    key = cache_key(model.fingerprint, model.runtime)
    cache = EmbeddingCache(cache_dir, key, model.dim) if cache_dir else None
    return embed_catalog(prep, model, work, cache, engine)


def catalog_vectors(
    prep: Path, model: TwoTowerModel, config: IndexConfig, vectors: Path | None,
    embed: Callable[[], EmbeddedCatalog],
) -> tuple[EmbeddedCatalog, dict[str, Any] | None]:
    """The catalog with its vectors, from the file ``vectors`` (checked, nothing encoded) or
    from ``embed()``, and the manifest's record of the file (None when embedded here).
    A ``device=gpu`` the FAISS build cannot use is refused first, not after the embedding."""
    uses_gpu(config)
    if vectors is None:
        return embed(), None
    embedded, source = catalog_from_file(prep, model, vectors)
    check_buildable(config, len(embedded.rows), model.dim)
    return embedded, source


def job_manifest(
    embedded: EmbeddedCatalog, engine: EmbedEngine, started: float,
    from_file: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "embedding": from_file or {
            "engine": engine,
            "encoded": embedded.encoded,
            "cached": len(embedded.rows) - embedded.encoded,
            "resumed_blocks": embedded.resumed_blocks,
        },
        "created": time.time(),
        "build_seconds": round(time.perf_counter() - started, 1),
    }


def build_index(
    data: Path,
    model: TwoTowerModel,
    out: Path,
    config: IndexConfig | None = None,
    force: bool = False,
    engine: EmbedEngine = "local",
    cache_dir: Path | None = None,
    vectors: Path | None = None,
) -> Path:
    """Embed every product of ``data`` and publish one plain index directory at ``out``.

    A build whose manifest already records this model, catalog and config is reused unless
    ``force``. Checkpoints go to ``.<out>.work`` next to ``out`` until the index is published.
    With ``vectors`` (a file ``aisle.indexing.vectors`` describes) nothing is embedded and
    the build always runs: the file's vectors are checked against ``model`` and the catalog.
    """
    config = config or IndexConfig()
    out = Path(out)
    check_replaceable(out, KIND)  # before the catalog is embedded
    check_engine(engine)
    started = time.perf_counter()
    with prepared_dir(Path(data)) as prep:
        data_manifest = catalog_manifest(prep)
        check_catalog(prep, data)
        catalog_fp = data_manifest["fingerprints"][PRODUCTS]
        if vectors is None and not force and index_is_current(
                out, model.fingerprint, catalog_fp, config, model.runtime):
            log.info("index at %s is up to date (same model and catalog); reusing it", out)
            return out
        work = out.parent / f".{out.name}.work"
        embedded, embedding = catalog_vectors(
            prep, model, config, vectors,
            lambda: embed_for_build(prep, model, work, cache_dir, engine, config))
        manifest = {
            **base_manifest(config, model, data_manifest, embedding),
            **job_manifest(embedded, engine, started, embedding),
            **kept_fusion(out if out.exists() else None, model),
            "version": new_version_id(),
        }
        with atomic_dir(out, KIND) as tmp:
            write_catalog(tmp, config, embedded, manifest)
    shutil.rmtree(work, ignore_errors=True)
    log.info("indexed %d products in %.1fs -> %s", len(embedded.rows),
             time.perf_counter() - started, out)
    return out


def build_version(
    data: Path,
    model: TwoTowerModel,
    root: Path,
    config: IndexConfig | None = None,
    force: bool = False,
    engine: EmbedEngine = "local",
    keep: int = DEFAULT_KEEP,
    vectors: Path | None = None,
) -> Path:
    """Build ``ROOT/versions/<id>/``, make it CURRENT, prune to ``keep`` versions.

    Embeddings are cached in ``ROOT/embed-cache`` and checkpoints kept in ``ROOT/work``, so a
    rebuild encodes only new or changed products and a killed build resumes. Returns the new
    version's directory (or the current one, when it is already up to date). A second build
    or update of the same root while this one runs is refused (``ROOT/.build.lock``). A
    ``CURRENT`` that names a missing version counts as no current version (logged). With
    ``vectors``, nothing is embedded and a new version is always built (see ``build_index``).
    A rollback or promote made while it runs stands: the new version is then written but not
    made current (``publish_version``).
    """
    check_keep(keep)  # before any work: a bad keep used to fail after publishing
    check_index_root(root)
    check_engine(engine)
    root = Path(root)
    fresh = not root.exists() and not root.is_symlink()
    with locked(root, BUILD_LOCK, "aisle index build", wait=False, create=True):
        try:
            return _build_version(data, model, root, config or IndexConfig(), force, engine,
                                  keep, vectors)
        except BaseException:
            if fresh:
                _remove_bare_root(root)
            raise


def _remove_bare_root(root: Path) -> None:
    """Remove the root a first build created when it holds nothing but the build's lock (the
    build was refused before it wrote anything: a mistyped --data, an empty catalog, a config
    that cannot index it), so a refused build leaves no --out behind. Called with the lock
    held: a build started meanwhile was refused (the lock is taken without waiting), and one
    started after this finds no root and makes its own. A root that holds checkpoints or
    cached embeddings stays, for the next run to resume."""
    try:
        if {p.name for p in root.iterdir()} <= {BUILD_LOCK}:
            (root / BUILD_LOCK).unlink(missing_ok=True)
            root.rmdir()
    except OSError:
        pass  # something appeared meanwhile: leave it


def _build_version(data: Path, model: TwoTowerModel, root: Path, config: IndexConfig,
                   force: bool, engine: EmbedEngine, keep: int, vectors: Path | None) -> Path:
    started = time.perf_counter()
    was_current = current_id(root)  # an operator's rollback or promote meanwhile stands
    with prepared_dir(Path(data)) as prep:
        data_manifest = catalog_manifest(prep)
        check_catalog(prep, data)
        catalog_fp = data_manifest["fingerprints"][PRODUCTS]
        try:
            current: Path | None = resolve_index_dir(root)
        except ArtifactError as e:
            log.warning("%s. Building a new version to replace it", e)
            current = None
        if (
            current is not None
            and vectors is None
            and not force
            and index_is_current(current, model.fingerprint, catalog_fp, config, model.runtime)
        ):
            log.info("current version %s is up to date (same model, backend, catalog and "
                     "config)", current.name)
            return current
        embedded, embedding = catalog_vectors(
            prep, model, config, vectors,
            lambda: embed_for_build(prep, model, root / WORK, root / EMBED_CACHE, engine,
                                    config))
        vid = new_version_id()
        manifest = {
            **base_manifest(config, model, data_manifest, embedding),
            **job_manifest(embedded, engine, started, embedding),
            **kept_fusion(current, model),
            "version": vid,
        }
        with atomic_dir(root / VERSIONS / vid, None) as tmp:
            write_catalog(tmp, config, embedded, manifest)
    publish_version(root, vid, keep, replacing=was_current)
    log.info("built version %s (%d products, %d encoded) in %.1fs", vid, len(embedded.rows),
             embedded.encoded, time.perf_counter() - started)
    return root / VERSIONS / vid


def publish_version(root: Path, vid: str, keep: int, replacing: str | None = None) -> bool:
    """Switch CURRENT to a freshly written version, drop the checkpoints, prune old versions.
    ``replacing``: the current version when the build or update started (None: there was
    none); if CURRENT moved off it meanwhile (a rollback or promote by an operator), the new
    version is kept but not made current: the operator's choice stands (and an update made it
    from the version they turned away from). Whether it was promoted."""
    promoted = promote(root, vid, replacing)
    if not promoted:
        log.warning("%s: the current version changed from %s to %s while this job ran "
                    "(a rollback or promote): version %s is written but not made current; "
                    "aisle index promote --out %s %s makes it current, or run the job "
                    "again", root, replacing, current_id(root), vid, root, vid)
    shutil.rmtree(root / WORK, ignore_errors=True)
    prune(root, keep, holds_build_lock=True)  # its callers hold ROOT/.build.lock
    return promoted
