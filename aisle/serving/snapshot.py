"""What the service serves, and how it is replaced: an immutable ``Snapshot`` of (model, index,
retriever) and the ``SnapshotHolder`` that loads it, notices a new publish on disk and swaps a
new snapshot in. Searching is ``aisle.serving.engine``'s; nothing here searches.

A reload builds a whole new snapshot off to the side and swaps one reference, so a request
that took the old snapshot finishes on it, and a failed load leaves the old one serving.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from aisle.artifacts import MANIFEST
from aisle.errors import AisleError
from aisle.retrieval.layout import CURRENT, resolve_index_dir
from aisle.retrieval.query import QueryPreparer
from aisle.retrieval.querytext import case_blind
from aisle.retrieval.rerank import RerankStage
from aisle.retrieval.retriever import (
    Retriever,
    index_model,
    index_query_runtime,
    titles_speller,
)
from aisle.retrieval.store import ProductIndex, load_index, recorded_runtime
from aisle.serving.config import ServeConfig
from aisle.serving.results import ResultCache
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """One loaded index and its model, with everything built once for them: the query
    preparer (speller, case probe), the retriever, and a cache of finished results."""

    retriever: Retriever
    version: str
    results: ResultCache = field(default_factory=lambda: ResultCache(0), compare=False)

    @property
    def model(self) -> TwoTowerModel:
        return self.retriever.model

    @property
    def index(self) -> ProductIndex:
        return self.retriever.index

    @property
    def preparer(self) -> QueryPreparer:
        return self.retriever.preparer

    @functools.cached_property
    def vector_key(self) -> str:
        """What a cached query vector's key names of the model: its weights and how they run
        (int8 and fp32 vectors of one query differ a little, as do two int8 exports', and a
        service switched to another must not serve the other's). Built once per snapshot."""
        return f"{self.model.fingerprint}-{self.model.query_runtime}"


def make_snapshot(model: TwoTowerModel, index: ProductIndex, version: str,
                  query_spelling: bool = True, result_cache_rows: int = 0,
                  reranker: RerankStage | None = None) -> Snapshot:
    """A snapshot over a loaded ``index`` and ``model``: the speller over its titles, the case
    probe (two encodes) and hybrid's product numbering, the index's and each loaded
    partition's (here, off the event loop; a partition loaded later builds its own on the
    request that loads it, in a thread); ``reranker``: a cross-encoder re-ranking stage."""
    speller = titles_speller(index.titles, model) if query_spelling else None
    retriever = Retriever(model, index, QueryPreparer(speller, case_blind(model)),
                          reranker=reranker)
    # Built here, not on a request. A partition still on disk builds its own when a request
    # loads it (in a thread: the engine's plan sends such a request there).
    parts = [retriever.partition(n) for n in index.partition_names if index.partition_loaded(n)]
    for r in (retriever, *parts):
        _ = r.fusion_ids
    return Snapshot(retriever, version, ResultCache(result_cache_rows))


def index_version(root: Path) -> str:
    """The version id (a versioned root's CURRENT), else a hash of the manifest's bytes."""
    text = (resolve_index_dir(Path(root)) / MANIFEST).read_bytes()
    version = json.loads(text).get("version")
    return str(version) if version else hashlib.sha256(text).hexdigest()[:12]


def _still_serves(model: TwoTowerModel, index: ProductIndex, config: ServeConfig) -> bool:
    """Whether the loaded ``model`` embeds queries for ``index`` as a fresh load would: the
    same weights on the same runtime (an index built after ``aisle export --int8`` wants
    that export's query tower, one embedded by torch a torch one)."""
    if model.fingerprint != index.model_fingerprint:
        return False
    try:
        wanted = index_query_runtime(index.manifest, config.model or None, config.backend,
                                     config.query_tower)
    except (OSError, AisleError):
        # The model directory cannot be read now (moved, being rewritten): keep the loaded
        # weights unless they are another int8 export than the one that embedded the index.
        return not model.int8_export or model.runtime == recorded_runtime(index.manifest)
    return model.query_runtime == wanted


class ReloadOutcome(NamedTuple):
    """What a reload did: the version serving after it, and whether it swapped one in (a
    watcher's reload finds the index on disk already serving when an admin reload loaded it
    while the watcher waited for the lock)."""

    version: str
    swapped: bool


def load_snapshot(config: ServeConfig, current: Snapshot | None = None) -> Snapshot:
    index = load_index(Path(config.index), eager=True)  # pruning its version later is harmless
    if config.default_mode not in (None, "dense") and not index.has_lexical:
        # Else every request that names no mode would be refused, naming a mode it never sent.
        raise AisleError(f"default_mode={config.default_mode} needs BM25, but {index.root} has "
                         "no BM25 index (it searches dense only); set default_mode=dense or "
                         "leave it unset, or rebuild the index with `aisle index`")
    if current is not None and _still_serves(current.model, index, config):
        model = current.model  # same weights, same runtime: no need to load them again
    else:
        model = index_model(index, config.model or None, config.backend, config.query_tower)
    index.check_model(model.fingerprint, model.ref)
    version = index.version or index_version(index.root)
    reranker = current.retriever.reranker if current is not None else None
    if reranker is None and config.rerank:
        from dataclasses import replace

        from aisle.rerank.model import load_reranker

        reranker = load_reranker(Path(config.rerank), config.rerank_backend,
                                 threads=config.rerank_threads)
        if config.rerank_depth >= 0:
            reranker = replace(reranker, config=replace(reranker.config,
                                                        depth=config.rerank_depth))
    return make_snapshot(model, index, version, config.query_spelling, config.result_cache_rows,
                         reranker)


_NO_FAILURE = object()  # SnapshotHolder._failed_stat before any reload has failed


class SnapshotHolder:
    """The served snapshot; ``reload`` replaces it with the index on disk."""

    def __init__(self, config: ServeConfig, snapshot: Snapshot | None = None) -> None:
        self.config = config
        self._reload_lock = threading.Lock()
        # Read before loading, as reload does: an index published while this one loads is
        # then a change the watcher takes.
        self._stat = self._manifest_stat()
        self.snapshot = snapshot or load_snapshot(config)
        # What was on disk when a reload last failed: the watcher leaves that publish alone
        # (it would fail again every interval) until something on disk changes again.
        self._failed_stat: object = _NO_FAILURE

    def _manifest_stat(self) -> tuple[tuple[int, int], ...] | None:
        """Identity of what is on disk: a versioned root's CURRENT pointer (a promote, rollback
        or new build) and the served manifest (a republished directory, tune-fusion)."""
        root = Path(self.config.index)
        try:
            paths = [root / CURRENT] if (root / CURRENT).is_file() else []
            paths.append(resolve_index_dir(root) / MANIFEST)
            stats = [p.stat() for p in paths]
        except (OSError, AisleError):
            return None
        return tuple((st.st_ino, st.st_mtime_ns) for st in stats)

    def changed_on_disk(self) -> bool:
        """Whether the index on disk differs from the one served, and from the last one that
        failed to load (retried only by an explicit reload, or once it changes again)."""
        stat = self._manifest_stat()
        return stat != self._stat and stat != self._failed_stat

    def _serves_disk(self) -> bool:
        """Whether the index on disk is the one serving: the same directory (a versioned
        root's CURRENT version) with the same manifest (its version id, what built it, its
        fusion weights: what a new build, a republish or tune-fusion changes)."""
        index = self.snapshot.index
        try:
            root = resolve_index_dir(Path(self.config.index))
            return root == index.root and json.loads((root / MANIFEST).read_bytes()) == (
                index.manifest)
        except (OSError, ValueError, AisleError):
            return False  # a load says what is wrong

    def reload(self, unless_served: bool = False) -> ReloadOutcome:
        """Load the index on disk now and swap it in; on any error the old one keeps serving.
        ``unless_served``: not when the index on disk is the one serving (the watcher's, which
        an admin reload may have beaten to this lock); its version then, not swapped."""
        with self._reload_lock:
            stat = self._manifest_stat()
            if unless_served and self._serves_disk():
                self._stat = stat  # no change for the watcher to take either
                return ReloadOutcome(self.snapshot.version, swapped=False)
            try:
                snapshot = load_snapshot(self.config, self.snapshot)
            except BaseException:
                self._failed_stat = stat
                raise
            self._failed_stat = _NO_FAILURE
            self.snapshot = snapshot
            self._stat = stat
            log.info("serving index version %s", snapshot.version)
            return ReloadOutcome(snapshot.version, swapped=True)
