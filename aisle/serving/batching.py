"""Micro-batching: concurrent searches share one encoder call.

Continuous batching: when the encoder is idle, a query is encoded at once, with whatever else
is already queued; queries that arrive while a batch is being encoded queue up and go
together as the next batch. So batches grow with load by themselves, and a query at low
load never waits for company. ``wait_s`` > 0 adds a bounded wait for more queries before
each batch (fewer, larger batches at the cost of that much latency).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field

from aisle.indexing.config import Mode
from aisle.indexing.store import Hit
from aisle.serving.engine import Engine

log = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: list[str]
    k: int
    mode: Mode
    partition: str | None
    future: asyncio.Future[tuple[list[list[Hit]], str]] = field(repr=False)


class MicroBatcher:
    def __init__(self, engine: Engine, executor: Executor, wait_s: float, max_items: int) -> None:
        self.engine = engine
        self.executor = executor
        self.wait_s = wait_s
        self.max_items = max_items
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.batch_sizes: list[int] = []  # recent encoder batch sizes, for tests and metrics

    async def search(
        self, texts: list[str], k: int, mode: Mode, partition: str | None
    ) -> tuple[list[list[Hit]], str]:
        future: asyncio.Future[tuple[list[list[Hit]], str]] = (
            asyncio.get_running_loop().create_future()
        )
        await self.queue.put(_Job(texts, k, mode, partition, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0].texts)  # queries in this batch so far
            while not self.queue.empty() and size < self.max_items:
                jobs.append(self.queue.get_nowait())  # arrived while the last batch ran
                size += len(jobs[-1].texts)
            deadline = loop.time() + self.wait_s
            while self.wait_s > 0 and size < self.max_items:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:  # not the builtin TimeoutError before 3.11
                    break
                size += len(jobs[-1].texts)
            groups: dict[tuple[Mode, str | None], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.mode, job.partition), []).append(job)
            for (mode, partition), group in groups.items():
                await self._run_group(loop, mode, partition, group)

    async def _run_group(self, loop: asyncio.AbstractEventLoop, mode: Mode,
                         partition: str | None, group: list[_Job]) -> None:
        texts = [t for job in group for t in job.texts]
        k = max(job.k for job in group)
        self.batch_sizes = [*self.batch_sizes[-99:], len(texts)]
        try:
            hits, version = await loop.run_in_executor(
                self.executor, self.engine.search, texts, k, mode, partition
            )
        except Exception as e:  # each waiting request gets the error, the loop keeps going
            for job in group:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        start = 0
        for job in group:
            rows = [row[: job.k] for row in hits[start : start + len(job.texts)]]
            start += len(job.texts)
            if not job.future.done():
                job.future.set_result((rows, version))
