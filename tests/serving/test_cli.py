"""`aisle serve` as a real uvicorn process and `aisle cache warm` into real Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from aisle.cli import main
from aisle.serving.cache import RedisCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import free_port


def test_serve_runs_on_loopback(sample_index: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aisle.cli", "serve", "--index", str(sample_index), "--port",
         str(port), "watch_interval_s=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "aisle serve did not become ready"
            assert proc.poll() is None, "aisle serve exited"
            time.sleep(0.5)
        r = httpx.get(f"http://127.0.0.1:{port}/search", params={"q": "claw hammer", "k": 2})
        assert r.status_code == 200 and len(r.json()["results"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cache_warm_writes_head_queries_to_redis(
    sample_data: Path, sample_index: Path, shared_redis: str, base_model: TwoTowerModel,
    serve_config: ServeConfig, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "log.txt"
    log.write_text("ｌａｄｄｅｒ\nladder\nLadder\nGarden  Hose\ngarden hose\n!!!\n!!!\n!!!\n"
                   "!!!\nrare query\n")
    client = redis.Redis.from_url(shared_redis)
    prefix = f"aisle:qemb:v3:{base_model.fingerprint}-{base_model.backend}:"
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    monkeypatch.setenv("REDIS_URL", shared_redis)
    args = ["cache", "warm", "--index", str(sample_index), "--queries", str(log), "--top", "2"]
    assert main(args) == 0
    # "!!!" is no query (the service refuses it); the variants of "ladder" (3) and of
    # "garden hose" (2) are one text each to the (uncased) encoder: the head two
    assert len(list(client.scan_iter(prefix + "*"))) == 2

    # the service finds the warmed vectors under its own keys: no encoder call
    def no_encoder(texts: object) -> object:
        raise AssertionError("a warmed query reached the encoder")

    monkeypatch.setattr(base_model, "encode_query", no_encoder)
    remote = RedisCache(shared_redis, ttl_s=60, timeout_s=0.5, backoff_s=0.2)
    service = Engine(serve_config, remote, engine.snapshot)
    queries = service.snapshot.preparer.prepare_all(["LADDER", "garden  hose"])
    service.embed(service.snapshot, queries)
    assert (service.stats.hits, service.stats.misses, remote.errors) == (2, 0, 0)


def test_a_query_log_count_that_is_no_whole_number_is_named(tmp_path: Path) -> None:
    """A blank or fractional count was a ValueError traceback, after the model had loaded."""
    from aisle.errors import AisleError
    from aisle.serving.cli import head_queries

    log = tmp_path / "log.csv"
    log.write_text("query,count\ndrill,5\npaint,\nhose,2\n", encoding="utf-8")
    with pytest.raises(AisleError, match="count column must hold whole numbers >= 0; row 2 "
                                         "holds ''"):
        head_queries(log, 10)
    log.write_text("query,count\ndrill,5\npaint,1.5\n", encoding="utf-8")
    with pytest.raises(AisleError, match=r"row 2 holds '1\.5'"):
        head_queries(log, 10)
    log.write_text("query,count\ndrill,5\npaint,7\nhose,2\n", encoding="utf-8")
    assert head_queries(log, 2) == ["paint", "drill"]
    # A parquet log keeps its own index: the row is a position, not a label.
    import pandas as pd

    kept = tmp_path / "log.parquet"
    pd.DataFrame({"query": ["drill", "paint"], "count": ["5", "x"]},
                 index=["a", "b"]).to_parquet(kept)
    with pytest.raises(AisleError, match="row 2 holds 'x'"):
        head_queries(kept, 10)
