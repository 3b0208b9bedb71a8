"""The micro-batcher's policy, with a stand-in engine whose search takes a known time."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aisle.errors import AisleError
from aisle.retrieval.config import Mode
from aisle.retrieval.query import PreparedQuery
from aisle.retrieval.retriever import Found
from aisle.retrieval.store import Hit
from aisle.serving.batching import MicroBatcher, Overloaded, ShuttingDown
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Answer, Ask, Engine
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import engine_over

QUERIES = ["cordless drill", "black paint", "wall mount shelf", "smoke detector"]


def search(batcher: MicroBatcher, text: str, k: int, mode: Mode = "dense") -> Any:
    return batcher.search(Ask((text,), k), mode)


def top(answer: Answer) -> str:
    return answer.found[0].hits[0].product_id


def on(backend: str, static_query: str = "") -> Any:
    """A model stand-in that runs on ``backend`` (and a static query tower when
    ``static_query`` names one): what ``batch_lanes`` and ``batch_max`` read."""
    model = SimpleNamespace(backend=backend, static_query=static_query)
    model.batches_queries = TwoTowerModel.batches_queries.fget(model)  # type: ignore[attr-defined]
    return model


class SlowEngine:
    """Records each batch it is given; every search takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []

    def search_jobs(self, asks: list[Ask], mode: Mode) -> list[Answer]:
        self.batches.append([t for ask in asks for t in ask.texts])
        time.sleep(self.seconds)
        return [Answer([Found([Hit(t, t, 1.0)] * ask.k, mode, PreparedQuery(t, t, t, False))
                        for t in ask.texts], "v1") for ask in asks]


async def burst(batcher: MicroBatcher, texts: list[str], k: int = 2) -> list[Any]:
    runner = asyncio.create_task(batcher.run())
    try:
        first = asyncio.create_task(search(batcher, texts[0], k))
        await asyncio.sleep(0.02)  # the first query is being encoded when the rest arrive
        rest = [search(batcher, t, k) for t in texts[1:]]
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
    assert [top(r) for r in results] == [f"q{i}" for i in range(8)]
    assert all(len(r.found[0].hits) == 2 and r.version == "v1" for r in results)
    assert took < 0.35  # two encoder calls of 0.1 s, no third


def test_max_items_caps_a_batch() -> None:
    engine = SlowEngine(0.05)
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=3)  # type: ignore[arg-type]
        asyncio.run(burst(batcher, [f"q{i}" for i in range(8)]))
    assert [len(b) for b in engine.batches] == [1, 3, 3, 1]


def many(batcher: MicroBatcher, texts: list[str], k: int = 2) -> Any:
    """A batch request's job: several queries in one ask."""
    return batcher.search(Ask(tuple(texts), k), "dense")


def test_a_query_queued_before_a_batch_request_too_large_to_join_it_goes_first_alone() -> None:
    """Room for 2 queries a batch: q1 and a batch request of five, queued while q0 is
    searched, used to go as one batch of six, q1 waiting for the five. The request that
    does not fit is taken whole as the next batch's first."""
    engine = SlowEngine(0.05)
    five = [f"b{i}" for i in range(5)]

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            first = asyncio.create_task(search(batcher, "q0", 2))
            await asyncio.sleep(0.02)  # q0 is being searched when the rest arrive
            one = asyncio.create_task(search(batcher, "q1", 2))
            request = asyncio.create_task(many(batcher, five))
            last = asyncio.create_task(search(batcher, "q2", 2))
            return list(await asyncio.gather(first, one, request, last))
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=2)  # type: ignore[arg-type]
        answers = asyncio.run(scenario())
    assert engine.batches == [["q0"], ["q1"], five, ["q2"]]
    assert [top(a) for a in answers[:2]] + [top(answers[3])] == ["q0", "q1", "q2"]
    assert [f.hits[0].product_id for f in answers[2].found] == five


def test_a_batch_request_arriving_during_the_wait_is_not_joined_past_max_items() -> None:
    engine = SlowEngine(0.01)
    five = [f"b{i}" for i in range(5)]

    async def scenario() -> None:
        runner = asyncio.create_task(batcher.run())
        try:
            first = asyncio.create_task(search(batcher, "q0", 2))
            await asyncio.sleep(0.05)  # within the batch's wait for more
            await asyncio.gather(first, many(batcher, five))
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.3, max_items=2)  # type: ignore[arg-type]
        asyncio.run(scenario())
    assert engine.batches == [["q0"], five]


async def held_behind(batcher: MicroBatcher, wait_s: float) -> list[asyncio.Task[Any]]:
    """q0 searched, then q1 and a request of three queries queued behind it; ``wait_s`` later
    (a batch of 2 past q0's search) q1 is searched alone and the request is held."""
    first = asyncio.create_task(search(batcher, "q0", 2))
    await asyncio.sleep(0.02)
    one = asyncio.create_task(search(batcher, "q1", 2))
    await asyncio.sleep(0.02)  # q1 is queued first
    request = asyncio.create_task(many(batcher, ["b0", "b1", "b2"]))
    await asyncio.sleep(wait_s)
    return [first, one, request]


def test_a_request_held_for_the_next_batch_is_told_when_the_service_stops() -> None:
    engine = SlowEngine(0.3)

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        waiting = await held_behind(batcher, 0.45)
        runner.cancel()
        return list(await asyncio.wait_for(
            asyncio.gather(*waiting, return_exceptions=True), 5))

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=2)  # type: ignore[arg-type]
        answers = asyncio.run(scenario())
    assert top(answers[0]) == "q0"
    assert engine.batches == [["q0"], ["q1"]]
    assert isinstance(answers[2], ShuttingDown)  # never left waiting


def test_a_request_held_for_the_next_batch_counts_against_the_queue_bound() -> None:
    engine = SlowEngine(0.6)

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            waiting = await held_behind(batcher, 0.8)  # the request held: 1 of 2 waits
            more = [asyncio.create_task(search(batcher, q, 2)) for q in ("q2", "q3")]
            return list(await asyncio.wait_for(asyncio.gather(
                *waiting, *more, return_exceptions=True), 10))
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=2,  # type: ignore[arg-type]
                               max_queued=2)
        answers = asyncio.run(scenario())
    assert isinstance(answers[4], Overloaded) and "(2 requests" in str(answers[4])
    assert [top(a) for a in answers[:2]] + [top(answers[3])] == ["q0", "q1", "q2"]
    assert engine.batches == [["q0"], ["q1"], ["b0", "b1", "b2"], ["q2"]]


@pytest.mark.parametrize("wait_s", [0.3])
def test_a_bounded_wait_gathers_queries_before_the_first_batch(wait_s: float) -> None:
    engine = SlowEngine(0.01)
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=wait_s, max_items=32)  # type: ignore[arg-type]
        asyncio.run(burst(batcher, [f"q{i}" for i in range(8)]))
    assert engine.batches == [[f"q{i}" for i in range(8)]]


def test_an_engine_error_reaches_every_waiting_caller_and_the_batcher_goes_on() -> None:
    class Failing(SlowEngine):
        def search_jobs(self, asks: list[Ask], mode: Mode) -> list[Answer]:
            if asks[0].texts == ("boom",):
                raise RuntimeError("index unavailable")
            return super().search_jobs(asks, mode)

    engine = Failing(0.0)

    async def scenario() -> tuple[Any, Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            failed = await asyncio.gather(search(batcher, "boom", 1),
                                          return_exceptions=True)
            ok = await search(batcher, "fine", 1)
            return failed[0], ok
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=32)  # type: ignore[arg-type]
        failed, ok = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and "index unavailable" in str(failed)
    assert top(ok) == "fine"


def test_a_batch_that_fails_past_the_engine_fails_its_callers_instead_of_hanging() -> None:
    class Miscounting(SlowEngine):  # one answer short: the batcher's own bookkeeping fails
        def search_jobs(self, asks: list[Ask], mode: Mode) -> list[Answer]:
            return super().search_jobs(asks, mode)[:-1]

    engine = Miscounting(0.0)

    async def scenario() -> Any:
        runner = asyncio.create_task(batcher.run())
        try:
            return await asyncio.wait_for(
                asyncio.gather(search(batcher, "q", 1), return_exceptions=True), 10)
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=32,  # type: ignore[arg-type]
                               lanes=2)
        (failed,) = asyncio.run(scenario())
    assert isinstance(failed, ValueError)


def test_lanes_default_to_one_per_core_on_onnx_towers_and_one_on_torch() -> None:
    from aisle.serving.app import batch_lanes
    from aisle.serving.config import ServeConfig

    assert batch_lanes(ServeConfig(), on("onnx-int8"), 4) == 4
    assert batch_lanes(ServeConfig(), on("torch"), 4) == 1  # a torch call uses every core
    assert batch_lanes(ServeConfig(batch_lanes=3), on("torch"), 4) == 3
    with pytest.raises(AisleError, match="batch_lanes must be >= 0"):
        batch_lanes(ServeConfig(batch_lanes=-1), on("onnx-int8"), 4)


def test_a_batch_takes_two_queries_where_a_larger_one_gains_nothing_by_default() -> None:
    from aisle.serving.app import batch_max
    from aisle.serving.config import ServeConfig

    assert batch_max(ServeConfig(), on("onnx-int8")) == 2  # one text a call
    for backend in ("onnx-fp32", "torch", "onnx-int8"):  # a static tower: a lookup
        assert batch_max(ServeConfig(), on(backend, "static.1a2b")) == 2
    # One torch or fp32 call encodes many texts: there a larger batch pays.
    assert batch_max(ServeConfig(), on("onnx-fp32")) == 32
    assert batch_max(ServeConfig(), on("torch")) == 32
    assert batch_max(ServeConfig(batch_max=5), on("onnx-int8")) == 5
    with pytest.raises(AisleError, match="batch_max"):
        ServeConfig(batch_max=-1)
    with ThreadPoolExecutor(1) as pool, pytest.raises(AisleError, match="batch_max must be >= 1"):
        MicroBatcher(SlowEngine(0.0), pool, 0.0, 0)  # type: ignore[arg-type]


def test_the_service_batches_two_queries_on_the_int8_towers_aisle_train_publishes(
        int8_engine_parts: tuple[ServeConfig, TwoTowerModel]) -> None:
    from fastapi.testclient import TestClient

    from aisle.serving.app import create_app

    config, _ = int8_engine_parts
    with TestClient(create_app(config, engine_over(*int8_engine_parts))) as client:
        assert client.app.state.batcher.max_items == 2  # type: ignore[attr-defined]
        assert client.get("/search", params={"q": "drill"}).status_code == 200


def test_the_batch_size_and_lanes_follow_what_sizing_says_before_each_batch(
        caplog: pytest.LogCaptureFixture) -> None:
    """A reload onto a model of another runtime changes what suits it: the batcher reads
    ``sizing`` before each batch, and again once its first query is in."""
    engine = TimedEngine(0.2)
    sizes = [(1, 1)]

    async def burst_of_three(texts: list[str]) -> None:
        first = asyncio.create_task(search(batcher, texts[0], 1))
        await asyncio.sleep(0.02)  # being searched when the other two arrive
        await asyncio.gather(first, *(search(batcher, t, 1) for t in texts[1:]))

    async def scenario() -> None:
        runner = asyncio.create_task(batcher.run())
        try:
            await burst_of_three(["q0", "q1", "q2"])
            sizes.append((32, 2))  # as a reload onto torch towers from int8 ones would
            await burst_of_three(["r0", "r1", "r2"])
        finally:
            runner.cancel()

    with ThreadPoolExecutor(4) as pool:
        batcher = MicroBatcher(engine, pool, 0.0, 1,  # type: ignore[arg-type]
                               sizing=lambda: sizes[-1])
        asyncio.run(scenario())
    assert engine.batches == [["q0"], ["q1"], ["q2"], ["r0"], ["r1", "r2"]]
    q0, q1, q2, r0, r12 = engine.spans
    assert q0[1] <= q1[0] and q1[1] <= q2[0]  # one lane
    assert r12[0] < r0[1]  # two: the second batch started while the first ran
    assert (batcher.max_items, batcher.lanes) == (32, 2)
    sizes.append((0, 1))  # refused: the sizes before are kept, the batcher goes on
    with caplog.at_level(logging.ERROR, logger="aisle.serving.batching"):
        batcher._resize()
    assert (batcher.max_items, batcher.lanes) == (32, 2)
    assert "batch_max must be >= 1" in caplog.text


def test_the_service_resizes_its_batches_when_a_reload_brings_another_query_runtime(
        int8_engine_parts: tuple[ServeConfig, TwoTowerModel], sample_index: Path,
        tmp_path: Path) -> None:
    """Served from int8 towers, then reloaded onto an index of the torch base model: batches
    of 2 on one lane a core become batches of 32 on one lane."""
    import shutil
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from aisle.artifacts import atomic_dir
    from aisle.cores import available_cores
    from aisle.serving.app import create_app

    config, model = int8_engine_parts
    served = tmp_path / "served"
    shutil.copytree(config.index, served)
    config = replace(config, index=str(served), admin_token="t")
    with TestClient(create_app(config, engine_over(config, model))) as client:
        batcher = client.app.state.batcher  # type: ignore[attr-defined]
        assert (batcher.max_items, batcher.lanes) == (2, available_cores())
        with atomic_dir(served, None) as tmp:  # what a new index build does to it
            shutil.copytree(sample_index, tmp, dirs_exist_ok=True)
        reloaded = client.post("/admin/reload", headers={"Authorization": "Bearer t"})
        assert reloaded.status_code == 200, reloaded.text
        assert client.app.state.engine.snapshot.model.backend == "torch"  # type: ignore[attr-defined]
        for q in ("drill", "white paint"):
            assert client.get("/search", params={"q": q}).status_code == 200
        assert (batcher.max_items, batcher.lanes) == (32, 1)


def test_where_a_batch_fails_each_request_is_searched_again_alone() -> None:
    """One request's error fails its own caller only: the batch is searched again a request
    at a time, skipping a request whose caller left meanwhile."""
    import threading

    release = threading.Event()

    class Failing(SlowEngine):
        def search_jobs(self, asks: list[Ask], mode: Mode) -> list[Answer]:
            if len(asks) > 1 and not release.wait(10):
                raise RuntimeError("never released")
            if any(ask.texts == ("boom",) for ask in asks):
                raise RuntimeError("index unavailable")
            return super().search_jobs(asks, mode)

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            tasks = [asyncio.create_task(search(batcher, q, 1))
                     for q in ("first", "gone", "boom", "fine")]
            await asyncio.sleep(0.1)  # the four are being searched together
            tasks[1].cancel()  # its client disconnected
            release.set()
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            release.set()
            runner.cancel()

    engine = Failing(0.0)
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.05, max_items=4)  # type: ignore[arg-type]
        first, gone, boom, fine = asyncio.run(scenario())
    assert batcher.batch_sizes == [4]  # one batch, which failed
    assert top(first) == "first" and top(fine) == "fine"
    assert isinstance(gone, asyncio.CancelledError)
    assert isinstance(boom, RuntimeError) and "index unavailable" in str(boom)
    assert engine.batches == [["first"], ["fine"]]  # again alone; "gone" not searched again


def test_a_search_that_dies_of_a_base_exception_still_answers_its_callers() -> None:
    """An exception that is no ``Exception`` (and no cancellation) ends the batch's task; its
    callers are told the search failed instead of waiting forever, and the batcher goes on."""

    class Fatal(BaseException):
        pass

    class Dying(SlowEngine):
        def search_jobs(self, asks: list[Ask], mode: Mode) -> list[Answer]:
            if asks[0].texts == ("fatal",):
                raise Fatal()
            return super().search_jobs(asks, mode)

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            failed = await asyncio.wait_for(
                asyncio.gather(search(batcher, "fatal", 1), return_exceptions=True), 10)
            return [*failed, await asyncio.wait_for(search(batcher, "fine", 1), 10)]
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(Dying(0.0), pool, wait_s=0.0, max_items=2)  # type: ignore[arg-type]
        failed, fine = asyncio.run(scenario())
    assert isinstance(failed, AisleError) and "the search failed" in str(failed)
    assert top(fine) == "fine"


def test_requests_whose_callers_left_are_never_encoded() -> None:
    engine = SlowEngine(0.3)

    async def scenario() -> list[Any]:
        runner = asyncio.create_task(batcher.run())
        try:
            busy = asyncio.create_task(search(batcher, "busy", 5))
            await asyncio.sleep(0.05)  # the encoder is busy with it
            gone = [asyncio.create_task(search(batcher, f"gone{i}", 5))
                    for i in range(20)]
            kept = asyncio.create_task(search(batcher, "kept", 5))
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
    assert [top(r) for r in results] == ["busy", "kept"]


def test_a_full_queue_refuses_at_once_and_the_batcher_goes_on() -> None:
    engine = SlowEngine(0.2)

    async def scenario() -> tuple[list[Any], list[Any]]:
        runner = asyncio.create_task(batcher.run())
        try:
            first = asyncio.create_task(search(batcher, "q0", 1))
            await asyncio.sleep(0.05)  # taken off the queue: the encoder is busy with it
            burst = [search(batcher, f"q{i}", 1) for i in range(1, 6)]
            answered = await asyncio.gather(first, *burst, return_exceptions=True)
            later = await asyncio.gather(search(batcher, "later", 1))
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
    assert top(later[0]) == "later"
    with pytest.raises(AisleError, match="batch_queue_max must be >= 1"):
        MicroBatcher(engine, pool, 0.0, 32, max_queued=0)  # type: ignore[arg-type]


class TimedEngine(SlowEngine):
    """A SlowEngine that also records when each batch ran, on which thread."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.spans: list[tuple[float, float]] = []

    def search_jobs(self, asks: list[Ask], mode: Mode) -> list[Answer]:
        start = time.perf_counter()
        try:
            return super().search_jobs(asks, mode)
        finally:
            self.spans.append((start, time.perf_counter()))


@pytest.mark.parametrize("lanes", [1, 2])
def test_lanes_bound_how_many_batches_run_at_once(lanes: int) -> None:
    """Queries that arrive while a batch runs go together as the next batch; with two lanes
    that batch starts at once on the other lane, with one it waits for the first."""
    engine = TimedEngine(0.2)
    with ThreadPoolExecutor(4) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.0, max_items=32,  # type: ignore[arg-type]
                               lanes=lanes)
        results = asyncio.run(burst(batcher, ["q0", "q1", "q2"]))
    assert [top(r) for r in results] == ["q0", "q1", "q2"]
    assert engine.batches == [["q0"], ["q1", "q2"]]
    (a0, a1), (b0, b1) = engine.spans[:2]
    overlapped = b0 < a1 and a0 < b1
    assert overlapped == (lanes == 2)
    with pytest.raises(AisleError, match="batch lanes must be >= 1"):
        MicroBatcher(engine, pool, 0.0, 32, lanes=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_requests_results_do_not_depend_on_its_batch(engine: Engine, mode: Mode) -> None:
    """Each request is searched at its own k: a k=300 neighbour in the batch (deeper HNSW
    candidates, deeper hybrid fusion) leaves a k=10 request's results as they are alone."""
    alone = [engine.search(Ask((q,), 10, mode)).found[0].hits for q in QUERIES]
    deep, *batched = one_batch(engine, [("garden hose", 300)] + [(q, 10) for q in QUERIES], mode)
    assert len(deep.found[0].hits) == min(300, engine.snapshot.index.searcher.count)
    assert_same_hits(batched, alone)


def one_batch(engine: Engine, asks: list[tuple[str, int]], mode: Mode) -> list[Answer]:
    """``asks`` ((text, k) each) searched by ``engine`` as one micro-batch (checked)."""

    async def together() -> list[Answer]:
        runner = asyncio.create_task(batcher.run())
        try:
            return list(await asyncio.gather(*[search(batcher, t, k, mode) for t, k in asks]))
        finally:
            runner.cancel()

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=0.2, max_items=32)
        answers = asyncio.run(together())
    assert batcher.batch_sizes == [len(asks)]  # they did share one batch
    return answers


def assert_same_hits(answers: list[Answer], alone: list[list[Hit]]) -> None:
    for q, answer, solo in zip(QUERIES, answers, alone, strict=True):
        assert [(h.product_id, h.score) for h in answer.found[0].hits] == [
            (h.product_id, h.score) for h in solo], q


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_an_int8_query_is_encoded_as_it_would_be_alone(
    int8_engine_parts: tuple[ServeConfig, TwoTowerModel], mode: Mode
) -> None:
    """int8 towers (what `aisle train` publishes) scale activations once per call: had a batch
    shared a call, a long, unlike neighbour would widen the scale its queries are quantised
    with. Each text is its own call, so a query's results, to the score, are what it gets on
    its own, whatever is encoded beside it. Two engines, so that no vector comes from a
    cache: one searches each query alone, the other all of them in one batch."""
    long = "Ünïcödé 電動ドリル 🔨 GARDEN HOSE 50 ft. x 5/8 in. heavy duty " * 4
    single = engine_over(*int8_engine_parts)
    alone = [single.search(Ask((q,), 10, mode)).found[0].hits for q in QUERIES]
    engine = engine_over(*int8_engine_parts)
    _, *batched = one_batch(engine, [(long, 10)] + [(q, 10) for q in QUERIES], mode)
    assert engine.stats.misses == 5  # every vector was encoded in that batch
    assert_same_hits(batched, alone)


@pytest.mark.parametrize(("method", "path"), [("GET", "/search"), ("POST", "/search"),
                                            ("POST", "/search/batch")])
def test_a_request_whose_client_disconnects_while_queued_is_never_encoded(
    serve_config: ServeConfig, engine: Engine, monkeypatch: pytest.MonkeyPatch, method: str,
    path: str,
) -> None:
    """The server goes on running a request whose client left (uvicorn cancels nothing): the
    warm lane (GET) or the route (POST, once it has read the body) notices the disconnect and
    cancels it, so the batcher drops it unencoded."""
    import json
    from dataclasses import replace
    from urllib.parse import urlencode

    from aisle.serving.app import create_app

    encoded: list[str] = []
    search_jobs = engine.search_jobs

    def slow(asks: list[Ask], mode: Mode) -> list[Answer]:
        encoded.extend(t for ask in asks for t in ask.texts)
        time.sleep(0.3)
        return search_jobs(asks, mode)

    monkeypatch.setattr(engine, "search_jobs", slow)
    app = create_app(replace(serve_config, batch_lanes=1), engine)

    async def get(q: str, leave: asyncio.Event) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        body = {"query": q, "mode": "dense"} if path == "/search" else {
            "queries": [q], "mode": "dense"}
        payload = json.dumps(body).encode() if method == "POST" else b""
        messages = [{"type": "http.request", "body": payload, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await leave.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(b"content-type", b"application/json"),
                   (b"content-length", b"%d" % len(payload))] if method == "POST" else []
        query = urlencode({"q": q, "mode": "dense"}).encode() if method == "GET" else b""
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80), "query_string": query}
        await app(scope, receive, send)
        return sent

    async def scenario() -> list[list[dict[str, Any]]]:
        async with app.router.lifespan_context(app):
            stay, leave = asyncio.Event(), asyncio.Event()
            busy = asyncio.create_task(get("cordless drill", stay))
            await asyncio.sleep(0.1)  # the encoder is busy with it
            gone = [asyncio.create_task(get(f"drill bit {i}", leave)) for i in range(5)]
            kept = asyncio.create_task(get("garden hose", stay))
            await asyncio.sleep(0.05)
            leave.set()  # five clients hang up while queued
            return await asyncio.gather(busy, kept, *gone)

    busy, kept, *gone = asyncio.run(scenario())
    assert encoded == ["cordless drill", "garden hose"]
    assert [m[0]["status"] for m in (busy, kept)] == [200, 200]
    assert all(not m or m[0]["status"] == 499 for m in gone)  # nobody reads it
    left = app.state.metrics.registry.get_sample_value(
        "aisle_requests_total", {"path": path, "status": "499"})
    assert left == 5


@pytest.mark.parametrize("wait_s", [0.0, 0.5])
def test_stopping_answers_every_waiting_request_and_refuses_later_ones(wait_s: float) -> None:
    """A service shutting down tells each caller still queued, in a batch or gathering for
    one, to retry (503), instead of leaving it waiting for an answer that never comes."""
    engine = SlowEngine(0.3)

    async def scenario() -> tuple[list[Any], Any]:
        runner = asyncio.create_task(batcher.run())
        first = asyncio.create_task(search(batcher, "q0", 1))  # in a batch (or gathering)
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(search(batcher, f"q{i}", 1)) for i in (1, 2)]
        await asyncio.sleep(0.05)
        runner.cancel()
        answered = await asyncio.wait_for(
            asyncio.gather(first, *queued, return_exceptions=True), 2)
        later = await asyncio.gather(search(batcher, "later", 1), return_exceptions=True)
        return answered, later[0]

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(engine, pool, wait_s=wait_s, max_items=32)  # type: ignore[arg-type]
        answered, later = asyncio.run(scenario())
    assert all(isinstance(r, ShuttingDown) for r in [*answered, later]), answered
    assert isinstance(later, Overloaded) and "shutting down" in str(later)  # a 503
