"""One-item ONNX Runtime calls spread over worker threads.

An int8 graph runs one text (or one query-product pair) a call, so that an item's output never
depends on what shares its call (``aisle.towers.onnx.onnx_towers`` says why). A call that small
is too small to split across cores: ONNX Runtime's intra-op threads hand each operator's work
back and forth for less than the hand-off costs. Measured on the demo's models on two cores
(2026-12-05, docs/results.md): `aisle index build` over homedepot's 54,667 products took 102.8
s against 155.6 s on one session with two intra-op threads, the vectors bit for bit the same,
and bench/rerank.py's int8 cross-encoder 92.6 ms a query of 50 pairs against 153.5 ms.
So the items are split in order into contiguous chunks, a few per worker, each run call by call
on a shared single-threaded session (ONNX Runtime sessions take concurrent runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aisle.cores import available_cores, runtime_threads

T = TypeVar("T")
R = TypeVar("R")


def split_threads(per_call: int, threads: int) -> tuple[int, int]:
    """(intra-op threads for the session, workers) for a graph run ``per_call`` items a call on
    ``threads`` threads (0: one per core): one-item calls run single-threaded on ``threads``
    workers; batched calls on ``threads`` intra-op threads (0: ONNX Runtime's own count, or a
    CPU quota's), from one worker."""
    return (1, threads) if per_call == 1 else (threads or runtime_threads(), 1)


class CallWorkers:
    """``n`` threads (0: one per core) that run a list of items in contiguous chunks."""

    # Chunks a worker gets, about: a sorted list (longest text first) or one slow chunk still
    # spreads evenly, and an error or an interrupt stops the rest a chunk later.
    CHUNKS_PER_WORKER = 4

    def __init__(self, n: int = 0) -> None:
        if n < 0:
            raise ValueError(f"workers must be >= 0 (0: one per core), got {n}")
        self.n = n or available_cores()
        # Threads start on the first submission, so a pool that never runs costs nothing.
        self._pool = (ThreadPoolExecutor(self.n, thread_name_prefix="onnx-call")
                      if self.n > 1 else None)

    def map_parts(self, run: Callable[[Sequence[T]], R], items: Sequence[T]) -> list[R]:
        """``run`` over contiguous chunks of ``items`` (in order, together all of them); the
        results in the chunks' order. Few items, or one worker, run in the calling thread."""
        if self._pool is None or len(items) < 2:
            return [run(items)]
        size = -(-len(items) // (self.n * self.CHUNKS_PER_WORKER))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        return list(self._pool.map(run, chunks))
