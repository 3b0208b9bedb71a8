"""Micro-batching: concurrent searches share one trip to the encoder.

Continuous batching: when the encoder is idle, a query is encoded at once, with whatever else
is already queued; queries that arrive while a batch is being encoded queue up and go
together as the next batch. So batches grow with load by themselves, and a query at low
load never waits for company. ``wait_s`` > 0 adds a bounded wait for more queries before
each batch (fewer, larger batches at the cost of that much latency). Up to ``lanes`` batches
run at once, each on its own executor thread: a batch is encoded and then searched (BM25,
fusion, the ANN index), and with one lane the next batch could not start encoding until the
last one's searches were done, leaving all but one core idle under load. A batch shares the
trip to the encoder only, where the query tower gains from it; each request is then searched
at its own k (``Engine.search_jobs``), so its results never depend on what else was in the
batch, and a batch's requests are answered together once its last is searched. Where a batch
fails, each of its requests is searched again alone, so one request's error is its own.
Requests of one mode and partition share a batch.

The queue is bounded (``max_queued`` requests): past that, a request is refused at once
(``Overloaded``: the service answers 503) rather than waiting behind work it would time out
on. A request whose caller has gone (cancelled) while queued is dropped, never encoded,
nor counted against the bound. When
the batcher stops (the service shuts down), every request still queued or in a batch, and any
that arrives later, is answered ``ShuttingDown`` (a 503 too), never left waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import TypeVar

from aisle.errors import AisleError
from aisle.retrieval.config import Mode
from aisle.serving.engine import Answer, Ask, Engine

log = logging.getLogger(__name__)


class Overloaded(AisleError):
    """The encoder's queue is full; the caller should retry shortly."""


class ShuttingDown(Overloaded):
    """The batcher has stopped: the caller should retry (against this service once it is back,
    or another replica)."""

    def __init__(self) -> None:
        super().__init__("the service is shutting down; retry shortly")


T = TypeVar("T")


def on_thread(executor: Executor, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """``fn(*args)`` run on one of ``executor``'s threads, as ``loop.run_in_executor``; but
    where the executor refuses new work, shut down with the service (a request already past
    its dependencies can still get here), ``ShuttingDown`` (a 503), not a 500."""
    try:
        return asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    except RuntimeError as e:  # submit(): "cannot schedule new futures after shutdown"
        raise ShuttingDown() from e


@dataclass
class _Job:
    ask: Ask  # its mode resolved
    future: asyncio.Future[Answer] = field(repr=False)


class MicroBatcher:
    def __init__(self, engine: Engine, executor: Executor, wait_s: float, max_items: int,
                 max_queued: int = 512, lanes: int = 1,
                 sizing: Callable[[], tuple[int, int]] | None = None) -> None:
        """``sizing``: ``(max_items, lanes)`` for the index served now, read before each batch
        (the service's: a reload onto a model of another runtime changes them)."""
        _check_sizes(max_items, lanes)
        if max_queued < 1:
            raise AisleError(f"batch_queue_max must be >= 1, got {max_queued}")
        self.engine = engine
        self.executor = executor
        self.wait_s = wait_s
        self.max_items = max_items
        self.lanes = lanes
        self.sizing = sizing
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queued)
        self.batch_sizes: list[int] = []  # recent encoder batch sizes, for tests and metrics
        self.stopped = False
        # A job that would have taken the last batch past max_items: the next batch's first.
        self._held: _Job | None = None

    async def search(self, ask: Ask, mode: Mode) -> Answer:
        """``ask`` searched in ``mode`` (its own, or the index's default) with the encoder."""
        if self.stopped:
            raise ShuttingDown()
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        job = _Job(replace(ask, mode=mode), future)
        if self._waiting() >= self.queue.maxsize:
            self._drop_gone()  # requests whose callers left wait for nothing: not counted
        if self._waiting() >= self.queue.maxsize:
            raise Overloaded(
                f"the search queue is full ({self.queue.maxsize} requests waiting for the "
                "encoder); retry shortly"
            )
        self.queue.put_nowait(job)
        return await future

    def _waiting(self) -> int:
        """The requests waiting for a batch: those queued and a held one (``max_queued``
        bounds them all)."""
        held = self._held is not None and not self._held.future.done()
        return self.queue.qsize() + held

    def _drop_gone(self) -> None:
        """Take the jobs whose callers have left (disconnected, timed out) off the queue, the
        rest kept in order (on the event loop, between awaits: nothing else takes a turn)."""
        queued = [self.queue.get_nowait() for _ in range(self.queue.qsize())]
        for job in queued:
            if not job.future.done():
                self.queue.put_nowait(job)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._resize()
                # A lane first: queries keep queueing into the next batch meanwhile.
                while len(running) >= self.lanes:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                groups = await self._next_batch(loop)
                task = asyncio.create_task(self._run_batch(groups))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            self.stopped = True
            for task in running:
                task.cancel()  # each fails its own jobs (_run_batch)
            if self._held is not None:
                _fail(self._held, ShuttingDown())
                self._held = None
            while not self.queue.empty():
                _fail(self.queue.get_nowait(), ShuttingDown())

    def _resize(self) -> None:
        """The batch size and lanes ``sizing`` gives for the index served now; the sizes
        before are kept, and the error logged, where it fails (the batcher must go on)."""
        if self.sizing is None:
            return
        try:
            max_items, lanes = self.sizing()
            if (max_items, lanes) == (self.max_items, self.lanes):
                return
            _check_sizes(max_items, lanes)
        except Exception:
            log.exception("micro-batch sizes unchanged (up to %d queries, %d at once)",
                          self.max_items, self.lanes)
            return
        log.info("micro-batches now: up to %d queries, %d at once (the index served changed)",
                 max_items, lanes)
        self.max_items, self.lanes = max_items, lanes

    async def _next_batch(self, loop: asyncio.AbstractEventLoop
                          ) -> dict[tuple[Mode, str | None, str], list[_Job]]:
        """The next batch: the first live job (taken whole, however many queries it holds)
        and the jobs queued behind it that fit in ``max_items`` queries (waiting ``wait_s``
        for more), grouped by mode, partition and filter. A job that does not fit is held as
        the next batch's first: a query queued before a batch request of many does not wait
        for all of theirs to be encoded and searched."""
        while True:
            if self._held is not None:
                first, self._held = self._held, None
            else:
                first = await self.queue.get()
            if not first.future.done():  # else its caller left (disconnect, timeout)
                break
        self._resize()  # the index may have changed while this batch waited for its first
        jobs = [first]
        while not self.queue.empty() and _queries(jobs) < self.max_items:
            if not self._gather(self.queue.get_nowait(), jobs):  # arrived while lanes were busy
                break
        deadline = loop.time() + self.wait_s
        while self.wait_s > 0 and _queries(jobs) < self.max_items:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                job = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before 3.11
                break
            except asyncio.CancelledError:  # stopped while gathering: these are off the queue
                for gathered in jobs:
                    _fail(gathered, ShuttingDown())
                raise
            if not self._gather(job, jobs):
                break
        groups: dict[tuple[Mode, str | None, str], list[_Job]] = {}
        for job in jobs:
            assert job.ask.mode is not None  # resolved by search()
            key = (job.ask.mode, job.ask.partition, job.ask.filter_key)
            groups.setdefault(key, []).append(job)
        return groups

    def _gather(self, job: _Job, jobs: list[_Job]) -> bool:
        """Add ``job`` to the batch ``jobs`` if its caller still waits and it fits in
        ``max_items`` queries; one that does not fit is held as the next batch's first.
        False: the batch is full."""
        if job.future.done():  # its caller left (disconnect, timeout)
            return True
        if _queries(jobs) + len(job.ask.texts) > self.max_items:
            self._held = job
            return False
        jobs.append(job)
        return True

    async def _run_batch(self, groups: dict[tuple[Mode, str | None, str], list[_Job]]
                         ) -> None:
        try:
            for (mode, _, _), group in groups.items():
                await self._run_group(mode, group)
        except asyncio.CancelledError:  # the batcher stops: its callers are told so
            for group in groups.values():
                for job in group:
                    _fail(job, ShuttingDown())
            raise
        except Exception as e:  # a bug past the engine's own errors: no caller waits forever
            log.exception("a search batch failed")
            for group in groups.values():
                for job in group:
                    _fail(job, e)
        # Nor past another BaseException (SystemExit or KeyboardInterrupt ends the loop itself).
        finally:
            for group in groups.values():
                for job in group:
                    _fail(job, AisleError("the search failed; see the service's log"))

    async def _run_group(self, mode: Mode, group: list[_Job]) -> None:
        """``group``'s requests searched together and answered together. Where that fails and
        the group holds more than one request, each is searched again alone, so one
        request's error reaches its own caller only."""
        group = [job for job in group if not job.future.done()]  # gone while others ran
        if not group:
            return
        self.batch_sizes = [*self.batch_sizes[-99:], _queries(group)]
        outcomes: list[Answer | Exception]
        try:
            outcomes = list(await on_thread(self.executor, self.engine.search_jobs,
                                            [job.ask for job in group], mode))
        except Exception as e:
            if len(group) == 1 or isinstance(e, ShuttingDown):  # nothing to tell apart
                outcomes = [e] * len(group)
            else:
                log.warning("a batch of %d failed; searching each of its requests alone",
                            len(group), exc_info=e)
                try:
                    outcomes = await on_thread(self.executor, self._each_alone, group, mode)
                except Exception as again:  # each waiting request gets it, the loop goes on
                    outcomes = [again] * len(group)
        for job, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _fail(job, outcome)
            else:
                _settle(job, outcome)

    def _each_alone(self, group: list[_Job], mode: Mode) -> list[Answer | Exception]:
        """On an executor thread: each request of ``group`` searched on its own, its answer
        or its own error (a request whose caller has left meanwhile is not searched again)."""
        outcomes: list[Answer | Exception] = []
        for job in group:
            if job.future.done():  # read from this thread: at worst a search for nobody
                outcomes.append(AisleError("its caller left"))
                continue
            try:
                outcomes.append(self.engine.search_jobs([job.ask], mode)[0])
            except Exception as e:
                outcomes.append(e)
        return outcomes


def _check_sizes(max_items: int, lanes: int) -> None:
    if max_items < 1:
        raise AisleError(f"batch_max must be >= 1 here (0 is resolved before), got {max_items}")
    if lanes < 1:
        raise AisleError(f"batch lanes must be >= 1, got {lanes}")


def _queries(jobs: list[_Job]) -> int:
    """The queries in a batch (a batch request's count as many)."""
    return sum(len(job.ask.texts) for job in jobs)


def _settle(job: _Job, answer: Answer) -> None:
    if not job.future.done():  # else its caller left, or the batcher stopped
        job.future.set_result(answer)


def _fail(job: _Job, error: BaseException) -> None:
    if not job.future.done():  # else answered, or its caller left
        job.future.set_exception(error)
