"""Data layer: canonical schema, CSV loading with validation, parquet preparation, importers."""

from __future__ import annotations

from aisle.data.dataset import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
