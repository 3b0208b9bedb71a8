"""Cleaning a small hand-made log with the search path's speller (no model: a few known words
stand in for the tokenizer's vocabulary)."""

from __future__ import annotations

import pandas as pd
import pytest

from aisle.autocomplete.clean import Cleaned, QueryCleaner
from aisle.autocomplete.config import AutocompleteConfig
from aisle.autocomplete.suggestions import catalog_suggestions, log_suggestions
from aisle.data.dataset import Dataset
from aisle.retrieval.retriever import catalog_speller

# Each title word in 3+ titles, "cordless" and "drill" in 30+ (so "cordlessdrill" is a word).
TITLES = (["DEWALT Cordless Drill Kit", "Ryobi Cordless Drill", "Makita Cordless Drill Driver"]
          * 10 + ["Glacier Bay Toilet", "Glacier Bay Toilet Seat", "Glacier Bay Toilet Flapper"]
          + ["Moen Shower Faucet", "MOEN Shower Head", "Moen Showerhead"] * 3)
KNOWN = {"one", "bay", "tub", "burglar", "bars"}


def products(titles: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"product_id": [f"p{i}" for i in range(len(titles))], "title": titles,
                         "description": "", "brand": "", "category": ""})


@pytest.fixture(scope="module")
def cleaner() -> QueryCleaner:
    return QueryCleaner(catalog_speller(TITLES, KNOWN))


@pytest.mark.parametrize(
    ("query", "cleaned"),
    [
        ("GLACIER  BAY Toilet", Cleaned("glacier bay toilet", corrected=False)),
        ("glaciar bay toiled", Cleaned("glacier bay toilet", corrected=True)),
        ("moen tub/shwer faucet", Cleaned("moen tub/shower faucet", corrected=True)),
        ("18volt cordless drill", Cleaned("18volt cordless drill", corrected=False)),
        ("cordlessdrill", Cleaned("cordlessdrill", corrected=False)),  # two words run together
        # Under the 5 letters the speller guesses at: not a word, so not shown.
        ("glacier bay one pice flapper", Cleaned(None, corrected=False)),
        # No catalog word within 2 edits of "burgular" (the speller corrects to title words).
        ("burgular bars", Cleaned(None, corrected=False)),
        ("glaciar pice", Cleaned(None, corrected=True)),
    ],
)
def test_a_query_is_shown_corrected_in_lower_case_or_not_at_all(
    cleaner: QueryCleaner, query: str, cleaned: Cleaned
) -> None:
    assert cleaner.clean(query) == cleaned


def test_variants_and_misspellings_count_for_one_suggestion(cleaner: QueryCleaner) -> None:
    log = [("cordless drill", 5), ("CORDLESS  DRILL", 2), ("cordles drill", 3),
           ("cordlessdrill", 1), ("Cordless Drill Kit", 4), ("glacier bay one pice flapper", 9)]
    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(len(log))],
                            "query": [q for q, _ in log], "split": "train",
                            "count": [c for _, c in log]})
    judgments = pd.DataFrame(columns=["query_id", "product_id", "grade", "raw_label"])
    ds = Dataset(products(TITLES), queries, judgments, name="hand-made")
    frame, source, counts = log_suggestions(ds, cleaner.clean)
    assert source == "count"
    got = dict(zip(frame["text"], frame["popularity"], strict=True))
    assert got == {"cordless drill": 5 + 2 + 3 + 1, "cordless drill kit": 4}
    assert counts == {"queries": 6, "corrected": 1, "dropped": 1, "suggestions": 2}


def test_catalog_phrases_merge_variants_and_skip_the_logs() -> None:
    config = AutocompleteConfig(catalog_min_products=2)
    mined = catalog_suggestions(products(TITLES), config, exclude={"moenshowerfaucet"})
    texts = set(mined["text"])
    assert {"moen", "moen shower", "ryobi cordless drill"} <= texts
    assert not any(t != t.lower() for t in texts)
    # "MOEN Shower Head" and "Moen Showerhead" are one phrase, named by 6 products.
    heads = mined[mined["key"].str.replace(" ", "") == "moenshowerhead"]
    assert len(heads) == 1 and heads["popularity"].iloc[0] == 6
    assert "moen shower faucet" not in texts


def test_a_word_many_shoppers_typed_is_accepted_a_rare_unknown_one_is_not() -> None:
    from aisle.autocomplete.clean import log_words

    log = ["bathroom vanities", "white vanities", "vanities with tops", "VANITIES",
           "glacier bay one pice flapper", "toliet seat", "glacier toliet", "toliet handle"]
    counts = log_words(log)
    assert counts["vanities"] == 4 and counts["pice"] == 1
    cleaner = QueryCleaner(catalog_speller(TITLES, KNOWN), counts)
    assert cleaner.clean("Moen  Vanities") == Cleaned("moen vanities", corrected=False)
    assert cleaner.clean("glacier bay one pice flapper").text is None  # typed once: a typo
    # A common misspelling the speller can correct is still corrected, not accepted.
    assert counts["toliet"] == 3
    assert cleaner.clean("glacier toliet") == Cleaned("glacier toilet", corrected=True)
    # Without the log's words, "vanities" (no title, not a known word) is not shown.
    assert QueryCleaner(catalog_speller(TITLES, KNOWN)).clean("moen vanities").text is None
