"""Finished results of one index snapshot, by (searched text, k, mode, partition, filter): the
hits, and how many first-stage products the cross-encoder re-ranked for them.

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

# (searched text, k, mode, partition, filter key: "" for none)
Key = tuple[str, int, Mode, str | None, str]
# A hit as plain values: a tuple of strings and a float, which the cyclic garbage collector
# stops tracking, so a full cache adds nothing to the collector's pauses (a Hit object would
# add one tracked object per result, 200,000 for a full cache at k = 10: tens of ms a pass).
Row = tuple[str, str, float]


class ResultCache:
    """An LRU of ``size`` entries (0: nothing is kept); safe across threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        # (hits, products re-ranked: fewer than the depth where fewer candidates were found)
        self._data: OrderedDict[Key, tuple[tuple[Row, ...], int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key) -> tuple[list[Hit], int] | None:
        """The hits kept for ``key`` and how many products were re-ranked for them."""
        if not self.size:
            return None
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            self._data.move_to_end(key)
        rows, reranked = entry
        return [Hit(*row) for row in rows], reranked

    def put(self, key: Key, hits: Sequence[Hit], reranked: int = 0) -> None:
        if not self.size:
            return
        with self._lock:
            self._data[key] = (tuple((h.product_id, h.title, h.score) for h in hits), reranked)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
