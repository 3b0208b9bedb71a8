"""Loading a built index: manifest checks, the FAISS searcher and the row -> product map."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from aisle.artifacts import MANIFEST, read_manifest
from aisle.configs import from_dict, to_dict
from aisle.errors import AisleError, ArtifactError, ManifestMismatch
from aisle.retrieval.config import FusionConfig, IndexConfig, stored_index_config
from aisle.retrieval.filters import FieldTable, Filter
from aisle.retrieval.layout import INDEX_KIND, resolve_index_dir
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.searcher import Searcher, Selection, searcher_for, stored_ids

log = logging.getLogger(__name__)

KIND = INDEX_KIND
# How to mend a version that does not load. A build without --force takes a version whose
# manifest matches the catalog and model for current, however damaged its files.
REBUILD = ("rebuild it (aisle index build --force), or serve the version before it (aisle index "
           "rollback)")
INDEX_FILE = "index.faiss"
ROWS_FILE = "rows.parquet"
LEXICAL_DIR = "bm25"
PARTITIONS_DIR = "partitions"
# Bytes of filter selections an index keeps (LRU): shoppers filtering by the same few brands
# or departments select each once. A selection costs about 2.1 bytes a product (1.25 MB over
# a 54k catalog, 21 MB over 10M), so this keeps ~200 of homedepot's, ~12 of a 10M catalog's.
SELECTIONS_BYTES = 256 * 2**20


class UnknownPartitionError(AisleError):
    """A search named a partition the index does not have."""


@dataclass(frozen=True)
class Hit:
    product_id: str
    title: str
    score: float


@dataclass(frozen=True)
class Filtered:
    """A filter applied to one index: the FAISS ids it allows (dense side) and the catalog
    rows it allows (BM25's documents, in row order)."""

    ids: Selection
    rows: np.ndarray  # bool per row

    @property
    def count(self) -> int:
        return self.ids.count

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + (0 if self.rows is self.ids.allowed else int(self.rows.nbytes))


@dataclass(frozen=True)
class ProductIndex:
    """A loaded index: ``searcher`` over FAISS ids, ``product_ids``/``titles`` per id,
    ``fields`` (brand, category, and any typed catalog columns) per id, ``row_ids`` the FAISS
    id of each catalog row (the order BM25 holds them in).

    ``root`` is the directory actually loaded (for a versioned root: the CURRENT version).
    The BM25 index and the partitions are read from ``root`` on first use, unless loaded
    eagerly (``load_all``, or ``load_index(..., eager=True)``): a process that must keep
    serving this index after its version directory is pruned loads it eagerly.
    """

    root: Path
    manifest: dict[str, Any]
    searcher: Searcher
    product_ids: np.ndarray
    titles: np.ndarray
    fields: FieldTable = field(default_factory=lambda: FieldTable({}), repr=False)
    row_ids: np.ndarray | None = field(default=None, repr=False)  # None: row i has id i
    _partitions: dict[str, ProductIndex] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _selections: OrderedDict[str, Filtered] = field(default_factory=OrderedDict, repr=False,
                                                    compare=False)
    # Not _lock: that one is held while a partition loads from disk (seconds).
    _selections_lock: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                             compare=False)

    def select(self, flt: Filter, where: str | None = None) -> Filtered:
        """The products ``flt`` allows; raises ``FilterError`` (naming ``where``) for an
        unknown field or a value of the wrong type. Kept for the next search with it."""
        key = flt.key
        with self._selections_lock:
            found = self._selections.get(key)
            if found is not None:
                self._selections.move_to_end(key)
                return found
        allowed = self.fields.mask(flt, where)  # by FAISS id
        rows = allowed if self.row_ids is None else allowed[self.row_ids]
        found = Filtered(Selection(allowed), rows)
        with self._selections_lock:
            self._selections[key] = found
            kept = sum(f.nbytes for f in self._selections.values())
            while kept > SELECTIONS_BYTES and len(self._selections) > 1:
                kept -= self._selections.popitem(last=False)[1].nbytes
        return found

    def selected(self, flt: Filter) -> bool:
        """Whether ``select(flt)`` is kept already (it would compute nothing)."""
        return flt.key in self._selections

    @property
    def ids_ready(self) -> bool:
        """Whether ``id_of`` is built (``field_values`` would build nothing)."""
        return "id_of" in self.__dict__

    @functools.cached_property
    def id_of(self) -> dict[str, int]:
        """product id -> FAISS id."""
        return {str(p): i for i, p in enumerate(self.product_ids.tolist()) if p is not None}

    def field_values(self, product_ids: list[str], names: list[str] | None = None
                     ) -> list[dict[str, Any]]:
        """The stored fields ``names`` (default: all) of each product."""
        id_of = self.id_of
        return self.fields.values([id_of[p] for p in product_ids], names)

    @property
    def version(self) -> str | None:
        v = self.manifest.get("version")
        return str(v) if v else None

    @property
    def partition_names(self) -> list[str]:
        return sorted(self.manifest.get("partitions", {}))

    def partition(self, name: str) -> ProductIndex:
        """The index of one partition (a retailer or store), loaded on first use."""
        self.check_partition(name)
        layout = self.manifest["partitions"]
        with self._lock:
            if name not in self._partitions:
                self._check_not_deleted()
                part = load_index(self.root / layout[name], self.model_fingerprint)
                self._partitions[name] = part
            return self._partitions[name]

    def check_partition(self, name: str) -> None:
        """Raise ``UnknownPartitionError`` unless the index has partition ``name`` (no I/O)."""
        if name not in self.manifest.get("partitions", {}):
            known = ", ".join(self.partition_names[:20])
            raise UnknownPartitionError(
                f"unknown partition {name!r}: "
                + (f"this index has {known}" if known else "this index has no partitions; omit it")
            )

    def partition_loaded(self, name: str) -> bool:
        """Whether partition ``name`` is in memory (``partition`` would read nothing)."""
        return name in self._partitions

    def _check_not_deleted(self) -> None:
        if not (self.root / MANIFEST).is_file():
            raise ArtifactError(
                f"{self.root} was deleted after this index was loaded (a newer version "
                "replaced it and prune removed it): load the index again, or load it with "
                "load_index(..., eager=True) so nothing is read later"
            )

    def load_all(self) -> ProductIndex:
        """Read everything still on disk now: the BM25 index and every partition (each with
        its BM25 index). Afterwards nothing is read from ``root`` again, so searches of every
        mode keep working when the version directory is deleted (pruned) later. Returns
        ``self``; raises ``ArtifactError`` if any part is missing or corrupt. An index from
        before BM25 (none recorded, none on disk) has no BM25 to read: it searches dense."""
        if self.has_lexical:
            _ = self.lexical
        for name in self.partition_names:
            self.partition(name).load_all()
        return self

    @functools.cached_property
    def title_of(self) -> dict[str, str]:
        return {str(p): str(t) for p, t in zip(self.product_ids, self.titles, strict=True)
                if p is not None}

    @property
    def model_ref(self) -> str:
        return str(self.manifest["model"]["ref"])

    @property
    def model_fingerprint(self) -> str:
        return str(self.manifest["model"]["fingerprint"])

    def check_model(self, fingerprint: str, ref: str = "") -> None:
        if fingerprint != self.model_fingerprint:
            raise ManifestMismatch(
                f"index {self.root} was built with model {self.model_ref} (fingerprint "
                f"{self.model_fingerprint}); the model given {ref or ''} has fingerprint "
                f"{fingerprint}. Query vectors from another model are meaningless against it: "
                "rebuild the index with this model (aisle index --model ...) or use its model"
            )

    def check_runtime(self, runtime: str) -> None:
        """Warn when the query tower is another int8 export of the weights that embedded the
        index (``aisle export --int8`` run again since): its vectors are close to, not the same
        as, the index's, so results drift a little until the index is rebuilt. A partition
        records what its whole index records, and is searched through it: only the whole
        index warns, once for all its partitions."""
        if "partition" in self.manifest:
            return
        built = recorded_runtime(self.manifest) or ""
        int8 = "onnx-int8."  # a recorded int8 export; indexes from before record none
        if built != runtime and built.startswith(int8) and runtime.startswith(int8):
            log.warning("index %s was embedded on %s, its queries are embedded on %s: another "
                        "int8 export of the same weights; rebuild it to match (aisle index "
                        "build --force)", self.root, built, runtime)

    @property
    def has_lexical(self) -> bool:
        """Whether the index carries BM25 (every index ``aisle index`` builds does, and its
        manifest says so). A recorded BM25 index that is missing on disk is then a clear
        error as it loads, and a pruned directory one here: searches never drop to dense
        without a word."""
        if "lexical" in self.__dict__ or "lexical" in self.manifest:
            return True
        self._check_not_deleted()
        return (self.root / LEXICAL_DIR).is_dir()  # indexes from before the record

    @functools.cached_property
    def lexical(self) -> BM25Index:
        """The BM25 index over the same product text, loaded on first use."""
        path = self.root / LEXICAL_DIR
        # An index from before analyzer.json records no bm25_analyzer in its manifest either
        # (both came in one release): only then may bm25/ lack analyzer.json.
        legacy = "bm25_analyzer" not in self.manifest.get("index_config", {})
        self._check_not_deleted()
        # EOFError: an empty .npy; AttributeError: a JSON file of the wrong shape (a list
        # where bm25s reads a map)
        try:
            lexical = BM25Index.load(path, legacy=legacy)
        except (OSError, ValueError, KeyError, TypeError, EOFError, AttributeError) as e:
            raise ArtifactError(f"{path} is missing or corrupt ({e}); rebuild the index") from e
        if len(lexical) != self.manifest["count"]:
            raise ArtifactError(
                f"{path} holds {len(lexical)} products, the index {self.manifest['count']}; "
                "rebuild the index"
            )
        return lexical

    def fusion(self) -> FusionConfig:
        """The index's default fusion (set by `aisle tune-fusion`)."""
        return stored_fusion(self.manifest.get("fusion", {}))

    @functools.cached_property
    def row_pids(self) -> tuple[str | None, ...]:
        """``product_ids`` (one per FAISS id) as a tuple of str (None: a row no product holds):
        an item is read far faster than a numpy object array's, and a search reads k."""
        return tuple(None if p is None else str(p) for p in self.product_ids.tolist())

    @functools.cached_property
    def _row_titles(self) -> tuple[str, ...]:
        """``titles`` as a tuple of str, read as ``row_pids`` is."""
        return tuple(str(t) for t in self.titles.tolist())

    @functools.cached_property
    def live_rows(self) -> np.ndarray:
        """Per FAISS id, whether a product holds it (an update frees the rows it replaces)."""
        return np.array([p is not None for p in self.row_pids], dtype=bool)

    def search(self, vectors: np.ndarray, k: int, where: Filtered | None = None
               ) -> list[list[Hit]]:
        """The top ``k`` products of each query vector (``where``: of those it allows)."""
        ids, titles = self.row_pids, self._row_titles
        return [[Hit(p, titles[r], s) for s, r in zip(srow, rrow, strict=True)
                 if r >= 0 and (p := ids[r]) is not None]
                for srow, rrow in self._found_lists(vectors, k, where)]

    def ranked(self, vectors: np.ndarray, k: int, where: Filtered | None = None
               ) -> list[list[tuple[str, float]]]:
        """``search``'s top ``k`` as (product_id, score) pairs: what fusion reads (no titles
        looked up for the ~200 candidates a side that hybrid fuses into 10)."""
        ids = self.row_pids
        return [[(p, s) for s, r in zip(srow, rrow, strict=True)
                 if r >= 0 and (p := ids[r]) is not None]
                for srow, rrow in self._found_lists(vectors, k, where)]

    def ranked_rows(self, vectors: np.ndarray, k: int, where: Filtered | None = None
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``ranked`` as arrays: per query, its rows (FAISS ids of live products, ``id_of``'s
        numbers) and their scores (float64, as ``ranked`` gives them), best first."""
        scores, rows = self._found(vectors, k, where)
        rows, scores = np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        keep = rows >= 0
        keep[keep] = self.live_rows[rows[keep]]
        if keep.all():  # the usual case: one view per query
            return list(zip(rows, scores, strict=True))
        return [(r[m], s[m]) for r, s, m in zip(rows, scores, keep, strict=True)]

    def _found(self, vectors: np.ndarray, k: int, where: Filtered | None
               ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's answer: (scores, rows), a row per query (row -1: no product)."""
        return self.searcher.search(vectors, min(k, self.searcher.count),
                                    selection=None if where is None else where.ids)

    def _found_lists(self, vectors: np.ndarray, k: int, where: Filtered | None
                     ) -> zip[tuple[list[float], list[int]]]:
        """``_found`` per query as lists: read in one comprehension each by ``search`` and
        ``ranked``, a hybrid search's hot loop."""
        scores, rows = self._found(vectors, k, where)
        return zip(scores.tolist(), rows.tolist(), strict=True)


def stored_fusion(raw: dict[str, Any]) -> FusionConfig:
    """An index manifest's fusion. Manifests before 2026-12-04 wrote one ``depth`` for both
    sides: both keep it."""
    raw = dict(raw)
    if "depth" in raw:
        depth = raw.pop("depth")
        raw.setdefault("dense_depth", depth)
        raw.setdefault("lexical_depth", depth)
    return from_dict(FusionConfig, raw)


def file_sizes(directory: Path) -> dict[str, int]:
    """The size in bytes of each file a search of index directory ``directory`` reads (the
    FAISS index, the row map and the BM25 files; a partition records its own), by path
    relative to it: what its manifest records, so that a file truncated or replaced after
    the build is caught as the index loads, not served."""
    directory = Path(directory)
    files = [directory / INDEX_FILE, directory / ROWS_FILE]
    if (directory / LEXICAL_DIR).is_dir():
        files += sorted(p for p in (directory / LEXICAL_DIR).rglob("*") if p.is_file())
    return {p.relative_to(directory).as_posix(): p.stat().st_size for p in files}


def changed_file(directory: Path, manifest: dict[str, Any]) -> str | None:
    """What differs between the files of ``directory`` and the sizes its manifest records
    (``file_sizes``), or None: a missing file, or one of another size. A manifest from
    before 2026-12-08 records none, and nothing is checked."""
    for rel, size in manifest.get("files", {}).items():
        try:
            actual = (Path(directory) / rel).stat().st_size
        except OSError:
            return f"{rel} is missing"
        if actual != size:
            return (f"{rel} is {actual} bytes, its manifest records {size} (truncated or "
                    "replaced after the build)")
    return None


def recorded_runtime(manifest: dict[str, Any]) -> str | None:
    """What embedded an index's vectors (``TwoTowerModel.runtime``), as its manifest says; an
    index from before runtimes were recorded gives its backend."""
    model = manifest.get("model", {})
    return model.get("runtime") or model.get("backend")


def index_is_current(
    out: Path,
    model_fingerprint: str,
    products_fingerprint: str,
    config: IndexConfig | None = None,
    runtime: str | None = None,
) -> bool:
    """Whether ``out`` (a plain index directory that stores fields) was built from this model,
    catalog, config, and (when given) with this ``runtime`` (``TwoTowerModel.runtime``: torch
    and int8 vectors differ, as do two int8 exports'; an index that records neither its runtime
    nor its backend is not current for any, and one from before runtimes were recorded is
    current for its backend unless that was int8)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(manifest, dict) or not isinstance(manifest.get("model"), dict):
        return False
    data = manifest.get("data")
    return bool(
        manifest.get("kind") == KIND
        and manifest["model"].get("fingerprint") == model_fingerprint
        and (runtime is None or recorded_runtime(manifest) == runtime)
        and isinstance(data, dict)
        and data.get("products_fingerprint") == products_fingerprint
        # An index from before fields were stored is rebuilt once, to store them.
        and isinstance(manifest.get("fields"), dict)
        and (config is None or manifest.get("index_config") == to_dict(config))
        and (Path(out) / INDEX_FILE).is_file()
        and (Path(out) / LEXICAL_DIR).is_dir()
        and _files_intact(Path(out), manifest)
    )


def _files_intact(directory: Path, manifest: dict[str, Any]) -> bool:
    """Whether ``directory``'s files have the sizes its manifest records (logged if not)."""
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        return False
    changed = changed_file(directory, {"files": files})
    if changed:
        log.warning("%s is not reused: %s", directory, changed)
    return changed is None


def load_index(
    root: Path, model_fingerprint: str | None = None, eager: bool = False
) -> ProductIndex:
    """Load and verify an index: a versioned root (its CURRENT version) or an index directory.

    Refuses an index built by a different model than ``model_fingerprint``. ``eager``: read
    the BM25 index and every partition now too (``ProductIndex.load_all``), so the loaded
    index never reads its directory again; otherwise they are read on first use.
    """
    root = resolve_index_dir(Path(root))
    manifest = _read_index_manifest(root)
    changed = changed_file(root, manifest)
    if changed:
        raise ArtifactError(f"{root}: {changed}; {REBUILD}")
    try:
        index = faiss.read_index(str(root / INDEX_FILE))
    except RuntimeError as e:
        raise ArtifactError(f"{root / INDEX_FILE} is corrupt or missing ({e}); {REBUILD}") from e
    try:
        rows = pd.read_parquet(root / ROWS_FILE)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{root / ROWS_FILE} is corrupt or missing ({e}); {REBUILD}") from e
    missing = [c for c in ("product_id", "title") if c not in rows.columns]
    if missing:
        raise ArtifactError(f"{root / ROWS_FILE} has no {', '.join(missing)} column; {REBUILD}")
    if not (index.ntotal == len(rows) == manifest["count"]) or index.d != manifest["dim"]:
        raise ArtifactError(
            f"{root} is inconsistent: faiss holds {index.ntotal} x {index.d}, the row map "
            f"{len(rows)}, the manifest {manifest['count']} x {manifest['dim']}; {REBUILD}"
        )
    product_ids, titles = _by_label(rows, root)
    row_ids = _row_ids(rows)
    _check_ids(index, row_ids, root)
    fields = _fields(rows, row_ids, manifest, root)
    try:
        config = stored_index_config(manifest.get("index_config", {}))
        stored_fusion(manifest.get("fusion", {}))
    except AisleError as e:
        raise ArtifactError(f"{root / MANIFEST}: {e}; rebuild the index") from e
    loaded = ProductIndex(
        root=root,
        manifest=manifest,
        searcher=searcher_for(index, config),
        product_ids=product_ids,
        titles=titles,
        fields=fields,
        row_ids=row_ids,
    )
    if model_fingerprint is not None:
        loaded.check_model(model_fingerprint)
    if eager:
        loaded.load_all()
    log.info("loaded index %s: %d products, model %s", root, index.ntotal, loaded.model_ref)
    return loaded


def read_index_manifest(path: Path) -> dict[str, Any]:
    """The checked manifest of the index at ``path`` (a versioned root: its CURRENT version),
    without loading the index."""
    return _read_index_manifest(resolve_index_dir(Path(path)))


def _read_index_manifest(root: Path) -> dict[str, Any]:
    """The manifest of index directory ``root``, with the keys loading relies on checked."""
    path = root / MANIFEST
    manifest = read_manifest(root, KIND)

    def bad(what: str) -> ArtifactError:
        return ArtifactError(f"{path} is incomplete or edited: {what}; rebuild the index")

    for key in ("count", "dim"):
        value = manifest.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"{key!r} must be a non-negative integer, got {value!r}")
    model = manifest.get("model")
    if not isinstance(model, dict):
        raise bad(f"'model' must be an object, got {model!r}")
    for key in ("ref", "fingerprint"):
        if not isinstance(model.get(key), str) or not model[key]:
            raise bad(f"'model.{key}' must be a non-empty string, got {model.get(key)!r}")
    for key in ("index_config", "fusion", "partitions", "data", "files"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise bad(f"{key!r} must be an object, got {manifest[key]!r}")
    for rel, size in manifest.get("files", {}).items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad(f"file {rel!r} has size {size!r}, not a non-negative integer")
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise bad(f"file {rel!r} is not a path inside the index directory")
    for name, rel in manifest.get("partitions", {}).items():
        parts = Path(rel).parts if isinstance(rel, str) else ()
        if len(parts) != 2 or parts[0] != PARTITIONS_DIR or parts[1] in (".", ".."):
            raise bad(f"partition {name!r} points at {rel!r}, not a directory in {PARTITIONS_DIR}/")
    return manifest


def _row_ids(rows: pd.DataFrame) -> np.ndarray | None:
    """The FAISS id of each row, None where row i has id i."""
    if "label" not in rows.columns:
        return None
    labels = rows["label"].to_numpy(dtype=np.int64)
    return None if np.array_equal(labels, np.arange(len(rows))) else labels


def _check_ids(index: faiss.Index, labels: np.ndarray | None, root: Path) -> None:
    """Refuse a row map whose labels (None: its row numbers) are not the FAISS ids ``index``
    holds, whatever the kind (a relabelled row of an HNSW index too). A FAISS id that no row
    names would be a product missing from every result without a word (or, past the last
    label, a failed search), and a row whose id FAISS lacks a product never found. The
    counts agree and the labels are unique and non-negative (both checked before), so the
    two sets are equal where every FAISS id is one of the labels and no FAISS id repeats.
    Nothing to read for flat and HNSW without an id map (their ids are their row numbers)
    when the labels are the row numbers too: the default index."""
    ids = stored_ids(index)
    if ids is None and labels is None:
        return
    count = int(index.ntotal)
    if ids is None:
        ids = np.arange(count, dtype=np.int64)
    expected = np.arange(count, dtype=np.int64) if labels is None else labels
    if _same_ids(ids, expected):
        return
    extra, lost = np.setdiff1d(ids, expected), np.setdiff1d(expected, ids)
    held = np.sort(ids)
    repeated = np.unique(held[1:][held[1:] == held[:-1]])
    twice = (f", {len(repeated)} FAISS id(s) held more than once (first "
             f"{repeated[:3].tolist()})" if len(repeated) else "")
    raise ArtifactError(
        f"{root / ROWS_FILE} does not match {root / INDEX_FILE}: {len(extra)} FAISS id(s) that "
        f"no row names (first {extra[:3].tolist()}){twice}, {len(lost)} row label(s) that "
        f"FAISS does not hold (first {lost[:3].tolist()}); rebuild the index")


def _same_ids(ids: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``ids`` (as many as ``labels``) are ``labels`` (unique, non-negative) in some
    order: in time and memory linear in the largest label, which the row map's lookup by id
    already allocates (16 bytes a slot against these 2)."""
    if not len(ids):
        return True
    if int(ids.min()) < 0 or int(ids.max()) > int(labels.max()):
        return False
    held = np.zeros(int(labels.max()) + 1, dtype=bool)
    held[labels] = True
    if not held[ids].all():
        return False
    seen = np.zeros_like(held)
    seen[ids] = True
    return int(np.count_nonzero(seen)) == len(ids)


def _fields(rows: pd.DataFrame, ids: np.ndarray | None, manifest: dict[str, Any],
            root: Path) -> FieldTable:
    """The stored fields by FAISS id (an id no row has: every field missing), the rows' ids
    being ``ids`` (``_row_ids``). An index built before fields were stored has none."""
    names = manifest.get("fields", {})
    if not isinstance(names, dict):
        raise ArtifactError(f"{root / MANIFEST}: 'fields' must be an object; rebuild the index")
    missing = [n for n in names if n not in rows.columns]
    if missing:
        raise ArtifactError(f"{root / ROWS_FILE} lacks the field(s) {missing} its manifest "
                            "names; rebuild the index")
    columns: dict[str, pd.Series] = {}
    for name in names:
        column: pd.Series = rows[str(name)]
        if ids is not None:
            column = pd.Series(column.to_numpy(), index=ids).reindex(
                np.arange(int(ids.max()) + 1 if len(ids) else 0))
        columns[name] = column.reset_index(drop=True)
    return FieldTable(columns)


def _by_label(rows: pd.DataFrame, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """product ids and titles indexed by FAISS id. Ids are row positions unless the row map
    carries other labels (an IVF index updated in place keeps its ids; gaps map to None)."""
    ids = rows["product_id"].to_numpy(dtype=object)
    titles = rows["title"].to_numpy(dtype=object)
    if "label" not in rows.columns:
        return ids, titles
    try:
        labels = rows["label"].to_numpy(dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{root / ROWS_FILE} has non-integer labels ({e}); {REBUILD}") from e
    if np.array_equal(labels, np.arange(len(rows))):
        return ids, titles
    if len(labels) and (labels.min() < 0 or len(np.unique(labels)) != len(labels)):
        raise ArtifactError(f"{root / ROWS_FILE} has negative or repeated labels; {REBUILD}")
    size = int(labels.max()) + 1 if len(labels) else 0
    by_id, by_title = np.full(size, None, dtype=object), np.full(size, None, dtype=object)
    by_id[labels], by_title[labels] = ids, titles
    return by_id, by_title
