"""Query time: load an index, prepare and spell-correct queries, retrieve dense, lexical or
hybrid. One path, used alike by ``aisle search``, evaluation, training's dev checks and the
service; ``aisle.indexing`` builds what it reads."""

from __future__ import annotations

from aisle.retrieval import _jax_cpu  # noqa: F401  (first: before anything imports bm25s)
