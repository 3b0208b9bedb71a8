from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from aisle.serving.cache import LRUCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine
from aisle.towers.model import TwoTowerModel

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def aisle_serve(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`aisle serve ARGS` in its own process on a free port: its base URL once it is ready."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aisle.cli", "serve", *args, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, f"aisle serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"aisle serve not ready:\n{log.read_text()}"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def shared_redis() -> str:
    try:
        redis.Redis.from_url(SHARED_REDIS, socket_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379 (.ci/run starts one)")
    return SHARED_REDIS


class RedisServer:
    """A private redis-server on a spare port, so fault tests never stop a shared one."""

    def __init__(self, tmp: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def serve_config(sample_index: Path) -> ServeConfig:
    return ServeConfig(index=str(sample_index), admin_token="s3cret", watch_interval_s=0)


@pytest.fixture
def engine(serve_config: ServeConfig, base_model: TwoTowerModel) -> Engine:
    return engine_over(serve_config, base_model)


@pytest.fixture(scope="session")
def int8_engine_parts(tmp_path_factory: pytest.TempPathFactory, sample_data: Path
                      ) -> tuple[ServeConfig, TwoTowerModel]:
    """The base model exported with int8 towers (what `aisle train` publishes) and the sample
    catalog indexed by them: a config and the loaded model, for ``engine_over``."""
    from aisle.indexing.build import build_index
    from aisle.towers.export import Agreement, export_model
    from aisle.towers.model import load_model

    model_dir = export_model(None, tmp_path_factory.mktemp("int8") / "model", int8=True,
                             data=sample_data, agreement=Agreement(queries=64, products=128))
    model = load_model(model_dir)
    assert model.backend == "onnx-int8"
    index = build_index(sample_data, model, tmp_path_factory.mktemp("int8-idx") / "index")
    return ServeConfig(index=str(index), watch_interval_s=0), model


@pytest.fixture(scope="session")
def partitioned_index(tmp_path_factory: pytest.TempPathFactory, sample_data: Path,
                      base_model: TwoTowerModel) -> Path:
    """The sample catalog split into partitions store-1 and store-2 (alternate rows)."""
    import numpy as np
    import pandas as pd

    from aisle.indexing.build import build_index

    data = tmp_path_factory.mktemp("parts") / "data"
    shutil.copytree(sample_data, data)
    products = pd.read_csv(data / "products.csv", dtype=str, keep_default_na=False)
    stores = np.array(["store-1", "store-2"])[np.arange(len(products)) % 2]
    products.assign(partition=stores).to_csv(data / "products.csv", index=False)
    return build_index(data, base_model, tmp_path_factory.mktemp("parts-idx") / "index")


def engine_over(config: ServeConfig, model: TwoTowerModel, speller: bool = True) -> Engine:
    """An Engine on ``config.index`` that reuses the session's loaded ``model``."""
    from aisle.retrieval.store import load_index
    from aisle.serving.snapshot import index_version, make_snapshot

    index = load_index(Path(config.index))
    snapshot = make_snapshot(model, index, index_version(Path(config.index)), speller,
                             config.result_cache_rows)
    return Engine(config, LRUCache(1000), snapshot)


def by_length_engine(config: ServeConfig, model: TwoTowerModel) -> Engine:
    """An Engine on ``config.index`` whose re-ranking stage scores a product by its text's
    length (depth 50, no time budget to speak of): re-ranking without a cross-encoder."""
    import threading
    from dataclasses import dataclass, field, replace

    import numpy as np

    from aisle.retrieval.rerank import RerankConfig
    from aisle.retrieval.store import load_index
    from aisle.serving.snapshot import make_snapshot

    class ByLength:
        def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
            return np.array([float(len(text)) for _, text in pairs])

    @dataclass
    class Stage:
        scorer: ByLength = field(default_factory=ByLength)
        config: RerankConfig = field(default_factory=lambda: RerankConfig(depth=50))
        turn: threading.Lock = field(default_factory=threading.Lock)

    snapshot = make_snapshot(model, load_index(Path(config.index)), "v1",
                             result_cache_rows=1000, reranker=Stage())
    return Engine(replace(config, rerank_budget_ms=1e6), LRUCache(100), snapshot)
