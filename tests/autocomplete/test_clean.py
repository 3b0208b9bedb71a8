"""Cleaning a small hand-made log with the search path's speller (no model: a few known words
stand in for the tokenizer's vocabulary)."""

from __future__ import annotations

import pytest

from aisle.autocomplete.clean import Cleaned, QueryCleaner
from aisle.retrieval.retriever import catalog_speller

# Each title word in 3+ titles, "cordless" and "drill" in 30+ (so "cordlessdrill" is a word).
TITLES = (["DEWALT Cordless Drill Kit", "Ryobi Cordless Drill", "Makita Cordless Drill Driver"]
          * 10 + ["Glacier Bay Toilet", "Glacier Bay Toilet Seat", "Glacier Bay Toilet Flapper"]
          + ["Moen Shower Faucet", "MOEN Shower Head", "Moen Showerhead"] * 3)
KNOWN = {"one", "bay", "tub", "burglar", "bars"}


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
