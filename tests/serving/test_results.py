"""The per-snapshot cache of finished results, bounded by the result rows it holds."""

from __future__ import annotations

from aisle.retrieval.store import Hit
from aisle.serving.config import ServeConfig
from aisle.serving.results import Key, ResultCache


def key(text: str, k: int = 10) -> Key:
    return (text, k, "hybrid", None, "")


def hits(n: int) -> list[Hit]:
    return [Hit(f"p{i}", f"title {i}", 1.0 - i / 100) for i in range(n)]


def test_it_keeps_at_most_its_rows_evicting_the_least_recently_used() -> None:
    cache = ResultCache(25)  # 20,000 entries at k = 1,000 held 20 million rows
    cache.put(key("a"), hits(10))
    cache.put(key("b"), hits(10))
    assert cache.get(key("a")) is not None  # b is now the least recently used
    cache.put(key("c"), hits(10))
    assert [cache.get(key(t)) is not None for t in "abc"] == [True, False, True]
    assert (len(cache), cache.rows) == (2, 20)
    cache.put(key("d"), hits(24))  # evicts both
    assert [cache.get(key(t)) is not None for t in "acd"] == [False, False, True]
    assert (len(cache), cache.rows) == (1, 24)


def test_an_entry_larger_than_the_bound_is_not_kept_and_evicts_nothing() -> None:
    cache = ResultCache(25)
    cache.put(key("a"), hits(10))
    cache.put(key("big", 1000), hits(26))
    assert cache.get(key("big", 1000)) is None
    assert cache.get(key("a")) == (hits(10), 0)
    assert (len(cache), cache.rows) == (1, 10)


def test_an_entry_without_hits_counts_one_row_and_a_replaced_one_is_not_counted_twice() -> None:
    cache = ResultCache(3)
    for text in "abcd":  # no hits: still a key held
        cache.put(key(text), [])
    assert (len(cache), cache.rows) == (3, 3) and cache.get(key("a")) is None
    cache.put(key("d"), hits(2), reranked=2)  # the same key again: replaced
    assert (len(cache), cache.rows) == (2, 3)
    assert cache.get(key("d")) == (hits(2), 2)


def test_zero_keeps_nothing_and_the_default_keeps_20000_entries_at_k_10() -> None:
    off = ResultCache(0)
    off.put(key("a"), hits(1))
    assert off.get(key("a")) is None and len(off) == 0
    assert ServeConfig().result_cache_rows == 20_000 * ServeConfig().default_k
