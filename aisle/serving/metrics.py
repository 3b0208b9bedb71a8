"""Prometheus metrics of one app instance (its own registry: tests can build many apps)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aisle.serving.engine import Engine

# A scope key: the request's client disconnected before it was answered (counted as status
# 499, nginx's "client closed request", rather than the 500 of an app that sent nothing).
CLIENT_GONE = "aisle.client_gone"
CLIENT_CLOSED = 499

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.008, 0.013, 0.021, 0.034, 0.055, 0.1, 0.25, 1.0)


class _EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self.engine.stats
        yield CounterMetricFamily("aisle_cache_hits", "query embeddings served from the cache",
                                  value=stats.hits)
        yield CounterMetricFamily("aisle_cache_misses", "query embeddings encoded online",
                                  value=stats.misses)
        yield CounterMetricFamily("aisle_result_cache_hits",
                                  "queries answered from the finished results of their snapshot",
                                  value=stats.result_hits)
        yield CounterMetricFamily("aisle_reranked", "queries the cross-encoder re-ranked",
                                  value=stats.reranked)
        yield CounterMetricFamily("aisle_rerank_skipped",
                                  "queries past the re-ranking budget, answered in first-stage "
                                  "order", value=stats.rerank_skipped)
        yield CounterMetricFamily("aisle_redis_errors", "Redis calls that failed or timed out",
                                  value=self.engine.cache.errors)
        yield CounterMetricFamily("aisle_cache_bad_vectors",
                                  "cached values that were no vector of the model (encoded "
                                  "again and overwritten)", value=stats.bad_vectors)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("aisle_requests", "HTTP requests", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("aisle_request_seconds", "request latency", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.reload_failures = Counter("aisle_reload_failures", "refused index reloads",
                                       registry=self.registry)
        self.index_version = Info("aisle_index", "the index version being served",
                                  registry=self.registry)
        self._collector: _EngineCollector | None = None

    def bind(self, engine: Engine) -> None:
        """Report ``engine``'s counters (replacing the engine of an earlier start-up)."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
        self._collector = _EngineCollector(engine)
        self.registry.register(self._collector)
        self.index_version.info({"version": engine.snapshot.version})

    def unbind(self) -> None:
        """Stop reporting the engine's counters, and let go of it (the service's shutdown)."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)
