"""The catalog speller: worked by hand on small vocabularies."""

from __future__ import annotations

from collections import Counter

from aisle.spelling import Speller, whole_words

TITLES = ["Glacier Bay Toilet"] * 5 + ["Moen Shower Faucet"] * 5 + ["Char-Broil Grill"] * 3


def test_speller_corrects_rare_words_to_common_catalog_words() -> None:
    speller = Speller.from_texts(TITLES, min_count=3)
    assert speller.correct("glaciar bay toiled") == "glacier bay toilet"
    assert speller.correct("moen dhower faucet") == "moen shower faucet"
    assert speller.correct("char broil") == "char broil"  # "char-broil" counts "char"
    assert speller.correct("cost toilet") == "cost toilet"  # under 5 letters: left alone
    assert speller.correct("unknownword 2x4") == "unknownword 2x4"  # nothing within reach
    assert speller.correct("glacier toilets") == "glacier toilets"  # a plural, not a typo


def test_speller_prefers_the_most_common_candidate() -> None:
    speller = Speller(Counter({"toilet": 50, "toiles": 3, "tiled": 4}), min_count=3)
    assert speller.word("toiled") == "toilet"


def test_a_swap_of_two_letters_is_one_edit() -> None:
    speller = Speller(Counter({"shower": 5}), min_count=3)
    assert speller.word("shwoer") == "shower"  # OSA: one transposition


def test_words_the_tokenizer_knows_are_left_alone() -> None:
    counts = Counter({"gladiator": 9})
    assert Speller(counts, min_count=3).word("radiator") == "gladiator"  # 2 edits from 8 letters
    assert Speller(counts, min_count=3, known={"radiator"}).word("radiator") == "radiator"


def test_two_common_words_run_together_are_left_alone() -> None:
    speller = Speller(Counter({"wire": 5, "mesh": 5, "wireless": 50}), min_count=3)
    assert speller.word("wiremesh") == "wiremesh"  # wire + mesh, not "wireless" (2 edits)
    assert speller.word("wirelss") == "wireless"


def test_rewrite_replaces_only_misspelt_words_and_keeps_the_rest_as_typed() -> None:
    speller = Speller.from_texts(TITLES, min_count=3)
    assert speller.rewrite("Glacier Bay TOILED, 3/4 in.") == "Glacier Bay toilet, 3/4 in."
    assert speller.rewrite("Moen  dhower-faucet 18volt") == "Moen  shower-faucet 18volt"
    assert speller.rewrite("Glacier Bay Toilet") == "Glacier Bay Toilet"  # nothing to fix
    assert speller.rewrite("") == ""
    assert speller.rewrite("Glâcier Bay toiled") == "Glâcier Bay toilet"  # known once folded


def test_whole_words_of_a_tokenizer_vocabulary() -> None:
    vocab = ["[CLS]", "radiator", "##ing", "\u2581Steak", "\u0120pound", "3/4", "a1", "eater"]
    assert whole_words(vocab) == {"radiator", "steak", "pound", "eater"}
