from __future__ import annotations

import re

import pytest

from aisle.autocomplete.text import (
    digit_runs,
    keeps_numbers,
    key,
    numbers,
    prefix_key,
    shown,
    variant_key,
)


def test_keys_fold_case_accents_and_space() -> None:
    assert key("  Crème   BRÛLÉE\tTorch ") == "creme brulee torch"
    assert key("ÉCHO") == key("echo") == "echo"
    assert prefix_key("Moen  ") == "moen "  # a typed trailing space stays
    assert prefix_key("\u00a0moen\u00a0sh") == "moen sh"  # NFKD turns NBSP into a space



def test_variants_share_a_key_and_are_shown_in_lower_case() -> None:
    variants = ["Moen Shower Head", "moen  showerhead", "MOEN SHOWER HEAD", "Möen shower head"]
    assert {variant_key(t) for t in variants} == {"moenshowerhead"}
    assert variant_key("moen shower") != variant_key("moen showers")
    assert shown("  GLACIER BAY\tVanity ") == "glacier bay vanity"
    assert shown("Crème BRÛLÉE") == "crème brûlée"  # accents stay on screen


def test_numbers_are_the_stated_ones_as_a_multiset() -> None:
    assert numbers("24 inch vanity") == ("24",) != numbers("36 inch vanity")
    assert numbers("2x8x8 treated") == numbers("2x8 treated 8ft") == ("2", "8", "8")
    assert numbers("１/２ inch pvc") == numbers("1/2 in. pvc") != numbers("3/4 inch pvc")
    assert numbers("ryobi 018 volt") == numbers("ryobi 18v") and numbers("vanity") == ()
    # A thousands comma groups digits: one number, however it is written.
    assert numbers("10,000 btu heater") == numbers("10000 BTU heater") == ("10000",)
    assert numbers("１０，０００ btu") == ("10000",) != numbers("10, 000 btu")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"threshold": 82.0}, "threshold is a cosine in"),
    ({"max_catalog": -5}, "max_catalog must be >= 0"),
    ({"typo1_chars": 9}, "typo1_chars (9) must be >= 1 and <= typo2_chars (8)"),
    ({"typo_discount": 0.0}, "typo_discount must be in (0, 1]"),
    ({"ngram_max": 0}, "ngram_max must be >= 1"),
])
def test_a_config_that_cannot_work_is_refused(overrides: dict[str, float], message: str) -> None:
    from aisle.autocomplete.config import AutocompleteConfig
    from aisle.errors import AisleError

    with pytest.raises(AisleError, match=re.escape(message)):
        AutocompleteConfig(**overrides)  # type: ignore[arg-type]
    AutocompleteConfig()  # the defaults hold


@pytest.mark.parametrize(
    ("typed", "suggestion", "kept"),
    [
        ("dewalt 2", "dewalt 20v drill", True),  # a number the prefix ends on: half typed
        ("dewlt 20v", "dewalt 20v drill", True),
        ("10 g", "100 gal water heater", False),  # a finished number, with a digit added
        ("10 g", "10 gal shop vac", True),
        ("3/4", "3/8 inch bit", False),
        ("3/", "3/8 inch bit", True),
        ("10,0", "10,000 btu", True),
        ("2x4 8", "2x4x8 stud", True),
        ("2x4 8", "2x6x8 stud", False),
        ("drill", "drill 20v", True),  # no number typed
        ("door 3 6", "door 36", False),  # two numbers typed, one stated
        ("10000 btu", "10,000 btu", True),  # a thousands comma changes no number
        ("10,000 b", "10000 btu", True),
        ("ac 10,", "ac 10,000 btu", True),
        ("10 gal \u1369", "100 gal", False),  # an Ethiopic numeral: isdigit, yet no \d digit
    ],
)
def test_a_typed_number_is_kept_whole(typed: str, suggestion: str, kept: bool) -> None:
    assert keeps_numbers(typed, digit_runs(suggestion)) is kept
