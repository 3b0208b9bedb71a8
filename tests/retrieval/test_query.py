"""One preparation per query: normalised, spell-corrected once, lower-cased for a case-blind
tower; what is shown keeps the case typed."""

from __future__ import annotations

from collections import Counter

from aisle.retrieval.query import QueryPreparer
from aisle.retrieval.spelling import QuerySpeller

SPELLER = QuerySpeller(Counter({"ceiling": 40, "cordless": 30, "drill": 50, "light": 9}),
                       min_count=3, min_candidate_length=5)


def test_a_misspelt_query_is_shown_corrected_in_its_case_and_searched_folded() -> None:
    q = QueryPreparer(SPELLER, fold_case=True).prepare("  Celing\u3000FAN ")
    assert (q.typed, q.shown, q.text) == ("  Celing\u3000FAN ", "Ceiling FAN", "ceiling fan")
    assert q.corrected and q.correction == "Ceiling FAN"


def test_a_query_spelt_right_is_not_called_corrected() -> None:
    q = QueryPreparer(SPELLER, fold_case=True).prepare("ＣＥＩＬＩＮＧ  light")  # full width
    assert (q.shown, q.text, q.corrected, q.correction) == (
        "CEILING light", "ceiling light", False, None)


def test_a_cased_tower_gets_the_case_typed() -> None:
    q = QueryPreparer(SPELLER, fold_case=False).prepare("US cordles drill")
    assert q.text == q.shown == "US cordless drill" and q.corrected


def test_spelling_off_only_normalises() -> None:
    q = QueryPreparer(None, fold_case=True).prepare("Celing  fan")
    assert (q.shown, q.text, q.corrected) == ("Celing fan", "celing fan", False)


def test_prepare_known_never_searches_and_agrees_once_the_answer_is_known() -> None:
    speller = QuerySpeller(SPELLER.counts, min_count=3, min_candidate_length=5)
    preparer = QueryPreparer(speller, fold_case=True)
    assert preparer.prepare_known("cordles drill") is None  # "cordles" needs a search
    assert preparer.prepare_known("cordless drill") == preparer.prepare("cordless drill")
    searched = preparer.prepare("cordles drill")
    assert preparer.prepare_known("cordles drill") == searched  # remembered
