from __future__ import annotations

from aisle.autocomplete.text import key, prefix_key, shown, variant_key


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
