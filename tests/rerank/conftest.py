"""The tiny cross-encoder's config; the fixture that trains it once is in tests/conftest.py
(training's distillation tests use it as a teacher too)."""

from __future__ import annotations

from aisle.rerank.config import RerankTrainConfig

TINY = RerankTrainConfig(batch_size=8, depth=10, negatives_from=2, negatives_to=10,
                         unjudged_negatives=2, max_train_queries=16, max_dev_queries=8,
                         checkpoint_every=3, weights=(0.5, 0.9), export_int8=False)
# No weight 0 in its grid: 8 dev queries may well prefer the first stage, and a cross-encoder of
# weight 0 re-ranks nothing (aisle.retrieval.retriever.Retriever.rerank_depth), while the tests
# that use it re-rank.
