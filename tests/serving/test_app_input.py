"""What the HTTP API refuses, and how it says so; partitions on GET and POST."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from aisle.serving.app import create_app
from aisle.serving.batching import MicroBatcher, Overloaded
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Ask, Engine, Lane
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import engine_over


@pytest.fixture
def client(serve_config: ServeConfig, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(serve_config, engine)) as c:
        yield c


def post_raw(client: TestClient, body: bytes) -> object:
    return client.post("/search", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_a_lone_surrogate_is_refused_as_invalid_unicode(client: TestClient, mode: str) -> None:
    r = client.post("/search", content=b'{"query": "\\ud800 drill", "mode": "%s"}' % mode.encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "query is not valid Unicode" in r.json()["detail"]
    r = client.post("/search/batch", content=b'{"queries": ["drill", "\\udfff"]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lone surrogate" in r.json()["detail"], r.text


@pytest.mark.parametrize("query", ["\u200b", "!!!", "-- ..."])
@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_a_query_with_nothing_to_search_is_refused(client: TestClient, query: str,
                                                   mode: str) -> None:
    for r in (client.get("/search", params={"q": query, "mode": mode}),
              client.post("/search", json={"query": query, "mode": mode})):
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == "query has no letters or digits; send the words the " \
            "shopper typed"


@pytest.mark.parametrize(("body", "where"), [
    ({"query": "drill", "partiton": "store-2"}, "partiton: Extra inputs are not permitted"),
    ({"query": "drill", "k": True}, "k: Input should be a valid integer"),
    ({"query": "drill", "k": "5"}, "k: Input should be a valid integer"),
])
def test_post_refuses_unknown_keys_and_non_integer_k(client: TestClient, body: dict,
                                                     where: str) -> None:
    r = client.post("/search", json=body)
    assert r.status_code == 422 and where in r.json()["detail"], r.text
    batch = {"queries": [body["query"]], **{k: v for k, v in body.items() if k != "query"}}
    r = client.post("/search/batch", json=batch)
    assert r.status_code == 422 and where in r.json()["detail"], r.text


def test_undecodable_bytes_are_refused_as_such(client: TestClient) -> None:
    r = client.get("/search?q=%FF%FE")  # not UTF-8: decoded as two U+FFFD
    assert r.status_code == 422 and "send the query as UTF-8" in r.json()["detail"], r.text


def test_get_refuses_an_unknown_parameter(client: TestClient) -> None:
    client.get("/search", params={"q": "drill"})  # cached: the warm lane must refuse it too
    r = client.get("/search", params={"q": "drill", "partiton": "store-2"})
    assert r.status_code == 422, r.text
    assert "unknown query parameter 'partiton'" in r.json()["detail"]


@pytest.fixture
def part_config(partitioned_index: Path) -> ServeConfig:
    return ServeConfig(index=str(partitioned_index), watch_interval_s=0)


def store_ids(index: Path, store: str) -> set[str]:
    rows = pd.read_parquet(index / "partitions" / store / "rows.parquet")
    return set(rows["product_id"])


def test_get_and_post_search_a_partition(part_config: ServeConfig, partitioned_index: Path,
                                         base_model: TwoTowerModel) -> None:
    store2 = store_ids(partitioned_index, "store-2")
    engine = engine_over(part_config, base_model)
    with TestClient(create_app(part_config, engine)) as c:
        for mode in ("dense", "hybrid", "lexical"):
            for _ in range(2):  # the second: vector cached and partition loaded (warm lane)
                got = c.get("/search", params={"q": "drill", "k": 10, "partition": "store-2",
                                               "mode": mode})
                assert got.status_code == 200, got.text
                ids = [h["product_id"] for h in got.json()["results"]]
                assert set(ids) <= store2, mode
                assert len(ids) == 10 or mode == "lexical"  # BM25: only titles with a word
            post = c.post("/search", json={"query": "drill", "k": 10, "partition": "store-2",
                                           "mode": mode})
            assert [h["product_id"] for h in post.json()["results"]] == ids
        whole = c.get("/search", params={"q": "drill", "k": 10})
        assert not {h["product_id"] for h in whole.json()["results"]} <= store2
        r = c.get("/search", params={"q": "drill", "partition": "no-such-store"})
        assert r.status_code == 404 and "unknown partition 'no-such-store'" in r.json()["detail"]


def test_a_snapshot_numbers_each_loaded_partition_for_hybrid_before_any_request(
    partitioned_index: Path, base_model: TwoTowerModel
) -> None:
    """Hybrid's product numbering (``Retriever.fusion_ids``) of every partition the service
    loaded is built with the snapshot, not on a partition's first request; a partition still
    on disk stays there."""
    from aisle.retrieval.store import load_index
    from aisle.serving.snapshot import make_snapshot

    eager = make_snapshot(base_model, load_index(partitioned_index, eager=True), "v1").retriever
    assert eager.index.partition_names == ["store-1", "store-2"]
    for name in eager.index.partition_names:
        part = eager.partition(name)
        assert vars(part)["fusion_ids"] is not None  # built: cached_property keeps it there
    lazy = make_snapshot(base_model, load_index(partitioned_index), "v1").retriever
    assert not any(lazy.partition_loaded(n) for n in lazy.index.partition_names)
    one = load_index(partitioned_index)
    one.partition("store-2")  # loaded before the snapshot: numbered with it; store-1 stays
    half = make_snapshot(base_model, one, "v1").retriever
    assert vars(half.partition("store-2"))["fusion_ids"] is not None
    assert not half.partition_loaded("store-1")


def test_a_partition_is_loaded_off_the_event_loop(part_config: ServeConfig,
                                                  base_model: TwoTowerModel,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import aisle.retrieval.store as store

    engine = engine_over(part_config, base_model)
    loaded_on: list[str] = []
    load = store.load_index

    def recording(root: Path, *args: object) -> object:
        loaded_on.append(threading.current_thread().name)  # a partition read from disk
        return load(root, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "load_index", recording)
    with TestClient(create_app(part_config, engine)) as c:
        c.get("/search", params={"q": "drill"})  # the vector is now in the in-process cache
        assert engine.plan(Ask(("drill",), 5, "dense", "store-1")).lane is Lane.THREAD
        assert loaded_on == []  # the warm (event-loop) path does not load a partition
        for r in (c.post("/search", json={"query": "drill", "partition": "store-1"}),
                  c.get("/search", params={"q": "drill", "partition": "store-1"})):
            assert r.status_code == 200, r.text
    assert loaded_on and all(t.startswith("aisle-search") for t in loaded_on), loaded_on
    assert engine.plan(Ask(("drill",), 5, "dense", "store-1")).lane is Lane.LOOP


def test_an_overloaded_encoder_queue_answers_503_with_retry_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def full(*args: object) -> object:
        raise Overloaded("the search queue is full (512 requests waiting for the encoder); "
                         "retry shortly")

    monkeypatch.setattr(MicroBatcher, "search", full)
    r = client.get("/search", params={"q": "a query nobody sent before"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "search queue is full" in r.json()["detail"]
    assert 'aisle_requests_total{path="/search",status="503"} 1.0' in client.get("/metrics").text


def test_a_search_on_threads_shut_down_with_the_service_is_a_503_with_retry_after(
    serve_config: ServeConfig, engine: Engine
) -> None:
    """The service's shut-down shuts its search threads, and a request that already holds
    them (past its dependencies) then met RuntimeError("cannot schedule new futures after
    shutdown"): a 500. It is told the service is shutting down, as a queued request is."""
    thread = ("cordless drill", "hybrid")  # its vector cached: BM25 on a thread
    engine.embed(engine.snapshot, engine.snapshot.preparer.prepare_all([thread[0]]))
    assert engine.plan(Ask((thread[0],), 5, thread[1])).lane is Lane.THREAD
    encoder = ("a query nobody sent before", "dense")  # the micro-batcher's thread
    assert engine.plan(Ask((encoder[0],), 5, encoder[1])).lane is Lane.ENCODER
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as client:
        client.app.state.executor.shutdown()  # type: ignore[attr-defined]
        for query, mode in (thread, encoder):
            for r in (client.post("/search", json={"query": query, "mode": mode}),
                      client.get("/search", params={"q": query, "mode": mode}),
                      client.post("/search/batch", json={"queries": [query], "mode": mode})):
                assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
                assert r.json()["detail"] == "the service is shutting down; retry shortly"


def test_the_app_can_start_twice(serve_config: ServeConfig, engine: Engine) -> None:
    app = create_app(serve_config, engine)
    for query in ("drill", "hammer"):
        with TestClient(app) as c:
            assert c.get("/search", params={"q": query}).status_code == 200
            assert "aisle_cache_misses_total" in c.get("/metrics").text


def test_an_empty_partition_parameter_searches_the_whole_index(client: TestClient) -> None:
    # A blank form field sends "partition=": it means no partition, as an absent one does.
    whole = client.get("/search", params={"q": "drill"})
    blank = client.get("/search", params={"q": "drill", "partition": ""})
    assert blank.status_code == 200, blank.text
    assert blank.json()["results"] == whole.json()["results"]


def test_the_service_loads_every_partition_with_its_snapshot(part_config: ServeConfig) -> None:
    # load_snapshot reads the index eagerly: the warm lane can answer any partition at once,
    # and a later prune of this version cannot break the snapshot it serves.
    from aisle.serving.snapshot import load_snapshot

    snapshot = load_snapshot(part_config)
    assert snapshot.index.partition_names == ["store-1", "store-2"]
    retriever = snapshot.retriever
    assert all(retriever.partition_loaded(name) for name in snapshot.index.partition_names)
    assert not retriever.partition_loaded("store-3")
