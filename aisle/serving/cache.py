"""Query-embedding caches: an in-process LRU and Redis, behind one small interface.

Keys hold the model fingerprint, so a new model never reads an old model's vectors, and
the exact text that was encoded, so a query never reads another text's vector. Redis
failures never reach the caller: they are counted, the call falls back to a miss, and Redis is
skipped for a short back-off before it is tried again (writes only, where Redis refused a write
but answered: reads still work).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


# Bumped whenever what a key stands for changes, so no entry written under an older scheme is
# ever read as a match. v2: the key is the exact text the encoder was given (v1 keyed a
# case-folded text while the encoder read it as typed, so variants shared a wrong vector).
# v3: int8 query towers encode one text a call (``towers/onnx.py``); a v2 int8 vector
# depended on the queries encoded with it.
KEY_VERSION = "v3"


def cache_key(model: str, text: str) -> str:
    """The key of ``text``'s vector from ``model`` (fingerprint and runtime); ``text`` must be
    exactly what the encoder is given (``aisle.retrieval.querytext.prepare``)."""
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"aisle:qemb:{KEY_VERSION}:{model}:{digest}"


class QueryCache(Protocol):
    @property
    def errors(self) -> int: ...

    @property
    def has_remote(self) -> bool:
        """True when a lookup may leave the process (Redis): then it must not run on the
        event loop."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]: ...

    def get_local(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """``get_many`` on the in-process tier only: no I/O, safe on the event loop."""
        ...

    def set_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None: ...

    def close(self) -> None:
        """Let go of any connection (the service's shutdown)."""
        ...


class LRUCache:
    has_remote = False

    def __init__(self, size: int) -> None:
        self.size = size
        self.errors = 0
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                value = self._data.get(key)
                if value is not None:
                    self._data.move_to_end(key)
                out.append(value)
        return out

    get_local = get_many

    def close(self) -> None:
        pass

    def set_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        with self._lock:
            for key, value in items:
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def _decoded(value: object) -> np.ndarray:
    """A stored vector; bytes that are not float32s (another writer, a truncated value), or a
    value that is no bytes at all, come back empty, which the engine's shape check refuses,
    counts and overwrites."""
    if not isinstance(value, bytes) or len(value) % 4:
        return np.empty(0, dtype=np.float32)
    return np.frombuffer(value, dtype=np.float32)


class RedisCache:
    """Redis with short timeouts, pipelined batches and a back-off after errors: after a
    failure to reach Redis (connection, timeout), on a read or a write, both are skipped for
    ``backoff_s``; after a write Redis refused with an error reply (out of memory under
    ``maxmemory`` with ``noeviction``, a read-only replica), writes only, as reads still work.
    """

    has_remote = True

    def __init__(self, url: str, ttl_s: int, timeout_s: float, backoff_s: float) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        # Vectors are stored as bytes. A URL's decode_responses=true (which overrides keyword
        # arguments) made redis-py decode each reply as UTF-8: almost every read failed and
        # counted as Redis being down, so the tier never served. Replies stay bytes here.
        pool = self.client.connection_pool
        if str(pool.connection_kwargs.get("decode_responses", "")).lower() in ("true", "1",
                                                                                "yes"):
            log.warning("ignoring decode_responses in the Redis URL: the query-vector cache "
                        "stores bytes")
        pool.connection_kwargs["decode_responses"] = False
        self.ttl_s = ttl_s
        self.backoff_s = backoff_s
        self.errors = 0
        self._skip_reads_until = 0.0
        self._skip_writes_until = 0.0

    def _failed(self, e: Exception) -> None:
        """Count ``e``; skip reads and writes for the back-off."""
        self.errors += 1
        self._skip_reads_until = self._skip_writes_until = time.monotonic() + self.backoff_s
        log.warning("redis unavailable (%s); encoding online for %.1fs", e, self.backoff_s)

    def _write_failed(self, e: Exception) -> None:
        """Count ``e``; skip writes for the back-off, and reads too unless Redis answered."""
        from redis.exceptions import ResponseError

        if not isinstance(e, ResponseError):
            self._failed(e)
            return
        self.errors += 1
        self._skip_writes_until = time.monotonic() + self.backoff_s
        log.warning("redis refused a write (%s); not writing for %.1fs", e, self.backoff_s)

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        if not keys or time.monotonic() < self._skip_reads_until:
            return [None] * len(keys)
        try:
            raw = self.client.mget(list(keys))
        except Exception as e:  # any Redis or socket failure is a miss, never a failed request
            self._failed(e)
            return [None] * len(keys)
        return [None if r is None else _decoded(r) for r in raw]

    def get_local(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        return [None] * len(keys)

    def close(self) -> None:
        self.client.close()

    def set_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        if not items or time.monotonic() < self._skip_writes_until:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, np.asarray(value, dtype=np.float32).tobytes(), ex=self.ttl_s)
            pipe.execute()
        except Exception as e:
            self._write_failed(e)


class TieredCache:
    """LRU in front of Redis: hot queries never leave the process."""

    has_remote = True

    def __init__(self, local: LRUCache, remote: RedisCache) -> None:
        self.local = local
        self.remote = remote

    @property
    def errors(self) -> int:
        return self.remote.errors

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        out = self.local.get_many(keys)
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            found = self.remote.get_many([keys[i] for i in missing])
            back = [(keys[i], v) for i, v in zip(missing, found, strict=True) if v is not None]
            self.local.set_many(back)
            for i, v in zip(missing, found, strict=True):
                out[i] = v
        return out

    def get_local(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        return self.local.get_many(keys)

    def close(self) -> None:
        self.remote.close()

    def set_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        self.local.set_many(items)
        self.remote.set_many(items)
