from __future__ import annotations

import pandas as pd

from aisle.towers.text import product_text, product_texts


def test_title_leads_and_other_fields_are_marked() -> None:
    record = {
        "title": "Cordless Drill",
        "brand": "Ridgid",
        "category": "tools > drills",
        "description": "18V, two batteries.",
    }
    assert product_text(record) == (
        "Cordless Drill | brand: Ridgid | category: tools > drills"
        " | description: 18V, two batteries."
    )


def test_title_only_catalog_gives_the_title_exactly() -> None:
    assert (
        product_text({"title": " Angle  Bracket ", "brand": "", "category": ""}) == "Angle Bracket"
    )


def test_missing_and_nan_fields_are_skipped_and_fields_select_order() -> None:
    record = {"title": "Hammer", "brand": float("nan"), "category": "tools"}
    assert product_text(record) == "Hammer | category: tools"
    assert product_text(record, fields=("category", "title")) == "category: tools | Hammer"


def test_long_description_is_cut_on_a_word_boundary() -> None:
    text = product_text({"title": "T", "description": "word " * 200}, max_description_chars=22)
    assert text == "T | description: word word word word"


def test_frame_helper_matches_the_record_function() -> None:
    frame = pd.DataFrame([{"title": "A", "brand": "B", "category": "", "description": "D"}])
    assert product_texts(frame) == [product_text(frame.iloc[0].to_dict())]
