"""Autocomplete: whole-query suggestions from a query log and the catalog, typo tolerant,
with greedy semantic de-duplication on query-tower embeddings."""

from __future__ import annotations

from aisle.autocomplete.config import AutocompleteConfig, PairsConfig
from aisle.autocomplete.dedup import greedy_dedup

__all__ = ["AutocompleteConfig", "PairsConfig", "greedy_dedup"]
