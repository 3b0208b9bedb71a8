"""Autocomplete: whole-query suggestions from a query log and the catalog, typo tolerant,
with greedy semantic de-duplication on query-tower embeddings."""
