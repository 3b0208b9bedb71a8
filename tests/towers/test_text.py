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


def test_pandas_missing_values_of_every_kind_are_skipped() -> None:
    # convert_dtypes() and pyarrow-backed frames hold pd.NA; a datetime column NaT; float32
    # columns numpy NaN (not a Python float): none may reach the tower as "<NA>" or "nan".
    import numpy as np

    record = {"title": "Hammer", "brand": pd.NA, "category": np.float32("nan"),
              "description": pd.NaT}
    assert product_text(record) == "Hammer"
    frame = pd.DataFrame({"title": ["Hammer", "Saw"], "brand": ["Estwing", None],
                          "category": ["tools", "tools"], "description": [None, "Sharp."]}
                         ).convert_dtypes()
    assert product_texts(frame) == ["Hammer | brand: Estwing | category: tools",
                                    "Saw | category: tools | description: Sharp."]


def test_no_description_characters_leaves_the_description_out() -> None:
    record = {"title": "Hammer", "description": "Forged steel."}
    assert product_text(record, max_description_chars=0) == "Hammer"
