from __future__ import annotations

from aisle.evaluation.slices import LONG, ONE_WORD, SIZES, query_slices


def test_sizes_slice_holds_sizes_not_the_words_in_foot_and_feet() -> None:
    # homedepot has ~100 queries like "built in microwave" or "claw foot tub": not sizes.
    queries = {
        "s1": "1/2 in copper pipe", "s2": "6 ft ladder", "s3": "half inch pipe tap",
        "s4": "gallon bucket", "s5": "2 foot level",
        "n1": "built in microwaves", "n2": "in line fan", "n3": "sandler claw foot tubs",
        "n4": "ajustable ladder feet", "n5": "foot pump",
    }
    slices = query_slices(queries)
    assert slices[SIZES] == {"s1", "s2", "s3", "s4", "s5"}
    assert slices[ONE_WORD] == set() and slices[LONG] == set()
