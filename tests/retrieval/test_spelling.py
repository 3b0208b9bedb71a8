"""The catalog speller: worked by hand on small vocabularies."""

from __future__ import annotations

from collections import Counter

import pytest

import aisle.retrieval.spelling
from aisle.retrieval.spelling import QuerySpeller, fold, whole_words

TITLES = ["Glacier Bay Toilet"] * 5 + ["Moen Shower Faucet"] * 5 + ["Char-Broil Grill"] * 3


def test_speller_corrects_rare_words_to_common_catalog_words() -> None:
    speller = QuerySpeller.from_texts(TITLES, min_count=3)
    assert speller.correct("glaciar bay toiled") == "glacier bay toilet"
    assert speller.correct("moen dhower faucet") == "moen shower faucet"
    assert speller.correct("char broil") == "char broil"  # "char-broil" counts "char"
    assert speller.correct("cost toilet") == "cost toilet"  # under 5 letters: left alone
    assert speller.correct("unknownword 2x4") == "unknownword 2x4"  # nothing within reach
    assert speller.correct("glacier toilets") == "glacier toilets"  # a plural, not a typo


def test_speller_prefers_the_most_common_candidate() -> None:
    speller = QuerySpeller(Counter({"toilet": 50, "toiles": 3, "tiled": 4}), min_count=3)
    assert speller.word("toiled") == "toilet"


def test_a_swap_of_two_letters_is_one_edit() -> None:
    speller = QuerySpeller(Counter({"shower": 5}), min_count=3)
    assert speller.word("shwoer") == "shower"  # OSA: one transposition


def test_plurals_and_negations_of_words_are_left_alone() -> None:
    counts = Counter({"wrench": 9, "wrenching": 40, "framed": 9, "frame": 40, "steam": 9})
    speller = QuerySpeller(counts, min_count=3, known={"steak"})
    assert speller.word("wrenches") == "wrenches"  # "-es" plural of a catalog word
    assert speller.word("unframed") == "unframed"  # not "framed"
    assert speller.word("steaks") == "steaks"  # the plural of a known word, not "steams"
    assert speller.word("wrenchs") == "wrenchs"  # "-s" plural, however odd
    berries = QuerySpeller(Counter({"cherry": 9, "berries": 40, "pantry": 9, "entries": 40}),
                           min_count=3)
    assert berries.word("cherries") == "cherries"  # "-ies" plural of "cherry", not "berries"
    assert berries.word("pantries") == "pantries"  # not "entries"
    no_cherry = QuerySpeller(Counter({"berries": 40}), min_count=3)
    assert no_cherry.word("cherries") == "berries"  # the plural of no catalog word


def test_words_the_tokenizer_knows_are_left_alone() -> None:
    counts = Counter({"steam": 9})
    assert QuerySpeller(counts, min_count=3).word("steak") == "steam"
    assert QuerySpeller(counts, min_count=3, known={"steak"}).word("steak") == "steak"


def test_two_common_words_run_together_are_left_alone_above_the_compound_count() -> None:
    counts = Counter({"wire": 50, "mesh": 40, "wireless": 500, "drawer": 60, "draw": 50,
                      "eer": 3})
    assert QuerySpeller(counts, min_count=3).word("wiremesh") == "wireless"  # no compound guard
    speller = QuerySpeller(counts, min_count=3, compound_min_count=30)
    assert speller.word("wiremesh") == "wiremesh"  # wire + mesh, both in 30+ texts
    assert speller.word("draweer") == "drawer"  # "eer" is in 3 texts: a fragment, not a word


def test_short_catalog_words_are_never_a_correction_when_asked() -> None:
    counts = Counter({"with": 500, "switch": 50})
    assert QuerySpeller(counts, min_count=3).word("swith") == "with"
    assert QuerySpeller(counts, min_count=3, min_candidate_length=5).word("swith") == "switch"


def test_rewrite_replaces_only_misspelt_words_in_the_case_typed() -> None:
    speller = QuerySpeller.from_texts(TITLES, min_count=3)
    assert speller.rewrite("Glacier Bay toiled, 3/4 in.") == "Glacier Bay toilet, 3/4 in."
    assert speller.rewrite("Moen  dhower-faucet 18volt") == "Moen  shower-faucet 18volt"
    assert speller.rewrite("GLACIAR Bay Toiled") == "GLACIER Bay Toilet"
    assert speller.rewrite("Glacier Bay Toilet") == "Glacier Bay Toilet"  # nothing to fix
    assert speller.rewrite("") == ""
    assert speller.rewrite("Gla\u0301cier Bay toiled") == "Gl\u00e1cier Bay toilet"  # NFC
    assert speller.rewrite("Glaci\u0301ar bay") == "Glacier bay"  # decomposed typo, corrected


def test_rewrite_known_answers_what_needs_no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    speller = QuerySpeller.from_texts(TITLES, min_count=3)
    assert speller.rewrite_known("Glacier toilet") == "Glacier toilet"
    assert speller.rewrite_known("glaciar toilet") is None  # needs a search
    assert speller.rewrite("glaciar toilet") == "glacier toilet"
    assert speller.rewrite_known("glaciar toilet") == "glacier toilet"
    monkeypatch.setattr(aisle.retrieval.spelling, "CACHE_SIZE", 1)
    assert speller.word("dhower") == "shower"  # evicts "glaciar": the cache is bounded
    assert speller.known_answer("glaciar") is None


def test_whole_words_of_a_tokenizer_vocabulary() -> None:
    wordpiece = ["[CLS]", "radiator", "##ing", "eater", "3/4", "a1"]
    assert whole_words(wordpiece) == {"radiator", "eater"}
    marked = ["<s>", "\u2581Steak", "ation", "\u0120pound", "\u2581"]
    assert whole_words(marked) == {"steak", "pound"}  # unmarked entries are pieces


@pytest.mark.parametrize(("text", "folded"), [
    ("Café  Crème ", "cafe creme "),
    ("™ Brand", "tm brand"),  # a compatibility character's capitals fold too
    ("Ⅻ", "xii"),
    ("ＤＥＷＡＬＴ", "dewalt"),
    ("Straße", "strasse"),
    ("  ǅ", "dz"),
])
def test_fold_is_caseless_past_compatibility_characters(text: str, folded: str) -> None:
    assert fold(text) == folded
