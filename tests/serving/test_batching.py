"""The micro-batcher's policy, with a stand-in engine whose search takes a known time."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from aisle.errors import AisleError
from aisle.retrieval.config import Mode
from aisle.retrieval.store import Hit
from aisle.serving.batching import MicroBatcher, Overloaded
from aisle.serving.engine import Engine


class SlowEngine:
    """Records each batch it is given; every search takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []

    def search_jobs(self, jobs: list[tuple[list[str], int]], mode: str,
                    partition: str | None) -> tuple[list[list[list[Hit]]], str]:
        self.batches.append([t for texts, _ in jobs for t in texts])
        time.sleep(self.seconds)
        return [[[Hit(t, t, 1.0)] * k for t in texts] for texts, k in jobs], "v1"


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
        def search_jobs(self, jobs: list[tuple[list[str], int]], mode: str,
                        partition: str | None) -> tuple[list[list[list[Hit]]], str]:
            if jobs[0][0] == ["boom"]:
                raise RuntimeError("index unavailable")
            return super().search_jobs(jobs, mode, partition)

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


def test_requests_whose_callers_left_are_never_encoded() -> None:
    engine = SlowEngine(0.3)

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            busy = asyncio.create_task(batcher.search(["busy"], 5, "dense", None))
            await asyncio.sleep(0.05)  # the encoder is busy with it
            gone = [asyncio.create_task(batcher.search([f"gone{i}"], 5, "dense", None))
                    for i in range(20)]
            kept = asyncio.create_task(batcher.search(["kept"], 5, "dense", None))
            await asyncio.sleep(0.01)
            for task in gone:
                task.cancel()  # clients that disconnected or timed out
            return await asyncio.gather(busy, kept)
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=32)  # type: ignore[arg-type]
        results = asyncio.run(scenario())
    assert engine.batches == [["busy"], ["kept"]]
    assert [r[0][0][0].product_id for r in results] == ["busy", "kept"]


def test_a_full_queue_refuses_at_once_and_the_batcher_goes_on() -> None:
    engine = SlowEngine(0.2)

    async def scenario() -> tuple[list[Any], list[Any]]:
        runner = asyncio.create_task(batcher.run())
        try:
            first = asyncio.create_task(batcher.search(["q0"], 1, "dense", None))
            await asyncio.sleep(0.05)  # taken off the queue: the encoder is busy with it
            burst = [batcher.search([f"q{i}"], 1, "dense", None) for i in range(1, 6)]
            answered = await asyncio.gather(first, *burst, return_exceptions=True)
            later = await asyncio.gather(batcher.search(["later"], 1, "dense", None))
            return answered, later
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=32,  # type: ignore[arg-type]
                               max_queued=3)
        answered, later = asyncio.run(scenario())
    refused = [r for r in answered if isinstance(r, Overloaded)]
    assert len(refused) == 2 and "search queue is full (3 requests" in str(refused[0])
    assert engine.batches == [["q0"], ["q1", "q2", "q3"], ["later"]]
    assert later[0][0][0][0].product_id == "later"
    with pytest.raises(AisleError, match="batch_queue_max must be >= 1"):
        MicroBatcher(engine, pool, 0.0, 32, max_queued=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_requests_results_do_not_depend_on_its_batch(engine: Engine, mode: Mode) -> None:
    """Each request is searched at its own k: a k=300 neighbour in the batch (deeper HNSW
    candidates, deeper hybrid fusion) leaves a k=10 request's results as they are alone."""
    queries = ["cordless drill", "black paint", "wall mount shelf", "smoke detector"]
    alone = [engine.search([q], 10, mode)[0][0] for q in queries]

    async def together() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            deep = batcher.search(["garden hose"], 300, mode, None)
            return await asyncio.gather(
                deep, *[batcher.search([q], 10, mode, None) for q in queries])
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.2, max_items=32)
        deep, *batched = asyncio.run(together())
    assert batcher.batch_sizes == [5]  # they did share one batch
    assert len(deep[0][0]) == min(300, engine.snapshot.index.searcher.count)
    for q, solo, (rows, _) in zip(queries, alone, batched, strict=True):
        assert [(h.product_id, h.score) for h in rows[0]] == [
            (h.product_id, h.score) for h in solo], q
