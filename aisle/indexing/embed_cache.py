"""Product embeddings cached by (model fingerprint, product-text hash).

A rebuild looks every product's text up here and encodes only the misses: new products, and
products whose text changed. One directory per model fingerprint holds append-only shards,
each a pair ``<shard>.keys.npy`` (``S32`` hex digests) and ``<shard>.vecs.npy`` (float32
``(n, D)``); the keys file is written last, so a vectors file without one is a killed
write's: loading the cache removes it (logged). A cache is written by one process at a time,
the build or update that holds its root's ``.build.lock``, so that file is no live
writer's. Vectors are memory-mapped, never loaded whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from aisle.artifacts import publish

log = logging.getLogger(__name__)

KEYS = ".keys.npy"
VECS = ".vecs.npy"

# How far from unit length a stored vector may be: the towers' outputs are unit vectors, and
# the index build refuses any other by the same check (ann._check_vectors).
UNIT_TOLERANCE = 1e-3


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``(n,)``: which rows are finite unit vectors, as the towers write them. A damaged file
    (zeroed, overwritten) holds others."""
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(vectors, axis=1)
    return np.isfinite(norms) & (np.abs(norms - 1.0) < UNIT_TOLERANCE)


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def text_hashes(texts: Sequence[str]) -> list[str]:
    return [text_hash(t) for t in texts]


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
    publish(tmp, path)


class EmbeddingCache:
    """``lookup(hashes) -> (vectors, hit mask)`` and ``add(hashes, vectors)`` for one model."""

    def __init__(self, root: Path, model_fingerprint: str, dim: int) -> None:
        self.dir = Path(root) / model_fingerprint
        self.dim = dim
        self._keys: pd.Index = pd.Index([], dtype=object)  # unique
        self._rows = np.array([], dtype=np.int64)  # each key's global row over the shards
        self._shards: list[tuple[int, np.ndarray]] = []  # (first global row, mmap vectors)
        self._load()

    def _load(self) -> None:
        self._remove_orphans()
        keys: list[np.ndarray] = []
        start = 0
        for path in sorted(self.dir.glob(f"*{KEYS}")) if self.dir.is_dir() else []:
            vecs_path = path.with_name(path.name[: -len(KEYS)] + VECS)
            try:
                k = np.load(path)
                v = np.load(vecs_path, mmap_mode="r")
            except (OSError, ValueError) as e:
                log.warning("skipping unreadable embedding-cache shard %s (%s)", path, e)
                continue
            if len(k) != len(v) or v.ndim != 2 or v.shape[1] != self.dim:
                log.warning("skipping inconsistent embedding-cache shard %s", path)
                continue
            keys.append(k.astype("U32"))
            self._shards.append((start, v))
            start += len(k)
        flat = pd.Index(np.concatenate(keys) if keys else np.array([], dtype="U32"), dtype=object)
        # A key stored twice keeps its last copy: two builds raced (the same vector anyway),
        # or the first copy was damaged and encoded again (``lookup``).
        last = ~flat.duplicated(keep="last")
        self._keys = flat[last]
        self._rows = np.flatnonzero(last)

    def _remove_orphans(self) -> None:
        """Delete the vectors files whose keys file was never written (a write killed
        between the two): no lookup reaches them, and nothing else would ever delete them."""
        for path in sorted(self.dir.glob(f"*{VECS}")) if self.dir.is_dir() else []:
            if not path.with_name(path.name[: -len(VECS)] + KEYS).exists():
                path.unlink(missing_ok=True)
                log.info("removed %s from the embedding cache %s: its keys were never "
                         "written (a killed write)", path.name, self.dir)

    def __len__(self) -> int:
        return len(self._keys)

    def _positions(self, hashes: Sequence[str]) -> np.ndarray:
        """Each hash's position among the cached keys, -1 where it is missing."""
        if not len(self._keys) or not len(hashes):
            return np.full(len(hashes), -1, dtype=np.intp)
        return self._keys.get_indexer(pd.Index(list(hashes), dtype=object))

    def holds(self, hashes: Sequence[str]) -> np.ndarray:
        """A boolean hit mask ``(n,)``, no vector read: ``lookup`` would allocate ``(n, D)``
        (15 GB for 10M 384-d products) to say the same."""
        return self._positions(hashes) >= 0

    def lookup(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors ``(n, D)`` (zeros where missing) and a boolean hit mask ``(n,)``."""
        out = np.zeros((len(hashes), self.dim), dtype=np.float32)
        found = self._positions(hashes)
        hit = found >= 0
        if not hit.any():
            return out, hit
        pos = np.where(hit, self._rows[found], -1)
        for first, vecs in self._shards:
            inside = (pos >= first) & (pos < first + len(vecs))
            if inside.any():
                out[inside] = vecs[pos[inside] - first]
        damaged = hit & ~unit_rows(out)
        if damaged.any():
            # Encoded again, not indexed (the build would refuse them, and would meet them
            # again on every run: --force reuses the cache).
            log.warning("%d cached vector(s) in %s are not unit vectors (a damaged shard?): "
                        "encoding those products again", int(damaged.sum()), self.dir)
            out[damaged] = 0.0
            hit = hit & ~damaged
            # Forgotten, so that ``add`` stores the new vectors (a later copy wins on load).
            kept = ~self._keys.isin(pd.Index(np.asarray(hashes, dtype=object)[damaged]))
            self._keys, self._rows = self._keys[kept], self._rows[kept]
        return out, hit

    def add(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Publish one new shard of the keys not cached yet; later lookups here see it too."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        assert vectors.shape == (len(hashes), self.dim), vectors.shape
        query = pd.Index(list(hashes), dtype=object)
        new = (self._keys.get_indexer(query) < 0) & ~query.duplicated()
        hashes, vectors = list(query[new]), vectors[new]
        if not hashes:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{secrets.token_hex(3)}"
        _save_npy(self.dir / f"{name}{VECS}", vectors)
        keys = np.array(list(hashes), dtype="S32")
        _save_npy(self.dir / f"{name}{KEYS}", keys)  # last: the shard now exists
        start = sum(len(v) for _, v in self._shards)
        self._shards.append((start, np.load(self.dir / f"{name}{VECS}", mmap_mode="r")))
        self._keys = self._keys.append(pd.Index(keys.astype("U32"), dtype=object))
        self._rows = np.concatenate([self._rows, start + np.arange(len(keys))])


def cache_key(model_fingerprint: str, runtime: str) -> str:
    """torch and int8 ONNX towers share a fingerprint (same weights) but not exact vectors:
    one cache per (weights, runtime: ``TwoTowerModel.runtime``, the backend and which int8
    export), so an index never mixes them. int8 has its own generation: before 2026-12-05 it
    encoded many products a call, and each vector depended on the products that shared its call
    (``towers/onnx.py``); those vectors are not reused."""
    suffix = "-percall" if runtime.startswith("onnx-int8") else ""
    return f"{model_fingerprint}-{runtime}{suffix}"
