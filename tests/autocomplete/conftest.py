"""A small autocomplete artifact built once: the real homedepot queries that start like the
issue's examples when ../shared/data/homedepot exists, else a generated log holding them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from aisle.autocomplete.build import build_autocomplete
from aisle.autocomplete.config import AutocompleteConfig
from aisle.autocomplete.text import key
from aisle.data.dataset import Dataset, load_dataset
from aisle.data.synthetic import generate
from aisle.towers.model import TwoTowerModel
from tests.conftest import SHARED_DATA

HEADS = ("gla", "moen", "echo", "trimmer", "ridgid", "rigid")
# (query, judged products): the duplicates and near misses, popularity by judgments.
GENERATED = [
    ("glaciar bay toiled", 12), ("glacier bay toilets", 12), ("glacier bay toilet handle", 6),
    ("glacier bay vanity", 5), ("glacier bay tub faucet", 7), ("glass storm doors", 14),
    ("glass shower door", 9), ("GLACIER BAY BATHROOM VANITY", 9), ("moen shower faucet", 11),
    ("moen dhower faucet", 13), ("moen showerhead", 5), ("moen kitchen faucet", 8),
    ("echo trimmers", 11), ("trimmer echo", 7), ("ridgid 12 volt", 13), ("rigid 12 volt", 8),
    ("Crème brûlée torch", 3), ("glacier bay one pice flapper", 14),
]
SMALL = AutocompleteConfig(max_catalog=200)


def generated_dataset() -> Dataset:
    tables = generate(n_products=300, n_queries=10, seed=0)
    products = tables["products"]
    # Each word of the log in 3+ titles (or the tokenizer's vocabulary), as in a real catalog,
    # so that cleaning keeps every query but the misspelt "pice" one.
    titles = ["Glacier Bay 2-piece Toilet", "Glacier Bay Toilet Seat", "Moen Shower Faucet",
              "Moen Shower Faucet Trim", "ECHO String Trimmer", "ECHO Gas Trimmer",
              "ECHO Hedge Trimmer", "Moen Showerhead", "Moen Eco Showerhead",
              "Delta Showerhead", "RIDGID 12 Volt Drill", "RIDGID 12 Volt Battery",
              "Ryobi 12 Volt Driver", "Bernzomatic Crème Brûlée Torch",
              "Crème Brûlée Torch Kit", "Kitchen Crème Brûlée Torch"]
    extra = pd.DataFrame({
        "product_id": [f"x{i}" for i in range(len(titles))], "title": titles,
        "description": "", "brand": "", "category": "",
    })
    products = pd.concat([products, extra], ignore_index=True)
    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(len(GENERATED))],
                            "query": [q for q, _ in GENERATED], "split": "train"})
    ids = products["product_id"].tolist()
    rows = [(f"q{i}", ids[j], 2.0, "3") for i, (_, n) in enumerate(GENERATED) for j in range(n)]
    judgments = pd.DataFrame(rows, columns=["query_id", "product_id", "grade", "raw_label"])
    return Dataset(products, queries, judgments, name="generated")


def homedepot_subset() -> Dataset:
    ds = load_dataset(SHARED_DATA / "homedepot")
    keep = ds.queries["query"].map(key).str.startswith(HEADS)
    queries = ds.queries[keep].reset_index(drop=True)
    judgments = ds.judgments[ds.judgments["query_id"].isin(queries["query_id"])]
    return Dataset(ds.products, queries, judgments.reset_index(drop=True), name="homedepot")


@pytest.fixture(scope="session")
def ac_dataset() -> Dataset:
    if (SHARED_DATA / "homedepot" / "products.csv").is_file():
        return homedepot_subset()
    return generated_dataset()


@pytest.fixture(scope="session")
def ac_index(
    tmp_path_factory: pytest.TempPathFactory, ac_dataset: Dataset, base_model: TwoTowerModel
) -> Path:
    out = tmp_path_factory.mktemp("ac") / "autocomplete"
    return build_autocomplete(ac_dataset, base_model, out, SMALL)
