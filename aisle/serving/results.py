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
# add one tracked object per result, 200,000 for a full cache: tens of ms a pass).
Row = tuple[str, str, float]


class ResultCache:
    """An LRU holding at most ``max_rows`` result rows in all (0: nothing is kept), so that
    its memory is bounded whatever the k: an entry counts its hits, one when it has none (its
    key still takes room). An entry of more rows than that is not kept. Safe across threads."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows = 0  # rows held now, as counted against max_rows
        # (hits, products re-ranked: fewer than the depth where fewer candidates were found)
        self._data: OrderedDict[Key, tuple[tuple[Row, ...], int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key) -> tuple[list[Hit], int] | None:
        """The hits kept for ``key`` and how many products were re-ranked for them."""
        if not self.max_rows:
            return None
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            self._data.move_to_end(key)
        rows, reranked = entry
        return [Hit(*row) for row in rows], reranked

    def put(self, key: Key, hits: Sequence[Hit], reranked: int = 0) -> None:
        if _rows(hits) > self.max_rows:  # off (0), or it would evict all the rest, then itself
            return
        entry = (tuple((h.product_id, h.title, h.score) for h in hits), reranked)
        with self._lock:
            replaced = self._data.pop(key, None)
            if replaced is not None:
                self.rows -= _rows(replaced[0])
            self._data[key] = entry
            self.rows += _rows(entry[0])
            while self.rows > self.max_rows:  # the least recently used first
                _, (evicted, _) = self._data.popitem(last=False)
                self.rows -= _rows(evicted)


def _rows(hits: Sequence[object]) -> int:
    """The rows an entry of ``hits`` counts against the bound."""
    return max(1, len(hits))
