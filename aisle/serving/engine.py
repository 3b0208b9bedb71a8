"""The search engine behind the service: a swappable (model, index) snapshot plus the cache.

All methods here are synchronous and thread-safe; the HTTP layer runs them off the event loop.
A snapshot is immutable; a reload builds a new one and swaps one reference, so a request that
took the old snapshot finishes on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisle.artifacts import MANIFEST
from aisle.errors import AisleError
from aisle.retrieval.config import Mode
from aisle.retrieval.dense import DenseRetriever, index_model, query_speller
from aisle.retrieval.hybrid import HybridRetriever
from aisle.retrieval.layout import CURRENT, resolve_index_dir
from aisle.retrieval.querytext import case_blind, prepare
from aisle.retrieval.spelling import QuerySpeller
from aisle.retrieval.store import Hit, ProductIndex, UnknownPartitionError, load_index
from aisle.serving.cache import QueryCache, cache_key
from aisle.serving.config import ServeConfig
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)


class UnknownPartition(AisleError):
    """The request named a partition this index does not have."""


@dataclass(frozen=True)
class Snapshot:
    model: TwoTowerModel
    index: ProductIndex
    version: str
    # What dense queries go through before the query tower (None: embedded as typed).
    speller: QuerySpeller | None = None

    @functools.cached_property
    def titles(self) -> dict[str, str]:
        return self.index.title_of

    @functools.cached_property
    def fold_case(self) -> bool:
        """Whether queries are lower-cased before the tower (only when it ignores case)."""
        return case_blind(self.model)

    def partition(self, name: str) -> ProductIndex:
        """The index of partition ``name`` (loaded with the snapshot; from disk if not)."""
        try:
            return self.index.partition(name)
        except UnknownPartitionError as e:
            raise UnknownPartition(str(e)) from e

    def partition_loaded(self, name: str | None) -> bool:
        """True when searching partition ``name`` (None: the whole index) needs no disk read."""
        return name is None or self.index.partition_loaded(name)

    def spelled(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as the query tower embeds them, and the cache keys them: prepared
        (``querytext.prepare``), then spell-corrected."""
        texts = [prepare(t, self.fold_case) for t in texts]
        speller = self.speller
        return texts if speller is None else [speller.rewrite(t) for t in texts]

    def spelled_known(self, texts: Sequence[str]) -> list[str] | None:
        """``spelled`` without a speller search: None when some word needs one (on the event
        loop that is left to the encoder's thread)."""
        texts = [prepare(t, self.fold_case) for t in texts]
        if self.speller is None:
            return texts
        out = []
        for text in texts:
            fixed = self.speller.rewrite_known(text)
            if fixed is None:
                return None
            out.append(fixed)
        return out


def index_version(root: Path) -> str:
    """The version id (a versioned root's CURRENT), else a hash of the manifest's bytes."""
    text = (resolve_index_dir(Path(root)) / MANIFEST).read_bytes()
    version = json.loads(text).get("version")
    return str(version) if version else hashlib.sha256(text).hexdigest()[:12]


def load_snapshot(config: ServeConfig, current: Snapshot | None = None) -> Snapshot:
    index = load_index(Path(config.index), eager=True)  # pruning its version later is harmless
    if current is not None and current.model.fingerprint == index.model_fingerprint:
        model = current.model  # same weights: no need to load them again
    else:
        model = index_model(index, config.model or None, config.backend)
    index.check_model(model.fingerprint, model.ref)
    version = index.version or index_version(index.root)
    speller = query_speller(index, model) if config.query_spelling else None
    snapshot = Snapshot(model=model, index=index, version=version, speller=speller)
    _ = snapshot.fold_case  # probes the encoder: here, off the event loop, not on a request
    return snapshot


_NO_FAILURE = object()  # Engine._failed_stat before any reload has failed


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class Engine:
    def __init__(self, config: ServeConfig, cache: QueryCache,
                 snapshot: Snapshot | None = None) -> None:
        self.config = config
        self.cache = cache
        self.stats = CacheStats()
        self._reload_lock = threading.Lock()
        self._snapshot = snapshot or load_snapshot(config)
        _ = self._snapshot.fold_case  # probed now, not by the first request on the event loop
        self._stat = self._manifest_stat()
        # What was on disk when a reload last failed: the watcher leaves that publish alone
        # (it would fail again every interval) until something on disk changes again.
        self._failed_stat: object = _NO_FAILURE

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @staticmethod
    def _keys(snapshot: Snapshot, texts: Sequence[str]) -> list[str]:
        # The weights and how they run: int8 and fp32 vectors of one query differ a little,
        # and a service switched to another backend must not serve the other's.
        model = f"{snapshot.model.fingerprint}-{snapshot.model.backend}"
        return [cache_key(model, t) for t in texts]

    def cached(self, snapshot: Snapshot, texts: Sequence[str],
               local_only: bool = False) -> np.ndarray | None:
        """Query vectors ``(n, D)`` when every one is already cached, else None (nothing counted:
        the caller falls back to ``embed``, which counts). ``local_only``: look in the
        in-process tier only (no I/O), and give up (None) on a word the speller has not
        answered before rather than search for its correction here."""
        spelled = snapshot.spelled_known(texts) if local_only else snapshot.spelled(texts)
        if spelled is None:
            return None
        keys = self._keys(snapshot, spelled)
        found = self.cache.get_local(keys) if local_only else self.cache.get_many(keys)
        if any(v is None for v in found):
            return None
        self.stats.hits += len(found)
        return np.stack([v for v in found if v is not None]).astype(np.float32)

    def embed(self, snapshot: Snapshot, texts: Sequence[str]) -> np.ndarray:
        """Query vectors ``(n, D)``: from the cache where present, encoded (once each) otherwise.
        Both use the text as the encoder is given it (``Snapshot.spelled``): "celing fan"
        shares "ceiling fan"'s vector, and a key never stands for another text's vector."""
        texts = snapshot.spelled(texts)
        keys = self._keys(snapshot, texts)
        found = self.cache.get_many(keys)
        missed = [k for k, v in zip(keys, found, strict=True) if v is None]
        self.stats.hits += len(keys) - len(missed)
        self.stats.misses += len(missed)
        missing = sorted(set(missed))  # a query repeated in one batch is encoded once
        fresh: dict[str, np.ndarray] = {}
        if missing:
            first_text = {k: t for k, t in zip(keys, texts, strict=True)}
            vectors = snapshot.model.encode_query([first_text[k] for k in missing]).numpy()
            # Copies: a row view would keep the whole encoder batch alive as long as the
            # cache holds any one of its rows.
            fresh = {k: np.array(v, dtype=np.float32, copy=True)
                     for k, v in zip(missing, vectors, strict=True)}
            self.cache.set_many(list(fresh.items()))
        rows = [v if v is not None else fresh[k] for k, v in zip(keys, found, strict=True)]
        return np.stack(rows).astype(np.float32)

    def search(
        self, texts: Sequence[str], k: int, mode: Mode, partition: str | None = None
    ) -> tuple[list[list[Hit]], str]:
        snapshot = self._snapshot  # one snapshot for the whole request
        return self._search(snapshot, texts, k, mode, partition, None)

    def search_jobs(
        self, jobs: Sequence[tuple[Sequence[str], int]], mode: Mode,
        partition: str | None = None,
    ) -> tuple[list[list[list[Hit]]], str]:
        """Several requests' ``(texts, k)`` at once (the micro-batcher's): one encoder call
        for all their texts, then each searched at its own k, so a request's results never
        depend on what else was in its batch (HNSW's candidate list, IVF-PQ's re-rank depth
        and hybrid's fusion depth all grow with k)."""
        snapshot = self._snapshot
        texts = [t for job_texts, _ in jobs for t in job_texts]
        vectors = None if mode == "lexical" else self.embed(snapshot, texts)
        starts, start = [], 0
        for job_texts, _ in jobs:
            starts.append(start)
            start += len(job_texts)
        by_k: dict[int, list[int]] = {}  # the jobs of one k share one search call
        for i, (_, k) in enumerate(jobs):
            by_k.setdefault(k, []).append(i)
        out: list[list[list[Hit]]] = [[] for _ in jobs]
        for k, members in by_k.items():
            rows = [r for i in members for r in range(starts[i], starts[i] + len(jobs[i][0]))]
            hits, _ = self._search(snapshot, [texts[r] for r in rows], k, mode, partition,
                                   None if vectors is None else vectors[rows])
            at = 0
            for i in members:
                out[i] = hits[at : at + len(jobs[i][0])]
                at += len(jobs[i][0])
        return out, snapshot.version

    def search_if_cached(
        self, texts: Sequence[str], k: int, mode: Mode, partition: str | None = None,
        local_only: bool = False,
    ) -> tuple[list[list[Hit]], str] | None:
        """The whole search when it needs no encoder (lexical mode, or every query's vector
        cached), else None: the caller then queues it for the micro-batched encoder.
        ``local_only``: consult only the in-process cache tier, and give up (None) where a
        partition would first have to be read from disk."""
        snapshot = self._snapshot
        if local_only and not snapshot.partition_loaded(partition):
            return None
        vectors = None
        if mode != "lexical":
            vectors = self.cached(snapshot, texts, local_only)
            if vectors is None:
                return None
        return self._search(snapshot, texts, k, mode, partition, vectors)

    def _search(
        self,
        snapshot: Snapshot,
        texts: Sequence[str],
        k: int,
        mode: Mode,
        partition: str | None,
        vectors: np.ndarray | None,
    ) -> tuple[list[list[Hit]], str]:
        def embed(batch: Sequence[str]) -> np.ndarray:
            return vectors if vectors is not None else self.embed(snapshot, batch)

        index = snapshot.index if partition is None else snapshot.partition(partition)
        if mode == "dense":
            return index.search(embed(texts), k), snapshot.version
        titles = snapshot.titles if partition is None else index.title_of
        if mode == "lexical":
            ranked = index.lexical.search(texts, k)
        else:
            dense = DenseRetriever(snapshot.model, index, embed=embed)
            hybrid = HybridRetriever(dense, index.lexical, index.fusion())
            ranked = hybrid(texts, k)
        hits = [[Hit(pid, titles.get(pid, ""), s) for pid, s in row] for row in ranked]
        return hits, snapshot.version

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

    def reload(self) -> str:
        """Load the index on disk now and swap it in; on any error the old one keeps serving."""
        with self._reload_lock:
            stat = self._manifest_stat()
            try:
                snapshot = load_snapshot(self.config, self._snapshot)
            except BaseException:
                self._failed_stat = stat
                raise
            self._failed_stat = _NO_FAILURE
            self._snapshot = snapshot
            self._stat = stat
            log.info("serving index version %s", snapshot.version)
            return snapshot.version
