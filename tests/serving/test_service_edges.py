"""Inputs and cache states the service once answered with a 500, or counted wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from aisle.retrieval.layout import resolve_index_dir
from aisle.serving.app import create_app
from aisle.serving.cache import LRUCache, RedisCache, TieredCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import RedisServer, engine_over


@pytest.fixture
def dense_only(sample_index: Path, tmp_path: Path, base_model: TwoTowerModel
               ) -> tuple[ServeConfig, Engine]:
    """The sample index as an index from before BM25: no lexical record, no bm25/."""
    index = tmp_path / "dense-only"
    shutil.copytree(resolve_index_dir(sample_index), index)
    manifest = json.loads((index / "manifest.json").read_text())
    del manifest["lexical"]
    del manifest["files"]  # recorded since 2026-12-08, after BM25
    (index / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(index / "bm25")
    config = ServeConfig(index=str(index), watch_interval_s=0)
    engine = engine_over(config, base_model)
    assert not engine.snapshot.retriever.has_lexical
    return config, engine


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_a_bm25_mode_on_a_dense_only_index_is_a_422_naming_mode(
        dense_only: tuple[ServeConfig, Engine], mode: str) -> None:
    config, engine = dense_only
    with TestClient(create_app(config, engine), raise_server_exceptions=False) as client:
        for r in (client.get("/search", params={"q": "drill", "mode": mode}),
                  client.post("/search", json={"query": "drill", "mode": mode}),
                  client.post("/search/batch", json={"queries": ["drill"], "mode": mode})):
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["field"] == "mode" and "dense only" in r.json()["detail"]
        r = client.get("/search", params={"q": "drill"})  # the index's own mode: dense
        assert r.status_code == 200 and r.json()["mode"] == "dense"


def test_a_bm25_default_mode_over_a_dense_only_index_is_refused_as_it_loads(
        dense_only: tuple[ServeConfig, Engine]) -> None:
    # Served, every request that names no mode would be refused (422 on a mode it never sent):
    # the service does not start, and a reload keeps the index it serves.
    from dataclasses import replace

    from aisle.errors import AisleError
    from aisle.serving.snapshot import load_snapshot

    config, engine = dense_only
    assert load_snapshot(config).retriever.default_mode == "dense"  # served, dense
    with pytest.raises(AisleError, match="default_mode=hybrid needs BM25"):
        load_snapshot(replace(config, default_mode="hybrid"))
    served = engine.snapshot
    engine.holder.config = replace(config, default_mode="lexical")
    with pytest.raises(AisleError, match="default_mode=lexical needs BM25"):
        engine.reload()
    assert engine.snapshot is served


def _documented_modes(doc: dict[str, Any]) -> list[list[str]]:
    """The mode enums of GET /search, both request bodies and the answer, in that order."""
    def enum(schema: dict[str, Any]) -> list[str]:
        return schema["enum"] if "enum" in schema else next(
            s["enum"] for s in schema["anyOf"] if "enum" in s)

    get = next(p for p in doc["paths"]["/search"]["get"]["parameters"] if p["name"] == "mode")
    schemas = doc["components"]["schemas"]
    return [enum(get["schema"])] + [enum(schemas[m]["properties"]["mode"]) for m in (
        "SearchRequest", "BatchRequest", "SearchResponse")]


def test_the_document_offers_only_the_modes_the_index_searches_in(
        dense_only: tuple[ServeConfig, Engine], sample_index: Path) -> None:
    """A dense-only index refuses lexical and hybrid (422, above): its document does not
    offer them, and a reload to an index with BM25 offers them again."""
    from dataclasses import replace

    config, engine = dense_only
    with TestClient(create_app(config, engine)) as client:
        assert _documented_modes(client.get("/openapi.json").json()) == [["dense"]] * 4
        engine.holder.config = replace(config, index=str(sample_index))
        engine.reload()
        assert engine.snapshot.retriever.has_lexical
        assert _documented_modes(client.get("/openapi.json").json()) == [
            ["dense", "lexical", "hybrid"]] * 4
        assert client.get("/search", params={"q": "drill", "mode": "hybrid"}).status_code == 200
        engine.holder.config = config  # and back: the document follows
        engine.reload()
        assert _documented_modes(client.get("/openapi.json").json()) == [["dense"]] * 4


def test_a_k_of_thousands_of_digits_is_a_422_not_a_500(serve_config: ServeConfig,
                                                       engine: Engine) -> None:
    """int() refuses a number of over 4,300 digits with a ValueError, which the warm lane
    let through as a 500."""
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as client:
        for k in ("1" * 4301, "-" + "9" * 5000, "0" * 5000 + "5"):
            r = client.get("/search", params={"q": "drill", "k": k})
            if k.endswith("5") and set(k[:-1]) == {"0"}:
                assert r.status_code == 200, r.text  # leading zeros: k = 5
                assert len(r.json()["results"]) == 5
                continue
            assert r.status_code == 422, r.text
            assert r.json()["field"] == "k" and "digit" in r.json()["detail"]


def test_a_redis_client_that_decodes_responses_never_fails_a_request(
        private_redis: RedisServer, serve_config: ServeConfig, engine: Engine) -> None:
    """``REDIS_URL=...?decode_responses=true`` made redis-py decode replies as text: a
    cached value that happened to be valid UTF-8 failed every request for its query (a
    TypeError, a 500), and any other failed the read as though Redis were down, so the tier
    never served a vector. Replies stay bytes, and a foreign value of a vector's size (finite
    numbers, not of unit length) is encoded again, not searched with."""
    remote = RedisCache(private_redis.url + "?decode_responses=true", ttl_s=600,
                        timeout_s=0.5, backoff_s=0.2)
    engine.cache = TieredCache(LRUCache(100), remote)
    store = redis.Redis(port=private_redis.port)
    (key,) = engine._keys(engine.snapshot, engine.snapshot.preparer.prepare_all(["sander"]))
    store.set(key, b"abcd" * engine.snapshot.model.dim)  # valid UTF-8, the size of a vector
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as client:
        r = client.get("/search", params={"q": "sander", "k": 3})
        assert r.status_code == 200, r.text
    assert engine.stats.bad_vectors == 1
    stored = np.frombuffer(store.get(key), dtype=np.float32)  # type: ignore[arg-type]
    assert stored.shape == (engine.snapshot.model.dim,) and np.isfinite(stored).all()
    assert abs(float(np.linalg.norm(stored)) - 1) < 1e-3
    # Another process (a fresh in-process tier) finds it in Redis: a hit, no error.
    engine.cache = TieredCache(LRUCache(100), remote)
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as client:
        r = client.get("/search", params={"q": "sander", "k": 4})  # not a cached result
        assert r.status_code == 200, r.text
    assert (engine.stats.hits, remote.errors, engine.stats.bad_vectors) == (1, 0, 1)
    # Finite, the right size, twice unit length: not what a tower writes.
    store.set(key, (2 * stored).tobytes())
    engine.cache = TieredCache(LRUCache(100), remote)
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as client:
        r = client.get("/search", params={"q": "sander", "k": 5})
        assert r.status_code == 200, r.text
    assert engine.stats.bad_vectors == 2
    assert np.array_equal(np.frombuffer(store.get(key), dtype=np.float32),  # type: ignore[arg-type]
                          stored)


def test_a_query_repeated_in_a_batch_is_one_miss(serve_config: ServeConfig,
                                                  engine: Engine) -> None:
    """aisle_cache_misses counts query vectors encoded: a repeat shares the one encode."""
    with TestClient(create_app(serve_config, engine)) as client:
        r = client.post("/search/batch", json={"queries": ["drill", "drill", "sander"], "k": 3})
        assert r.status_code == 200, r.text
        text = client.get("/metrics").text
    assert (engine.stats.hits, engine.stats.misses) == (1, 2)
    assert "aisle_cache_misses_total 2.0" in text


def test_a_body_python_cannot_parse_says_what_to_fix(serve_config: ServeConfig,
                                                     engine: Engine) -> None:
    """json.loads refuses an integer of over 4,300 digits with a ValueError, which FastAPI
    answered as a 400 "There was an error parsing the body", saying nothing of what to fix."""
    with TestClient(create_app(serve_config, engine)) as client:
        for path, body in (("/search", b'{"query": "drill", "k": %s}'),
                           ("/search/batch", b'{"queries": ["drill"], "k": %s}')):
            r = client.post(path, content=body % (b"1" * 4301),
                            headers={"content-type": "application/json"})
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert "4,300 digits, which no field takes" in r.json()["detail"]
        r = client.post("/search", content=b'{"query": "dr\xffill"}',
                        headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not UTF-8" in r.json()["detail"], r.text


def test_json_nested_past_python_s_recursion_limit_is_a_422_not_a_500(
        serve_config: ServeConfig, engine: Engine) -> None:
    """A filter of lists ~1,000 deep parsed, then failed quoting itself in the error (a
    RecursionError, a 500); deeper, FastAPI's parser failed with a 400 saying nothing of
    what to fix. Where the limit falls depends on the stack, so depths around it are tried."""
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as client:
        for depth in (*range(900, 1000), 1500, 5000):
            nested = b"[" * depth + b"]" * depth
            for path, body in (("/search", b'{"query": "drill", "filters": {"brand": %s}}'),
                               ("/search/batch", b'{"queries": ["drill"], "filters": '
                                                 b'{"brand": %s}}')):
                r = client.post(path, content=body % nested,
                                headers={"content-type": "application/json"})
                assert r.status_code == 422, (depth, path, r.text)
                detail = r.json()["detail"]
                assert "nested too deeply" in detail or "too deeply to read" in detail or (
                    "is not a string, number or boolean" in detail), (depth, detail)


def test_a_query_with_no_hits_is_not_counted_as_re_ranked(
        serve_config: ServeConfig, base_model: TwoTowerModel) -> None:
    """aisle_reranked counts queries the cross-encoder re-ranked; one whose filter kept no
    product had nothing re-ranked."""
    from aisle.retrieval.filters import parse_filters
    from aisle.serving.engine import Ask
    from tests.serving.conftest import by_length_engine

    engine = by_length_engine(serve_config, base_model)
    nothing = parse_filters(["brand=No Such Brand"], "filter")
    found = engine.search(Ask(("cordless drill",), 5, "hybrid", filters=nothing)).found[0]
    assert found.hits == [] and found.reranked == 0
    assert (engine.stats.reranked, engine.stats.rerank_skipped) == (0, 0)
    engine.search(Ask(("cordless drill",), 5, "hybrid"))
    assert engine.stats.reranked == 1


def test_requests_whose_callers_left_never_fill_the_queue() -> None:
    """A queue full of abandoned requests (clients that timed out while the encoder was busy)
    refused live ones with 503 until the encoder got round to dropping them."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from aisle.serving.batching import MicroBatcher
    from aisle.serving.engine import Ask
    from tests.serving.test_batching import SlowEngine, top

    slow = SlowEngine(0.3)

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            busy = asyncio.create_task(batcher.search(Ask(("busy",), 1), "dense"))
            await asyncio.sleep(0.05)  # the encoder is busy with it
            gone = [asyncio.create_task(batcher.search(Ask((f"gone{i}",), 1), "dense"))
                    for i in range(3)]
            await asyncio.sleep(0.01)
            for task in gone:
                task.cancel()
            await asyncio.sleep(0.01)
            kept = batcher.search(Ask(("kept",), 1), "dense")
            return list(await asyncio.gather(busy, kept))
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(slow, pool, wait_s=0.0, max_items=32,  # type: ignore[arg-type]
                               max_queued=3)
        results = asyncio.run(scenario())
    assert [top(r) for r in results] == ["busy", "kept"]
    assert slow.batches == [["busy"], ["kept"]]
