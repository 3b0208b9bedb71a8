from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aisle.serving.cache import LRUCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
def engine(serve_config: ServeConfig, base_model) -> Engine:  # type: ignore[no-untyped-def]
    from aisle.indexing import load_index
    from aisle.indexing.retrieve import query_speller
    from aisle.serving.engine import Snapshot, index_version

    index = load_index(Path(serve_config.index))
    version = index_version(Path(serve_config.index))
    snapshot = Snapshot(base_model, index, version, query_speller(index, base_model))
    return Engine(serve_config, LRUCache(1000), snapshot)
