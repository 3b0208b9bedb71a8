"""TermMatcher: nearest indexed word within Elasticsearch's AUTO edit budget, worked by hand."""

from __future__ import annotations

import pytest

from aisle.retrieval.term_matcher import TermMatcher, max_edits


@pytest.mark.parametrize(
    ("term", "edits"),
    [("", 0), ("bot", 0), ("bolt", 1), ("hamer", 1), ("hammer", 2), ("aluminun", 2),
     ("3/4", 0), ("1000", 0), ("18", 0)],
)
def test_edit_budget_grows_with_length_and_numbers_get_none(term: str, edits: int) -> None:
    assert max_edits(term) == edits


def test_corrections() -> None:
    speller = TermMatcher({"aluminum": 5, "alumina": 1, "hammer": 4, "boat": 9, "bolt": 3,
                       "coat": 3, "cost": 3, "drill": 7})
    assert speller.correct("drill") == "drill"  # indexed: itself
    assert speller.correct("aluminun") == "aluminum"  # 1 edit beats alumina's 2
    assert speller.correct("hamer") == "hammer"  # one insertion, within 5 letters' budget of 1
    assert speller.correct("hmaer") is None  # a swap is 2 Levenshtein edits: over budget
    assert speller.correct("bort") == "boat"  # 1 edit from boat and bolt: boat is in more
    assert speller.correct("cogt") == "coat"  # coat and cost tie on both: alphabetical
    assert speller.correct("bot") is None  # 3 letters: no edits allowed
    assert speller.correct("zzzzzz") is None
    assert speller.correct("3/5") is None


def test_from_documents_counts_products_not_occurrences_and_skips_numbers() -> None:
    speller = TermMatcher.from_documents([["drill", "drill", "18", "v"], ["drill", "bit"], []])
    assert speller.df == {"drill": 2, "v": 1, "bit": 1}
    assert len(speller) == 3
