"""The micro-batcher's policy, with a stand-in engine whose search takes a known time."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from aisle.indexing.store import Hit
from aisle.serving.batching import MicroBatcher


class SlowEngine:
    """Records each batch it is given; every search takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []

    def search(self, texts: list[str], k: int, mode: str,
               partition: str | None) -> tuple[list[list[Hit]], str]:
        self.batches.append(list(texts))
        time.sleep(self.seconds)
        return [[Hit(t, t, 1.0)] * k for t in texts], "v1"


async def burst(batcher: MicroBatcher, texts: list[str], k: int = 2) -> list[Any]:
    runner = asyncio.create_task(batcher.run())
    try:
        first = asyncio.create_task(batcher.search([texts[0]], k, "dense", None))
        await asyncio.sleep(0.02)  # the first query is being encoded when the rest arrive
        rest = [batcher.search([t], k, "dense", None) for t in texts[1:]]
        return await asyncio.gather(first, *rest)
    finally:
        runner.cancel()


def test_idle_encoder_takes_a_query_at_once_and_busy_time_forms_the_next_batch() -> None:
    engine = SlowEngine(0.1)
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=32)  # type: ignore[arg-type]
        started = time.perf_counter()
        results = asyncio.run(burst(batcher, [f"q{i}" for i in range(8)]))
        took = time.perf_counter() - started
    assert engine.batches == [["q0"], [f"q{i}" for i in range(1, 8)]]
    # each caller gets its own rows, k of them, and the version
    assert [r[0][0][0].product_id for r in results] == [f"q{i}" for i in range(8)]
    assert all(len(r[0][0]) == 2 and r[1] == "v1" for r in results)
    assert took < 0.35  # two encoder calls of 0.1 s, no third


def test_max_items_caps_a_batch() -> None:
    engine = SlowEngine(0.05)
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=3)  # type: ignore[arg-type]
        asyncio.run(burst(batcher, [f"q{i}" for i in range(8)]))
    assert [len(b) for b in engine.batches] == [1, 3, 3, 1]


@pytest.mark.parametrize("wait_s", [0.3])
def test_a_bounded_wait_gathers_queries_before_the_first_batch(wait_s: float) -> None:
    engine = SlowEngine(0.01)
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=wait_s, max_items=32)  # type: ignore[arg-type]
        asyncio.run(burst(batcher, [f"q{i}" for i in range(8)]))
    assert engine.batches == [[f"q{i}" for i in range(8)]]


def test_an_engine_error_reaches_every_waiting_caller_and_the_batcher_goes_on() -> None:
    class Failing(SlowEngine):
        def search(self, texts: list[str], k: int, mode: str,
                   partition: str | None) -> tuple[list[list[Hit]], str]:
            if texts == ["boom"]:
                raise RuntimeError("index unavailable")
            return super().search(texts, k, mode, partition)

    engine = Failing(0.0)

    async def scenario() -> tuple[Any, Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            failed = await asyncio.gather(batcher.search(["boom"], 1, "dense", None),
                                          return_exceptions=True)
            ok = await batcher.search(["fine"], 1, "dense", None)
            return failed[0], ok
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=32)  # type: ignore[arg-type]
        failed, ok = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and "index unavailable" in str(failed)
    assert ok[0][0][0].product_id == "fine"
