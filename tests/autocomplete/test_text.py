from __future__ import annotations

from collections import Counter

from aisle.autocomplete.text import Speller, key, prefix_key


def test_keys_fold_case_accents_and_space() -> None:
    assert key("  Crème   BRÛLÉE\tTorch ") == "creme brulee torch"
    assert key("ÉCHO") == key("echo") == "echo"
    assert prefix_key("Moen  ") == "moen "  # a typed trailing space stays
    assert prefix_key("\u00a0moen\u00a0sh") == "moen sh"  # NFKD turns NBSP into a space


def test_speller_corrects_rare_words_to_common_catalog_words() -> None:
    titles = ["Glacier Bay Toilet"] * 5 + ["Moen Shower Faucet"] * 5 + ["Char-Broil Grill"] * 3
    speller = Speller.from_texts(titles, min_count=3)
    assert speller.correct("glaciar bay toiled") == "glacier bay toilet"
    assert speller.correct("moen dhower faucet") == "moen shower faucet"
    assert speller.correct("char broil") == "char broil"  # "char-broil" counts "char"
    assert speller.correct("cost toilet") == "cost toilet"  # under 5 letters: left alone
    assert speller.correct("unknownword 2x4") == "unknownword 2x4"  # nothing within reach
    assert speller.correct("glacier toilets") == "glacier toilets"  # a plural, not a typo


def test_speller_prefers_the_most_common_candidate() -> None:
    speller = Speller(Counter({"toilet": 50, "toiles": 3, "tiled": 4}), min_count=3)
    assert speller.word("toiled") == "toilet"
