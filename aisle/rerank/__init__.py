"""The cross-encoder teacher: training, export and loading (``aisle rerank``).

Query time (the re-ranking stage) lives in ``aisle.retrieval.rerank``.
"""
