"""Dense retrieval: embed queries with the query tower, search the product index."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from aisle.errors import AisleError
from aisle.indexing.store import Hit, ProductIndex
from aisle.towers.config import Backend
from aisle.towers.model import TwoTowerModel


def index_model(index: ProductIndex, ref: str | None = None,
                backend: Backend | None = None) -> TwoTowerModel:
    """The model an index was built with (or ``ref``), with the tower config it was built with;
    ``backend`` (torch, onnx-fp32, onnx-int8, auto) overrides how its towers run."""
    from aisle.configs import from_dict
    from aisle.towers.config import TowerConfig
    from aisle.towers.model import load_model

    saved = index.manifest["model"].get("tower_config")
    config = from_dict(TowerConfig, saved) if saved and ref is None else None
    return load_model(ref if ref is not None else index.model_ref, config, backend)


class DenseRetriever:
    """``retriever(texts, k) -> [[(product_id, score), ...], ...]`` over a loaded index."""

    def __init__(
        self,
        model: TwoTowerModel,
        index: ProductIndex,
        embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    ) -> None:
        """``embed`` replaces ``model.encode_query`` (the service embeds through its cache)."""
        index.check_model(model.fingerprint, model.ref)
        self.model = model
        self.index = index
        self.embed = embed or (lambda texts: model.encode_query(texts).numpy())

    def hits(self, texts: Sequence[str], k: int) -> list[list[Hit]]:
        if k < 1:
            raise AisleError(f"k must be >= 1, got {k}")
        if not texts:
            return []
        vectors = self.embed(texts)
        return self.index.search(vectors, k)

    def __call__(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        return [[(h.product_id, h.score) for h in row] for row in self.hits(texts, k)]
