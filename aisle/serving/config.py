"""Service settings: a TOML file, ``key=value`` overrides, or the environment (``AISLE_<KEY>``)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from aisle.configs import from_dict
from aisle.errors import AisleError
from aisle.rerank.config import RerankBackend
from aisle.retrieval.config import Mode
from aisle.towers.config import Backend, QueryTower

log = logging.getLogger(__name__)

ENV_PREFIX = "AISLE_"
# Read as well, by the name the service has always read it by; AISLE_REDIS_URL wins.
ENV_FALLBACK = {"redis_url": "REDIS_URL"}


@dataclass(frozen=True)
class ServeConfig:
    # Keys that were renamed, with what replaced them: a config that sets one is refused with
    # this, not as an unknown key, and not ignored.
    RENAMED: ClassVar[Mapping[str, str]] = {
        "result_cache_size": "result_cache_rows bounds the result cache by result rows, not by "
        "entries; 10x the old value keeps its size at k = 10",
    }
    index: str = ""
    # Model directory; "" = the model the index manifest names.
    model: str = ""
    # How the query tower runs: torch, onnx-fp32, onnx-int8 (the model's `aisle export`) or
    # auto (int8, else fp32, else torch); None = the tower config the index was built with.
    backend: Backend | None = None
    # Which query tower runs: transformer, static (the model's `aisle static-query` export) or
    # auto (static where the model has one and runs on ONNX); None = the index's tower config.
    query_tower: QueryTower | None = None
    # Loopback unless told otherwise: the service has no auth on search.
    host: str = "127.0.0.1"
    port: int = 8000
    # Redis for query embeddings, e.g. redis://127.0.0.1:6379/0; "" = in-process LRU only.
    redis_url: str = ""
    # Short Redis timeouts: a slow cache must cost less than encoding the query (~5 ms).
    redis_timeout_s: float = 0.05
    # After a Redis error, skip Redis this long before trying again (no retry storms).
    redis_backoff_s: float = 1.0
    cache_ttl_s: int = 7 * 24 * 3600
    lru_size: int = 100_000
    # Bearer token for /admin/*; "" = admin endpoints are off.
    admin_token: str = ""
    max_query_chars: int = 512
    max_k: int = 1000
    # k of a request that gives none; capped at max_k (autocomplete: autocomplete_max_k).
    default_k: int = 10
    # /autocomplete answers on the event loop: its de-duplication walks candidates until k
    # survive, so k is bounded well below search's (a dropdown shows about 10).
    autocomplete_max_k: int = 50
    max_batch: int = 64
    max_body_bytes: int = 64 * 1024
    # None: the index's best mode, hybrid wherever it carries BM25 (every index aisle builds);
    # dense for a dense-only index.
    default_mode: Mode | None = None
    # Finished results kept per index snapshot, by (searched text, k, mode, partition): a head
    # query is answered by a lookup in any mode (serving/results.py). Bounded by result rows
    # (an entry holds k, about 100-200 bytes each), not entries, so that large k cannot
    # multiply it: 200,000 rows is 20,000 entries at the default k = 10, 200 at k = 1000,
    # about 20-40 MB. 0 = off.
    result_cache_rows: int = 200_000
    # Correct misspelt query words against the index's titles before the query tower embeds
    # them (aisle/retrieval/spelling.py); the cache keys the corrected text.
    query_spelling: bool = True
    # Micro-batching (serving/batching.py): queries that arrive while the encoder is busy go
    # together as its next batch. batch_wait_ms > 0 also holds each batch up to that long for
    # more queries; 0 sends it as soon as the encoder is free (no added latency at low load).
    batch_wait_ms: float = 0.0
    # Queries a batch takes from the queue (a batch request's count as many; the first is
    # taken whole). 0 (the default) = 2 on int8 ONNX and static query towers, 32 on torch and
    # fp32 ONNX transformers, for the model served (a reload may change it). An int8 tower
    # encodes one text a call, so a larger batch buys it nothing, and a batch answers its
    # queries only once its last is searched: at 32 the first of eight queued cold queries
    # waited for all eight (bench/serve.py, 2026-12-07: hybrid cold c=8 p99 2.3-5.3 ms lower
    # at 2 than at 32 in seven paired runs; docs/results.md). Answering each request of a
    # batch as soon as it was searched was tried and taken out: it lowered no tail, and most
    # likely cost CPU a request under load. One torch or fp32 call encodes many texts, which
    # a larger batch pays for.
    batch_max: int = 0
    # Batches encoded and searched at once, each on its own thread. With one, a batch's
    # searches (BM25, fusion, ANN) hold up the next batch's encoding and leave the other cores
    # idle; ONNX query towers run one thread a call, so lanes add up. 0 = one per core on ONNX
    # towers, one on torch (a torch call already uses every core).
    batch_lanes: int = 0
    # Requests that may wait for the encoder at once; past that a request gets 503 with
    # Retry-After at once instead of queueing behind minutes of work (a cached query never
    # queues). 512 is about 16 full batches of a torch encoder.
    batch_queue_max: int = 512
    # How often to look for a new index version on disk (0 = only on /admin/reload).
    watch_interval_s: float = 2.0
    # Autocomplete artifact directory (`aisle autocomplete build`); "" = /autocomplete is 404.
    autocomplete: str = ""
    # A cross-encoder directory (`aisle rerank train`) that re-ranks each search's first
    # products; "" = no re-ranking. rerank_depth: how many (-1: the depth it was tuned with).
    rerank: str = ""
    rerank_depth: int = -1
    # How the cross-encoder runs: auto (its int8 ONNX export, else torch), torch, onnx-*.
    rerank_backend: RerankBackend = "auto"
    # Threads an ONNX cross-encoder scores a query's pairs on (0: one per core). Queries take
    # turns on them; fewer leave cores to the first stage while a query is re-ranked.
    rerank_threads: int = 0
    # Re-ranking time a request has, counted from when it arrived (time queued for the
    # encoder, and for another query's re-ranking to finish, is spent): a query whose turn
    # comes later keeps its first-stage order (never an error; counted in
    # aisle_rerank_skipped), so overload degrades ranking, not latency. A batch's queries
    # share the earliest arrival's budget. A query's re-ranking already started runs to its
    # end (~93 ms for 50 candidates on int8 on two cores here, bench/rerank.py). inf: no
    # budget (every query is re-ranked, in turn).
    rerank_budget_ms: float = 50.0

    def __post_init__(self) -> None:
        # A bad number is refused at start-up, not met by every request (a negative LRU size
        # failed every search; a TTL of 0 failed every Redis write).
        for name, least in _LEAST.items():
            value = getattr(self, name)
            if not value >= least:  # also refuses nan
                raise AisleError(f"{name} must be >= {least}, got {value}")
            if value == math.inf:  # batch_wait_ms=inf waited for ever: every search hung
                raise AisleError(f"{name} must be finite, got {value}")
        if not 0 < self.redis_timeout_s < math.inf:
            raise AisleError(f"redis_timeout_s must be > 0 and finite, got "
                             f"{self.redis_timeout_s}")
        if self.port > 65535:  # the socket would take it modulo 65536: another port
            raise AisleError(f"port must be at most 65535, got {self.port}")
        if self.rerank_depth < -1:
            raise AisleError(f"rerank_depth must be >= 0, or -1 for the cross-encoder's own; "
                             f"got {self.rerank_depth}")
        if self.rerank_threads < 0:
            raise AisleError(f"rerank_threads must be >= 0 (0: one per core), got "
                             f"{self.rerank_threads}")
        if not self.rerank_budget_ms >= 0:
            raise AisleError(f"rerank_budget_ms must be >= 0, got {self.rerank_budget_ms}")


# The least value each number may take (0 where 0 means off, none or, for batch_max and
# batch_lanes, chosen for the query tower).
_LEAST: dict[str, float] = {
    "port": 0, "redis_backoff_s": 0, "cache_ttl_s": 1, "lru_size": 0, "max_query_chars": 1,
    "max_k": 1, "default_k": 1, "autocomplete_max_k": 1, "max_batch": 1, "max_body_bytes": 1,
    "result_cache_rows": 0, "batch_wait_ms": 0, "batch_max": 0, "batch_lanes": 0,
    "batch_queue_max": 1, "watch_interval_s": 0,
}


def env_overrides(environ: Mapping[str, str]) -> list[str]:
    """``key=value`` overrides (for ``load_config``) of each ServeConfig key ``environ`` sets
    as ``AISLE_<KEY>``, e.g. AISLE_PORT=8001 or AISLE_DEFAULT_MODE=dense (``none`` for None).
    Each value is checked against its field's type here, so that an error names the
    variable."""
    keys = {f.name for f in dataclasses.fields(ServeConfig)}
    overrides = []
    for key in sorted(keys):
        var = ENV_PREFIX + key.upper()
        if var not in environ and ENV_FALLBACK.get(key, "") in environ:
            var = ENV_FALLBACK[key]
        if var not in environ:
            continue
        value = environ[var].strip()  # as load_config strips an override's value
        try:
            from_dict(ServeConfig, {key: value})
        except AisleError as e:
            raise AisleError(f"environment variable {var}: {e}") from e
        overrides.append(f"{key}={value}")
    for key, why in ServeConfig.RENAMED.items():
        if ENV_PREFIX + key.upper() in environ:
            raise AisleError(f"environment variable {ENV_PREFIX + key.upper()} is gone: {why}")
    known = {ENV_PREFIX + key.upper() for key in keys}
    unknown = sorted(v for v in environ if v.startswith(ENV_PREFIX) and v not in known)
    if unknown:
        log.warning("ignoring %s: no such ServeConfig key", ", ".join(unknown))
    return overrides
