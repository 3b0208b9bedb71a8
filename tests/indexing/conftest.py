"""Small catalogs for index-build tests: several parquet blocks, edits between two days."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import aisle.data.dataset as dataset
from aisle.data.synthetic import write_sample
from aisle.towers.model import TwoTowerModel

BLOCK = 40  # products per parquet row group in these catalogs: 120 products = 3 blocks


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """120 synthetic products, two of three in a partition (store-1 or store 2)."""
    src = write_sample(tmp_path_factory.mktemp("cat") / "src", n_products=120, seed=3)
    products = pd.read_csv(src / "products.csv", dtype=str, keep_default_na=False)
    stores = np.array(["store-1", "store 2", ""])
    return products.assign(partition=stores[np.arange(len(products)) % 3])


@pytest.fixture
def prepare_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[pd.DataFrame, str], Path]:
    """Write ``products`` as a prepared dataset whose parquet has blocks of ``BLOCK`` rows."""
    monkeypatch.setattr(dataset, "ROW_GROUP_SIZE", BLOCK)

    def write(products: pd.DataFrame, name: str) -> Path:
        csv = tmp_path / f"{name}-csv"
        csv.mkdir()
        products.to_csv(csv / "products.csv", index=False)
        return dataset.prepare(csv, tmp_path / name)

    return write


def edited(products: pd.DataFrame) -> pd.DataFrame:
    """The next day's catalog: 5 titles changed, 4 products deleted, 6 new ones added."""
    out = products.copy()
    out.loc[[3, 17, 50, 81, 110], "title"] += " (new model)"
    out = out.drop(index=[8, 9, 60, 99])
    new = products.iloc[:6].assign(
        product_id=[f"n{i:03d}" for i in range(6)],
        title=[f"brand new thing {i} garden hose" for i in range(6)],
    )
    return pd.concat([out, new], ignore_index=True)


class CountingEncoder:
    """Wraps a tower's ``encode`` to count the texts it is asked to embed."""

    def __init__(self, model: TwoTowerModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        inner = model.product.encode

        def encode(texts: Sequence[str], progress: bool = False) -> torch.Tensor:
            self.texts.extend(texts)
            return inner(texts, progress)

        monkeypatch.setattr(model.product, "encode", encode)


@pytest.fixture
def counting(base_model: TwoTowerModel, monkeypatch: pytest.MonkeyPatch) -> CountingEncoder:
    return CountingEncoder(base_model, monkeypatch)


def tune(index_dir: Path, weight: float, fingerprint: str | None = None) -> None:
    """What ``aisle tune-fusion`` writes, and (``fingerprint``) an index of another model."""
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["fusion"] = {**manifest["fusion"], "weight": weight}
    manifest["fusion_tuning"] = {"split": "dev", "metric": "ndcg@10", "metrics": {}}
    if fingerprint is not None:
        manifest["model"]["fingerprint"] = fingerprint
    path.write_text(json.dumps(manifest))
