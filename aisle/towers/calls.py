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

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """The cores this process may use: those it may run on (its CPU affinity), no more than a
    cgroup CPU quota allows (a container's CPU limit, rounded up), at least one."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, math.ceil(limit))) if limit is not None else cores


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"),
                     membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs a second this process's cgroups allow (quota / period; the tightest along the
    path from its cgroup up to the hierarchy's root), or None when none is set or it cannot
    be read. cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``).
    Without this, a container limited to 2 CPUs on a 64-core host would start 64 workers
    that the kernel then throttles."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: one unified hierarchy
            limits += _walk_up(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    limits += _walk_up(mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _walk_up(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """``read`` of each cgroup directory from ``mount``/``path`` up to ``mount``; a container
    whose view of the hierarchy starts at its own cgroup sees ``path`` missing and reads from
    ``mount``."""
    here = mount / path.strip("/")
    if not here.is_dir():
        here = mount
    found = []
    while True:
        limit = read(here)
        if limit is not None:
            found.append(limit)
        if here == mount or mount not in here.parents:
            return found
        here = here.parent


def _v2_limit(cgroup: Path) -> float | None:
    """``cpu.max`` is "QUOTA PERIOD", QUOTA "max" for none."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _ratio(quota, period)
    except (OSError, ValueError):
        return None


def _v1_limit(cgroup: Path) -> float | None:
    """``cpu.cfs_quota_us`` (-1 for none) over ``cpu.cfs_period_us``."""
    try:
        return _ratio((cgroup / "cpu.cfs_quota_us").read_text(),
                      (cgroup / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    q, p = int(quota), int(period)
    return q / p if q > 0 and p > 0 else None


def split_threads(per_call: int, threads: int) -> tuple[int, int]:
    """(intra-op threads for the session, workers) for a graph run ``per_call`` items a call on
    ``threads`` threads (0: one per core): one-item calls run single-threaded on ``threads``
    workers; batched calls on ``threads`` intra-op threads, from one worker."""
    return (1, threads) if per_call == 1 else (threads, 1)


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
