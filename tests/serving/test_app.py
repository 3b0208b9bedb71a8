"""The HTTP API through FastAPI's TestClient, with a real model and a real FAISS index."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from aisle.serving.app import create_app
from aisle.serving.cache import LRUCache, RedisCache, TieredCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine


@pytest.fixture
def client(serve_config: ServeConfig, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(serve_config, engine)) as c:
        yield c


def test_get_and_post_search(client: TestClient) -> None:
    r = client.get("/search", params={"q": "cordless drill", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    # hybrid by default: the index carries BM25
    assert len(body["results"]) == 5 and body["mode"] == "hybrid"
    assert all("drill" in hit["title"] for hit in body["results"])
    assert set(body) == {"results", "index_version", "mode", "corrected_query", "reranked",
                         "took_ms"}
    assert body["corrected_query"] is None
    assert body["reranked"] == 0  # no cross-encoder
    assert set(body["results"][0]) == {"product_id", "title", "score"}
    r2 = client.post("/search", json={"query": "Cordless  DRILL", "k": 5})
    assert [h["product_id"] for h in r2.json()["results"]] == [
        h["product_id"] for h in body["results"]
    ]


def test_batch_and_modes(client: TestClient) -> None:
    r = client.post("/search/batch", json={"queries": ["ladder", "garden hose"], "k": 3})
    assert r.status_code == 200, r.text
    responses = r.json()["responses"]
    assert len(responses) == 2 and all(len(x["results"]) == 3 for x in responses)
    for mode in ("lexical", "hybrid"):
        body = client.get("/search", params={"q": "garden hose", "mode": mode}).json()
        assert body["mode"] == mode
        assert "hose" in body["results"][0]["title"]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"params": {"q": ""}}, 422, "query is empty"),
        ({"params": {"q": "   \t "}}, 422, "query is empty"),
        ({"params": {"q": "x" * 513}}, 422, "at most 512"),
        ({"params": {"q": "drill", "k": 0}}, 422, "between 1 and 1000"),
        ({"params": {"q": "drill", "k": 1001}}, 422, "between 1 and 1000"),
        ({"params": {"q": "drill", "k": "ten"}}, 422, "malformed request"),
        ({"params": {"q": "drill", "mode": "fuzzy"}}, 422, "malformed request"),
    ],
)
def test_bad_get_input(client: TestClient, request_kwargs: dict, status: int,
                       message: str) -> None:
    r = client.get("/search", **request_kwargs)
    assert r.status_code == status and message in r.json()["detail"], r.text


def test_bad_post_input(client: TestClient) -> None:
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "malformed request" in r.json()["detail"]
    r = client.post("/search", json={"query": "drill", "partition": "store-9"})
    assert r.status_code == 404 and "unknown partition 'store-9'" in r.json()["detail"]
    r = client.post("/search/batch", json={"queries": ["a"] * 65})
    assert r.status_code == 422 and "send 1 to 64" in r.json()["detail"]
    r = client.post("/search/batch", json={"queries": []})
    assert r.status_code == 422
    r = client.post("/search/batch", json={"queries": ["x" * 500] * 200})
    assert r.status_code == 413 and "at most 65536" in r.json()["detail"]

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: sent chunked
        yield b'{"queries": ["'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"]}'

    r = client.post("/search/batch", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "is over 65536 bytes" in r.json()["detail"], r.text

    def small():  # type: ignore[no-untyped-def]  # chunked too, well under the limit
        yield b'{"queries": ["ladder",'
        yield b' "garden hose"], "k": 2}'

    r = client.post("/search/batch", content=small(), headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["responses"]) == 2, r.text


ODD = ["ü ñ 漢字", "🔨🔨 drill", "\x00\x07 odd bytes \ufffd", "'; DROP"]


@pytest.mark.parametrize("query", ODD)
def test_unicode_emoji_and_odd_bytes_are_answered(client: TestClient, query: str) -> None:
    r = client.get("/search", params={"q": query, "k": 3})
    assert r.status_code == 200 and len(r.json()["results"]) == 3


def test_health_ready_metrics_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    client.get("/search", params={"q": "paint roller"})
    client.get("/search", params={"q": "paint roller"})
    text = client.get("/metrics").text
    # the second request was a cache hit, answered by the warm lane: counted under /search too
    assert 'aisle_requests_total{path="/search",status="200"} 2.0' in text
    assert "aisle_request_seconds_bucket" in text
    # the second was answered from its finished results: no vector was looked up for it
    assert "aisle_cache_hits_total 0.0" in text and "aisle_cache_misses_total 1.0" in text
    assert "aisle_result_cache_hits_total 1.0" in text
    assert "aisle_redis_errors_total 0.0" in text and "aisle_index_info{version=" in text
    assert client.get("/openapi.json").json()["info"]["title"] == "aisle"


def test_admin_needs_the_token(client: TestClient, serve_config: ServeConfig,
                               engine: Engine) -> None:
    assert client.post("/admin/reload").status_code == 401
    bad = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    ok = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["index_version"]
    off = ServeConfig(index=serve_config.index, watch_interval_s=0)
    with TestClient(create_app(off, engine)) as c:
        r = c.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 404 and "admin endpoints are off" in r.json()["detail"]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_cached_query_is_answered_without_the_encoder(
    client: TestClient, engine: Engine, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = client.get("/search", params={"q": f"hammer drill {mode}", "k": 5, "mode": mode})
    assert first.status_code == 200, first.text
    stats = engine.stats
    hits, misses, results = stats.hits, stats.misses, stats.result_hits

    def no_encoder(texts: object) -> object:
        raise AssertionError("a cached query reached the encoder")

    monkeypatch.setattr(engine.snapshot.model, "encode_query", no_encoder)
    again = client.get("/search", params={"q": f"  Hammer DRILL {mode} ", "k": 5, "mode": mode})
    assert again.status_code == 200, again.text
    assert again.json()["results"] == first.json()["results"]
    assert (stats.hits, stats.misses, stats.result_hits) == (hits, misses, results + 1)
    # another k: not a finished result, but its vector is cached
    deeper = client.get("/search", params={"q": f"hammer drill {mode}", "k": 7, "mode": mode})
    assert deeper.status_code == 200, deeper.text
    assert (stats.hits, stats.misses, stats.result_hits) == (hits + 1, misses, results + 1)


def test_a_query_only_redis_holds_is_answered_without_the_encoder(
    serve_config: ServeConfig, engine: Engine, shared_redis: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another replica encoded the query and wrote it to Redis; this one's LRU is empty, so
    # the in-process fast path misses and the Redis lookup (off the event loop) must find it.
    remote = RedisCache(shared_redis, ttl_s=60, timeout_s=0.5, backoff_s=0.2)
    query = f"redis only {uuid.uuid4().hex[:8]} cordless drill"
    Engine(serve_config, TieredCache(LRUCache(10), remote), engine.snapshot).embed(
        engine.snapshot, engine.snapshot.preparer.prepare_all([query])
    )

    def no_encoder(texts: object) -> object:
        raise AssertionError("a query cached in Redis reached the encoder")

    monkeypatch.setattr(engine.snapshot.model, "encode_query", no_encoder)
    engine.cache = TieredCache(LRUCache(10), remote)
    with TestClient(create_app(serve_config, engine)) as client:
        r = client.get("/search", params={"q": query, "k": 3})
    assert r.status_code == 200, r.text
    assert (engine.stats.hits, engine.stats.misses) == (1, 0)
    assert remote.errors == 0
