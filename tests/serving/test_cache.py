"""Query-embedding caches against real Redis, including Redis dying and coming back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from aisle.retrieval.query import PreparedQuery
from aisle.serving.app import create_app
from aisle.serving.cache import LRUCache, RedisCache, TieredCache, cache_key
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Ask, Engine, Lane
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import RedisServer


def test_keys() -> None:
    assert cache_key("fp1", "a") != cache_key("fp2", "a")  # the model is part of the key
    assert cache_key("fp1", "a") != cache_key("fp1", "A")  # the exact text, case included
    assert cache_key("fp1", "a").startswith("aisle:qemb:v3:fp1:")
    cache_key("fp1", "\ud800")  # a lone surrogate is a key, not an exception


def test_lru_evicts_least_recently_used() -> None:
    cache = LRUCache(2)
    v = np.ones(3, dtype=np.float32)
    cache.set_many([("a", v), ("b", v)])
    cache.get_many(["a"])
    cache.set_many([("c", v)])
    assert [x is not None for x in cache.get_many(["a", "b", "c"])] == [True, False, True]


def test_redis_round_trip_with_ttl(shared_redis: str) -> None:
    cache = RedisCache(shared_redis, ttl_s=60, timeout_s=0.5, backoff_s=1.0)
    key = cache_key("test-fp", "round trip")
    vec = np.arange(4, dtype=np.float32)
    cache.set_many([(key, vec)])
    (got,) = cache.get_many([key])
    assert got is not None and np.array_equal(got, vec)
    assert 0 < redis.Redis.from_url(shared_redis).ttl(key) <= 60
    assert cache.get_many([cache_key("test-fp", "never stored")]) == [None]


def test_redis_down_counts_errors_and_never_raises() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", ttl_s=60, timeout_s=0.05, backoff_s=0.0)
    assert cache.get_many(["k"]) == [None]
    cache.set_many([("k", np.ones(2, dtype=np.float32))])
    assert cache.errors == 2


def test_a_write_redis_refuses_pauses_writes_only_and_a_lost_redis_pauses_both(
    private_redis: RedisServer,
) -> None:
    """Redis out of memory under maxmemory with noeviction refuses writes but still serves
    reads; a refused write used to pause reads as well, for the whole back-off."""
    store = redis.Redis(port=private_redis.port)
    cache = RedisCache(private_redis.url, ttl_s=60, timeout_s=0.5, backoff_s=3600.0)
    stored, vec = cache_key("test-fp", "stored"), np.arange(4, dtype=np.float32)
    cache.set_many([(stored, vec)])
    store.config_set("maxmemory-policy", "noeviction")
    store.config_set("maxmemory", 1)  # every write refused: "OOM command not allowed ..."
    with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
        store.set("probe", b"x")
    cache.set_many([(cache_key("test-fp", "refused"), vec)])
    assert cache.errors == 1
    (got,) = cache.get_many([stored])  # reads go on
    assert got is not None and np.array_equal(got, vec)
    store.config_set("maxmemory", 0)  # room again, but writes wait out their back-off
    cache.set_many([(cache_key("test-fp", "paused"), vec)])
    assert store.get(cache_key("test-fp", "paused")) is None and cache.errors == 1
    private_redis.stop()  # unreachable: reads and writes both pause after one failure
    assert cache.get_many([stored]) == [None] and cache.errors == 2
    assert cache.get_many([stored]) == [None] and cache.errors == 2  # not tried again
    cache.set_many([(stored, vec)])
    assert cache.errors == 2
    unreachable = RedisCache(private_redis.url, ttl_s=60, timeout_s=0.5, backoff_s=3600.0)
    unreachable.set_many([(stored, vec)])  # a write that cannot reach Redis pauses reads too
    assert unreachable.get_many([stored]) == [None] and unreachable.errors == 1


def test_redis_stopped_and_restarted_during_a_stream(private_redis: RedisServer,
                                                     serve_config: ServeConfig,
                                                     engine: Engine) -> None:
    remote = RedisCache(private_redis.url, ttl_s=600, timeout_s=0.05, backoff_s=0.2)
    engine.cache = TieredCache(LRUCache(1), remote)  # a tiny LRU: Redis does the caching
    statuses: list[int] = []
    queries = [f"{w} {n}" for n in range(40) for w in ("drill", "paint")]
    with TestClient(create_app(serve_config, engine)) as client:

        def burst(part: list[str]) -> None:
            for q in part:
                statuses.append(client.get("/search", params={"q": q, "k": 3}).status_code)

        burst(queries[:20])
        assert remote.errors == 0
        private_redis.stop()
        burst(queries[20:50])
        assert remote.errors > 0  # counted, and answered by encoding online
        private_redis.start()
        import time

        time.sleep(0.3)  # past the back-off: the next request tries Redis again
        burst(queries[50:])
        text = client.get("/metrics").text
    assert statuses == [200] * len(queries)
    stored = redis.Redis(port=private_redis.port).dbsize()
    assert stored >= len(queries) - 50 - 1  # writes resumed after the restart
    assert f"aisle_redis_errors_total {float(remote.errors)}" in text


def test_a_value_in_redis_that_is_no_vector_is_encoded_again_and_overwritten(
    private_redis: RedisServer, serve_config: ServeConfig, engine: Engine
) -> None:
    """Redis is shared: a truncated value, or another model's vector under the key, used to
    fail every request for its query (a 500) until it expired."""
    remote = RedisCache(private_redis.url, ttl_s=600, timeout_s=0.5, backoff_s=0.2)
    store = redis.Redis(port=private_redis.port)
    dim = engine.snapshot.model.dim
    with TestClient(create_app(serve_config, engine)) as client:
        for n, bad in enumerate((b"abc", np.ones(10, np.float32).tobytes(),
                                 np.full(dim, np.nan, np.float32).tobytes())):
            engine.cache = TieredCache(LRUCache(100), remote)  # an empty local tier
            (key,) = engine._keys(engine.snapshot, prepared(engine, [f"drill {n}"]))
            store.set(key, bad)
            assert client.get("/search", params={"q": f"drill {n}", "k": 3}).status_code == 200
            stored = np.frombuffer(store.get(key), dtype=np.float32)  # type: ignore[arg-type]
            assert stored.shape == (dim,) and np.isfinite(stored).all()
        text = client.get("/metrics").text
    assert "aisle_cache_bad_vectors_total 3.0" in text and remote.errors == 0


def prepared(engine: Engine, texts: list[str]) -> list[PreparedQuery]:
    return engine.snapshot.preparer.prepare_all(texts)


def test_a_misspelt_query_shares_the_corrected_querys_cached_vector(engine: Engine) -> None:
    snapshot = engine.snapshot
    assert [q.text for q in prepared(engine, ["celing fan", "ceiling fan"])] == [
        "ceiling fan"] * 2
    first = engine.embed(snapshot, prepared(engine, ["ceiling fan"]))
    misses = engine.stats.misses
    again = engine.embed(snapshot, prepared(engine, ["celing fan"]))
    assert engine.stats.misses == misses  # a cache hit: the same text was embedded
    np.testing.assert_array_equal(first, again)
    found = engine.search(Ask(("Celing fan",), 5, "dense")).found[0]
    assert found.query.correction == "Ceiling fan"
    assert [h.product_id for h in found.hits] == [
        h.product_id for h in engine.search(Ask(("ceiling fan",), 5, "dense")).found[0].hits
    ]


def test_the_warm_lane_leaves_an_unseen_misspelling_to_the_encoder_thread(
    engine: Engine,
) -> None:
    snapshot = engine.snapshot
    assert snapshot.preparer.speller is not None
    engine.embed(snapshot, prepared(engine, ["garden hose"]))
    # "gardenn" was never looked up: answering it needs a speller search, not done on the loop.
    ask = Ask(("gardenn hose",), 5, "dense")
    assert engine.plan(ask).lane is Lane.ENCODER
    searched = engine.search(ask)  # the encoder thread's path
    warm = engine.plan(ask)
    assert warm.lane is Lane.LOOP and warm.answer == searched


def test_a_cold_hybrid_query_goes_straight_to_the_encoder_then_a_thread_then_the_loop(
    engine: Engine,
) -> None:
    """In-process cache only: a query whose vector no cache holds can only be answered by the
    encoder (no thread hop to look for it first); once its vector is cached, its BM25 side
    runs on a thread; once its results are cached, the loop answers it."""
    assert engine.snapshot.retriever.has_lexical and not engine.cache.has_remote
    ask = Ask(("cordless drill",), 5, "hybrid")
    engine.snapshot.preparer.prepare_all(list(ask.texts))  # the speller's answer is known
    assert engine.plan(ask).lane is Lane.ENCODER
    engine.embed(engine.snapshot, prepared(engine, list(ask.texts)))
    hits = engine.stats.hits
    assert engine.plan(ask).lane is Lane.THREAD
    assert engine.stats.hits == hits  # planning counts nothing; the thread's lookup does
    searched = engine.search(ask)
    assert engine.stats.hits == hits + 1
    warm = engine.plan(ask)
    assert warm.lane is Lane.LOOP and warm.answer == searched


def test_hybrid_gives_both_sides_the_one_corrected_text(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    lexical = engine.snapshot.index.lexical
    seen: list[str] = []
    search = lexical.search_docs  # what hybrid reads BM25 with (arrays, for its fusion)
    monkeypatch.setattr(lexical, "search_docs",
                        lambda texts, k, *more: seen.extend(texts) or search(texts, k, *more))
    engine.embed(engine.snapshot, prepared(engine, ["ceiling fan"]))
    misses = engine.stats.misses
    found = engine.search(Ask(("Celing fan",), 5, "hybrid")).found[0]
    assert seen == ["ceiling fan"]  # BM25 reads the text the query tower embedded
    assert engine.stats.misses == misses  # the dense side embedded "ceiling fan": cached
    assert (found.mode, found.query.correction) == ("hybrid", "Ceiling fan")


def test_stats_counted_from_many_threads_lose_nothing() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from aisle.serving.engine import CacheStats

    stats = CacheStats()

    def count(_: int) -> None:
        for _ in range(5000):
            stats.add(hits=1, misses=2)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(count, range(8)))
    assert (stats.hits, stats.misses) == (40_000, 80_000)


def test_a_service_shut_down_lets_go_of_redis_and_its_engine(
    private_redis: RedisServer, serve_config: ServeConfig
) -> None:
    config = replace(serve_config, redis_url=private_redis.url)
    probe = redis.Redis(port=private_redis.port)
    before = len(probe.client_list())
    app = create_app(config)
    with TestClient(app) as client:
        assert client.get("/search", params={"q": "drill"}).status_code == 200
        assert len(probe.client_list()) > before
    assert len(probe.client_list()) == before  # its connection pool is closed
    names = {m.name for m in app.state.metrics.registry.collect()}
    assert "aisle_cache_hits" not in names  # the collector, which held the engine, is gone


def test_a_cached_answer_says_as_many_re_ranked_as_the_search_did(
    serve_config: ServeConfig, base_model: TwoTowerModel
) -> None:
    """A filter or BM25 that finds fewer candidates than the re-ranking depth re-ranks fewer;
    the result cache's answer must say the same number, not the depth."""
    from aisle.retrieval.filters import parse_filters
    from tests.serving.conftest import by_length_engine

    engine = by_length_engine(serve_config, base_model)
    for ask in (Ask(("cordless drill",), 5, "hybrid",
                    filters=parse_filters(["brand=Ryobi"], "filter")),
                Ask(("cordless drill",), 5, "lexical")):
        searched = engine.search(ask).found[0]
        assert 0 < searched.reranked < 50  # fewer candidates than the depth
        cached = engine.plan(ask)
        assert cached.lane is Lane.LOOP and cached.answer is not None
        assert cached.answer.found[0].reranked == searched.reranked
