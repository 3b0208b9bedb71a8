"""Finished results of one index snapshot, by (searched text, k, mode, partition).

A search is a pure function of the snapshot and the prepared query, so its hits can be kept
for as long as the snapshot serves: a reload starts a new snapshot with an empty cache, and a
stale result can never be served. Head queries are most traffic (ITEMS: over 95% of searches
hit its caches), and for them hybrid mode then costs what dense mode does: a lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from aisle.retrieval.config import Mode
from aisle.retrieval.store import Hit

Key = tuple[str, int, Mode, str | None]


class ResultCache:
    """An LRU of ``size`` entries (0: nothing is kept); safe across threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Key, Sequence[Hit]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key) -> Sequence[Hit] | None:
        if not self.size:
            return None
        with self._lock:
            hits = self._data.get(key)
            if hits is not None:
                self._data.move_to_end(key)
            return hits

    def put(self, key: Key, hits: Sequence[Hit]) -> None:
        if not self.size:
            return
        with self._lock:
            self._data[key] = tuple(hits)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
