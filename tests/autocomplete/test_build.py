"""What the build embeds for each suggestion (aisle.autocomplete.build.collect)."""

from __future__ import annotations

import pandas as pd

from aisle.autocomplete.build import collect
from aisle.autocomplete.config import AutocompleteConfig
from aisle.data.dataset import Dataset
from aisle.retrieval.retriever import titles_speller
from aisle.towers.model import TwoTowerModel


def test_catalog_phrases_are_embedded_as_written(base_model: TwoTowerModel) -> None:
    # "brita" is a brand in two titles, "brite" a commoner catalog word one edit away: the
    # query speller corrects the one to the other, and the build used to embed "brita" as
    # "brite" (cosine 1.0: "bri" then listed one of the two brands, never both).
    titles = ["Brita Water Filter", "Brita Pitcher"] + [f"Brite Lamp {i}" for i in range(8)]
    products = pd.DataFrame({"product_id": [str(i) for i in range(len(titles))],
                             "title": titles, "description": "", "brand": "",
                             "category": ""})
    queries = pd.DataFrame({"query_id": ["q0"], "query": ["water filter"], "split": ["train"]})
    ds = Dataset(products, queries, pd.DataFrame(
        columns=["query_id", "product_id", "grade", "raw_label"]), name="brands")
    speller = titles_speller(ds.products["title"], base_model)
    assert speller.correct("brita") == "brite"  # the premise
    frame, _, _ = collect(ds, AutocompleteConfig(), speller)
    canonical = dict(zip(frame["text"], frame["canonical"], strict=True))
    assert canonical["brita"] == "brita" and canonical["brite"] == "brite"
    assert canonical["water filter"] == "water filter"  # log queries: still the speller's
