"""Training pairs: (query text, product text) positives of the train split, with keys for
accidental-hit masking."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aisle.data.dataset import Dataset
from aisle.errors import DataError
from aisle.towers.config import TowerConfig
from aisle.towers.text import product_texts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pairs:
    queries: list[str]
    products: list[str]
    query_keys: np.ndarray  # int64, equal for equal (normalised) query text
    product_keys: np.ndarray  # int64, equal for the same product

    def __len__(self) -> int:
        return len(self.queries)


@dataclass(frozen=True)
class Batch:
    queries: list[str]
    products: list[str]
    query_keys: torch.Tensor
    product_keys: torch.Tensor


def positive_pairs(
    ds: Dataset, min_grade: float, tower: TowerConfig, max_pairs: int = 0, seed: int = 0
) -> Pairs:
    """Judged (query, product) pairs of the train split with ``grade >= min_grade``."""
    train = ds.queries[ds.queries["split"] == "train"]
    j = ds.judgments[ds.judgments["grade"] >= min_grade - 1e-9]
    j = j.merge(train[["query_id", "query"]], on="query_id")
    if j.empty:
        raise DataError(
            f"dataset {ds.name!r} has no train-split judgments with grade >= {min_grade}; "
            "lower min_grade or check the split column"
        )
    if max_pairs and len(j) > max_pairs:
        j = j.sample(n=max_pairs, random_state=seed)
    products = ds.products.set_index("product_id").loc[j["product_id"].unique()].reset_index()
    text = dict(
        zip(
            products["product_id"],
            product_texts(products, tower.product_fields, tower.max_description_chars),
            strict=True,
        )
    )
    normalised = j["query"].str.lower().str.split().str.join(" ")
    log.info(
        "%d positive pairs with grade >= %s over %d queries",
        len(j),
        min_grade,
        normalised.nunique(),
    )
    return Pairs(
        queries=j["query"].tolist(),
        products=[text[p] for p in j["product_id"]],
        query_keys=pd.factorize(normalised)[0].astype(np.int64),
        product_keys=pd.factorize(j["product_id"])[0].astype(np.int64),
    )


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled row indices for one epoch, cut into full batches (a ragged tail is dropped:
    a tiny last batch has too few negatives to be worth a step)."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    usable = (n // batch_size) * batch_size if n >= batch_size else n
    return [perm[i : i + batch_size] for i in range(0, usable, batch_size)]


def iter_batches(pairs: Pairs, order: list[np.ndarray], start: int = 0) -> Iterator[Batch]:
    for rows in order[start:]:
        yield Batch(
            queries=[pairs.queries[i] for i in rows],
            products=[pairs.products[i] for i in rows],
            query_keys=torch.from_numpy(pairs.query_keys[rows]),
            product_keys=torch.from_numpy(pairs.product_keys[rows]),
        )
