"""The online retrieval service: FastAPI app factory, query-embedding cache, search engine."""

from __future__ import annotations
