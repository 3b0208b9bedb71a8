"""The service's search engine: which tier answers a request, and the search itself.

A request (``Ask``) is planned once (``Engine.plan``): its queries are prepared on the one
query path (``aisle.retrieval.query``: normalised, spell-corrected once for both sides), and
one decision says where it runs (``Lane``):

- ``LOOP``: everything it needs is in memory and cheap (its results, or a dense search of
  vectors in the in-process cache): answered on the event loop;
- ``THREAD``: no encoder needed, but I/O (Redis, a partition still on disk) or BM25 work;
- ``ENCODER``: some query's vector is in no cache: the micro-batcher (``serving/batching.py``).

The warm lane (``serving/fastlane.py``) plans and finishes every valid ``GET /search`` below
the web framework, whatever its tier; the routes take the same plan, so they never disagree.
Loading and swapping the index is ``serving/snapshot.py``'s; everything here is thread-safe.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aisle.retrieval.config import Mode
from aisle.retrieval.filters import Filter
from aisle.retrieval.query import PreparedQuery
from aisle.retrieval.retriever import Found, Retriever
from aisle.retrieval.store import UnknownPartitionError
from aisle.serving.cache import QueryCache, cache_key
from aisle.serving.config import ServeConfig
from aisle.serving.errors import InvalidRequest
from aisle.serving.snapshot import ReloadOutcome, Snapshot, SnapshotHolder

log = logging.getLogger(__name__)

UnknownPartition = UnknownPartitionError  # the request named a partition the index lacks


class Lane(enum.Enum):
    LOOP = "loop"
    THREAD = "thread"
    ENCODER = "encoder"


@dataclass(frozen=True)
class Ask:
    """A search request, validated: its texts, k, mode (None: the index's), partition,
    filters (checked against the index when planned) and the stored fields to return."""

    texts: tuple[str, ...]
    k: int
    mode: Mode | None = None
    partition: str | None = None
    filters: Filter | None = None
    fields: tuple[str, ...] = ()
    # When the request arrived (``time.monotonic()``): the re-ranking budget counts from it,
    # so time spent queued for the encoder is spent budget. None: when the search starts.
    received: float | None = field(default=None, compare=False)

    @property
    def filter_key(self) -> str:
        return self.filters.key if self.filters else ""


@dataclass(frozen=True)
class Answer:
    found: list[Found]
    version: str
    # Per query, per hit: the stored fields the ask named (None when it named none).
    values: list[list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class Plan:
    ask: Ask
    snapshot: Snapshot
    mode: Mode  # resolved: the ask's, else the index's default
    lane: Lane
    # Prepared without a speller search; None where some word's correction is not known yet.
    queries: list[PreparedQuery] | None = None
    answer: Answer | None = field(default=None)  # set when the lane is LOOP


def _tower_vector(v: np.ndarray, dim: int) -> bool:
    """Whether ``v`` is what a query tower writes: ``dim`` finite numbers of unit length (an
    all-zero vector too: a static tower's, for a text none of whose word pieces it knows)."""
    if v.shape != (dim,):
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        squared = float(np.dot(v, v))  # inf or nan when any number is, or their squares are
    return math.isfinite(squared) and (abs(squared - 1.0) < 2e-3 or squared == 0.0)


@dataclass
class CacheStats:
    """Counters that the event loop and every search thread add to (``add``: under a lock,
    as ``+=`` on a shared attribute can lose a count between threads); read without one."""

    hits: int = 0  # query vectors found cached
    misses: int = 0  # query vectors encoded
    result_hits: int = 0  # queries whose finished results were cached
    reranked: int = 0  # queries the cross-encoder re-ranked
    rerank_skipped: int = 0  # queries past the re-ranking budget: first-stage order served
    bad_vectors: int = 0  # cached values that were no vector of the model: encoded again
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class Engine:
    def __init__(self, config: ServeConfig, cache: QueryCache,
                 snapshot: Snapshot | None = None) -> None:
        self.cache = cache
        self.rerank_budget_s = config.rerank_budget_ms / 1000
        self.stats = CacheStats()
        self.holder = SnapshotHolder(config, snapshot)

    @property
    def snapshot(self) -> Snapshot:
        return self.holder.snapshot

    def reload(self, unless_served: bool = False) -> ReloadOutcome:
        return self.holder.reload(unless_served)

    def changed_on_disk(self) -> bool:
        return self.holder.changed_on_disk()

    # -- the one tier decision -------------------------------------------------------------

    def plan(self, ask: Ask) -> Plan:
        """Where ``ask`` runs, decided without I/O or a speller search (safe on the event
        loop); a LOOP plan carries its answer. Raises ``UnknownPartition``, and
        ``FilterError`` for a filter or field the index lacks."""
        snapshot = self.snapshot
        retriever = snapshot.retriever
        mode = ask.mode or retriever.default_mode
        if ask.partition is not None:
            if not retriever.partition_loaded(ask.partition):
                retriever.index.check_partition(ask.partition)  # known, but still on disk
                check_ask(retriever, ask, mode)  # a partition has its catalog's fields
                return Plan(ask, snapshot, mode, Lane.THREAD)
            retriever = retriever.partition(ask.partition)
        check_ask(retriever, ask, mode)
        if ask.fields and not retriever.index.ids_ready:  # the id lookup is built once, off it
            return Plan(ask, snapshot, mode, Lane.THREAD)
        prepared = [snapshot.preparer.prepare_known(t) for t in ask.texts]
        if any(q is None for q in prepared):
            return Plan(ask, snapshot, mode, Lane.THREAD if mode == "lexical" else Lane.ENCODER)
        queries = [q for q in prepared if q is not None]
        done = self._cached_results(snapshot, queries, ask, mode)
        if done is not None:
            return Plan(ask, snapshot, mode, Lane.LOOP, queries,
                        answer(snapshot, retriever, ask, done))
        if mode == "lexical":
            return Plan(ask, snapshot, mode, Lane.THREAD, queries)  # BM25: not on the loop
        vectors = self._cached_vectors(snapshot, queries, local_only=True)
        if vectors is None:
            # Some vector is in no in-process cache: Redis may have it (a thread reads it),
            # else only the encoder can answer, and a thread would just look again.
            lane = Lane.THREAD if self.cache.has_remote else Lane.ENCODER
            return Plan(ask, snapshot, mode, lane, queries)
        if mode != "dense" or ask.filters or retriever.rerank_depth(None):
            # BM25, a filter's selection or a cross-encoder: not on the loop (the thread
            # finds the vectors again, and counts them)
            return Plan(ask, snapshot, mode, Lane.THREAD, queries)
        self.stats.add(hits=len(queries))
        found = self._search(snapshot, retriever, queries, ask, mode, vectors)
        return Plan(ask, snapshot, mode, Lane.LOOP, queries,
                    answer(snapshot, retriever, ask, found))

    def run(self, plan: Plan) -> Answer | None:
        """A THREAD plan's answer, or None when the encoder is needed after all (a query's
        vector is in no cache). Reads Redis and disk: never on the event loop."""
        if plan.answer is not None:
            return plan.answer
        snapshot, ask = plan.snapshot, plan.ask
        retriever = self._retriever(snapshot, ask.partition)
        queries = plan.queries or snapshot.preparer.prepare_all(ask.texts)
        done = self._cached_results(snapshot, queries, ask, plan.mode)
        if done is not None:
            return answer(snapshot, retriever, ask, done)
        vectors = None
        if plan.mode != "lexical":
            vectors = self._cached_vectors(snapshot, queries, local_only=False)
            if vectors is None:
                return None  # ``embed`` counts the misses
            self.stats.add(hits=len(queries))
        return answer(snapshot, retriever, ask,
                      self._search(snapshot, retriever, queries, ask, plan.mode, vectors))

    # -- searching ---------------------------------------------------------------------------

    def search(self, ask: Ask) -> Answer:
        """The whole search, whatever it needs (the encoder included), on this thread."""
        plan = self.plan(ask)
        answer = self.run(plan)
        if answer is not None:
            return answer
        return self.search_jobs([ask], plan.mode)[0]

    def search_jobs(self, asks: Sequence[Ask], mode: Mode) -> list[Answer]:
        """Several requests of one mode, partition and filter at once (the micro-batcher's):
        their texts share one trip to the encoder, and each is searched at its own k, so a
        request's results never depend on what else was in its batch (HNSW's candidate list,
        IVF-PQ's re-rank depth and hybrid's fusion depth all grow with k). One snapshot
        answers them all."""
        snapshot = self.snapshot
        partition = asks[0].partition
        retriever = self._retriever(snapshot, partition)
        queries = snapshot.preparer.prepare_all([t for ask in asks for t in ask.texts])
        vectors = None if mode == "lexical" else self.embed(snapshot, queries)
        rows, at = [], 0
        for ask in asks:
            rows.append(range(at, at + len(ask.texts)))
            at += len(ask.texts)
        by_k: dict[int, list[int]] = {}  # the asks of one k share one search call
        for i, ask in enumerate(asks):
            by_k.setdefault(ask.k, []).append(i)
        found: list[list[Found]] = [[] for _ in asks]
        for members in by_k.values():
            picked = [r for i in members for r in rows[i]]
            received = [a.received for a in (asks[i] for i in members)
                        if a.received is not None]
            results = self._search(snapshot, retriever, [queries[r] for r in picked],
                                   asks[members[0]], mode,
                                   None if vectors is None else vectors[picked],
                                   min(received) if received else None)
            start = 0
            for i in members:
                found[i] = results[start : start + len(rows[i])]
                start += len(rows[i])
        return [answer(snapshot, retriever, ask, f) for ask, f in zip(asks, found, strict=True)]

    def embed(self, snapshot: Snapshot, queries: Sequence[PreparedQuery]) -> np.ndarray:
        """Query vectors ``(n, D)``: from the cache where present, encoded (once each)
        otherwise. Keyed by the text the encoder is given, so "celing fan" shares "ceiling
        fan"'s vector, and a key never stands for another text's vector."""
        keys = self._keys(snapshot, queries)
        found = self._usable(self.cache.get_many(keys), snapshot.model.dim)
        missed = [k for k, v in zip(keys, found, strict=True) if v is None]
        missing = sorted(set(missed))  # a query repeated in one batch is encoded once
        # misses: vectors encoded (a repeat of one shares its vector, as a cache hit would)
        self.stats.add(hits=len(keys) - len(missing), misses=len(missing))
        fresh: dict[str, np.ndarray] = {}
        if missing:
            text_of = {k: q.text for k, q in zip(keys, queries, strict=True)}
            vectors = snapshot.model.encode_query([text_of[k] for k in missing]).numpy()
            # Copies: a row view would keep the whole encoder batch alive as long as the
            # cache holds any one of its rows.
            fresh = {k: np.array(v, dtype=np.float32, copy=True)
                     for k, v in zip(missing, vectors, strict=True)}
            self.cache.set_many(list(fresh.items()))
        rows = [v if v is not None else fresh[k] for k, v in zip(keys, found, strict=True)]
        return np.stack(rows).astype(np.float32)

    @staticmethod
    def _keys(snapshot: Snapshot, queries: Sequence[PreparedQuery]) -> list[str]:
        return [cache_key(snapshot.vector_key, q.text) for q in queries]

    def _cached_vectors(self, snapshot: Snapshot, queries: Sequence[PreparedQuery],
                        local_only: bool) -> np.ndarray | None:
        """The queries' vectors when every one is cached, else None; nothing counted.
        ``local_only``: the in-process tier only (no I/O, safe on the event loop); else Redis
        too (never on the event loop)."""
        keys = self._keys(snapshot, queries)
        found = self.cache.get_local(keys) if local_only else self.cache.get_many(keys)
        found = self._usable(found, snapshot.model.dim, count=False)  # embed counts them
        if any(v is None for v in found):
            return None
        return np.stack([v for v in found if v is not None]).astype(np.float32)

    def _usable(self, found: list[np.ndarray | None], dim: int,
                count: bool = True) -> list[np.ndarray | None]:
        """``found`` with any value that is no vector a tower writes (``dim`` finite numbers
        of unit length, or zeros) made a miss (counted): Redis is shared, and a value another
        writer put there must neither fail every request for its query until it expires nor
        be searched with; the miss encodes the query and overwrites it."""
        bad = {i for i, v in enumerate(found) if v is not None and not _tower_vector(v, dim)}
        if not bad:
            return found
        if count:
            self.stats.add(bad_vectors=len(bad))
            log.warning("%d cached query vector(s) were not %d-d vectors of this model; "
                        "encoding them again", len(bad), dim)
        return [None if i in bad else v for i, v in enumerate(found)]

    @staticmethod
    def _retriever(snapshot: Snapshot, partition: str | None) -> Retriever:
        retriever = snapshot.retriever
        return retriever if partition is None else retriever.partition(partition)

    def _cached_results(self, snapshot: Snapshot, queries: Sequence[PreparedQuery], ask: Ask,
                        mode: Mode) -> list[Found] | None:
        found = []
        for q in queries:
            kept = snapshot.results.get((q.text, ask.k, mode, ask.partition, ask.filter_key))
            if kept is None:
                return None
            # As many re-ranked as when it was searched: fewer than the depth where a filter
            # or BM25 found fewer candidates.
            hits, reranked = kept
            found.append(Found(hits, mode, q, reranked))
        self.stats.add(result_hits=len(found))
        return found

    def _search(self, snapshot: Snapshot, retriever: Retriever,
                queries: Sequence[PreparedQuery], ask: Ask, mode: Mode,
                vectors: np.ndarray | None, received: float | None = None) -> list[Found]:
        """``received``: when the earliest of these queries' requests arrived (default:
        ``ask.received``, else now); the re-ranking budget counts from it."""
        depth = retriever.rerank_depth(None)
        if received is None:
            received = time.monotonic() if ask.received is None else ask.received
        deadline = received + self.rerank_budget_s if depth else None
        found = retriever.search(queries, ask.k, mode, vectors, ask.filters,
                                 rerank_deadline=deadline)
        for f in found:
            if depth and not f.reranked and f.hits:
                self.stats.add(rerank_skipped=1)
                continue  # a first-stage answer past the budget is not the query's answer
            if f.reranked:  # a query with no hits had nothing to re-rank
                self.stats.add(reranked=1)
            snapshot.results.put((f.query.text, ask.k, mode, ask.partition, ask.filter_key),
                                 f.hits, f.reranked)
        return found


def check_ask(retriever: Retriever, ask: Ask, mode: Mode) -> None:
    """Refuse (``FilterError``) filters or fields the index lacks, or values of the wrong
    type, without computing a selection (safe on the event loop; the search selects); and
    (``InvalidRequest``) a BM25 mode on an index without BM25, which the search would fail
    on (a 500)."""
    if mode != "dense" and not retriever.has_lexical:
        raise InvalidRequest(f"mode is {mode}, but this index has no BM25 index: it searches "
                             "dense only; send mode=dense or leave mode out", "mode")
    fields = retriever.index.fields
    fields.check_names(ask.fields, "fields")
    if ask.filters:
        fields.check(ask.filters, "filter" if ask.filters.conditions[0].source else "filters")


def answer(snapshot: Snapshot, retriever: Retriever, ask: Ask, found: list[Found]) -> Answer:
    """The answer, with the stored fields the ask named."""
    if not ask.fields:
        return Answer(found, snapshot.version)
    names = list(ask.fields)
    values = [retriever.index.field_values([h.product_id for h in f.hits], names)
              for f in found]
    return Answer(found, snapshot.version, values)
