"""Offline index builds: embed the catalog, write a FAISS index as a self-describing artifact."""

from __future__ import annotations

from aisle.indexing import _jax_cpu  # noqa: F401  (first: before anything imports bm25s)
from aisle.indexing.build import build_index, build_version
from aisle.indexing.config import IndexConfig
from aisle.indexing.store import ProductIndex, load_index

__all__ = ["IndexConfig", "ProductIndex", "build_index", "build_version", "load_index"]
