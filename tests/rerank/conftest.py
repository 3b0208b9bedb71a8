"""A tiny cross-encoder trained once over the sample index (real model, real training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.rerank.config import RerankTrainConfig

TINY = RerankTrainConfig(batch_size=8, depth=10, negatives_from=2, negatives_to=10,
                         unjudged_negatives=2, max_train_queries=16, max_dev_queries=8,
                         checkpoint_every=3, weights=(0.0, 0.5, 0.9), export_int8=False)


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory: pytest.TempPathFactory, sample_data: Path,
                 sample_index: Path) -> Path:
    from aisle.rerank.train import train_reranker

    out = tmp_path_factory.mktemp("rerank") / "ce"
    train_reranker(sample_data, sample_index, out, TINY)
    return out
