"""The embedding step as a Ray Data job (``aisle index --engine ray``).

``RayEncoder(model)(texts)`` runs ``ray.data.from_pandas`` -> ``map_batches(ProductEmbedder)``:
a pool of actors, each loading the product tower once (by the model's ref and tower config)
and encoding batches of texts. Rows carry their position, so the vectors come back in input
order whatever order Ray finishes them in. Ray connects to the cluster ``ray.init()`` finds
(``RAY_ADDRESS``), or starts a local one; call ``ray.init(...)`` yourself first to choose.
Only this module imports ray: the local engine never does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from aisle.configs import from_dict, to_dict
from aisle.errors import AisleError
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)

# Texts per Ray batch: large enough to amortise scheduling, small enough to stream.
RAY_BATCH = 256


class ProductEmbedder:
    """Ray Data UDF holding the product tower; ``__call__`` maps a batch of texts to vectors."""

    def __init__(self, ref: str, tower_config: dict[str, Any], fingerprint: str) -> None:
        from aisle.towers.config import TowerConfig
        from aisle.towers.model import load_model

        self.model = load_model(ref, from_dict(TowerConfig, tower_config))
        if self.model.fingerprint != fingerprint:
            raise AisleError(
                f"the Ray worker loaded model {ref} with fingerprint {self.model.fingerprint}, "
                f"not {fingerprint}: the workers must see the same model directory"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.product.encode([str(t) for t in batch["text"]]).numpy()
        return {"pos": batch["pos"], "vector": vectors.astype(np.float32)}


class RayEncoder:
    """``encoder(texts) -> (n, D)`` float32, computed by a Ray Data actor pool."""

    def __init__(self, model: TwoTowerModel, actors: int = 1) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        self.args = (model.ref, to_dict(model.config), model.fingerprint)
        self.dim = model.dim
        self.actors = actors

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import ray.data

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        frame = pd.DataFrame({"pos": np.arange(len(texts)), "text": list(texts)})
        out = ray.data.from_pandas(frame).map_batches(
            ProductEmbedder,
            fn_constructor_args=self.args,
            batch_size=RAY_BATCH,
            batch_format="numpy",
            concurrency=self.actors,
        )
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        seen = 0
        for batch in out.iter_batches(batch_format="numpy", batch_size=None):
            vectors[batch["pos"]] = batch["vector"]
            seen += len(batch["pos"])
        if seen != len(texts):
            raise AisleError(f"the Ray job returned {seen} vectors for {len(texts)} texts")
        return vectors
