from __future__ import annotations

from aisle.autocomplete.text import key, prefix_key


def test_keys_fold_case_accents_and_space() -> None:
    assert key("  Crème   BRÛLÉE\tTorch ") == "creme brulee torch"
    assert key("ÉCHO") == key("echo") == "echo"
    assert prefix_key("Moen  ") == "moen "  # a typed trailing space stays
    assert prefix_key("\u00a0moen\u00a0sh") == "moen sh"  # NFKD turns NBSP into a space

