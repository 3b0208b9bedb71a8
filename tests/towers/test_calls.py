"""CallWorkers: one-item calls spread over threads, results in order."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from aisle.cores import available_cores
from aisle.towers.calls import CallWorkers


def test_every_item_runs_once_in_order_whatever_the_workers() -> None:
    items = list(range(37))
    for n in (1, 2, 3, 50):
        workers = CallWorkers(n)
        parts = workers.map_parts(list, items)
        assert [x for part in parts for x in part] == items
        assert all(parts)  # no empty chunk
    assert CallWorkers(3).map_parts(list, [7]) == [[7]]
    assert CallWorkers(3).map_parts(list, []) == [[]]
    assert CallWorkers(0).n == available_cores() >= 1
    with pytest.raises(ValueError, match="workers must be >= 0"):
        CallWorkers(-1)


def test_the_chunks_run_on_the_workers_and_an_error_reaches_the_caller() -> None:
    seen: set[str] = set()
    started = threading.Barrier(2, timeout=10)

    def run(part: Sequence[int]) -> int:
        seen.add(threading.current_thread().name)
        if part[0] in (0, 1):
            started.wait()  # the first two chunks at once, or this times out
        return len(part)

    assert sum(CallWorkers(2).map_parts(run, list(range(8)))) == 8
    assert len(seen) == 2 and all(name.startswith("onnx-call") for name in seen)

    def fail(part: Sequence[int]) -> int:
        if 5 in part:
            raise RuntimeError("a bad item")
        return len(part)

    with pytest.raises(RuntimeError, match="a bad item"):
        CallWorkers(2).map_parts(fail, list(range(8)))

