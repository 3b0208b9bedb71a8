"""Offline index builds: embed the catalog, write a FAISS index as a self-describing artifact."""

from __future__ import annotations

from aisle.indexing.build import build_index, build_version
from aisle.indexing.config import IndexConfig
from aisle.indexing.store import ProductIndex, load_index

__all__ = ["IndexConfig", "ProductIndex", "build_index", "build_version", "load_index"]
