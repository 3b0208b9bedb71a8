"""Filters: the text grammar, the JSON form, and the masks they give over typed fields."""

from __future__ import annotations

import random
import re

import numpy as np
import pandas as pd
import pytest

from aisle.data.fields import FieldType
from aisle.retrieval.filters import (
    FieldTable,
    Filter,
    FilterError,
    as_filter,
    field_pattern,
    filter_from_json,
    parse_filters,
)

BRANDS = ["DeWalt", "dewalt ", "Makita", "", None, "Ｍａｋｉｔａ"]  # the last full-width
PRICES = [4.99, 10.0, None, 50.0, 3.0, 120.0]
STOCK = [True, False, None, True, False, True]


@pytest.fixture(scope="module")
def table() -> FieldTable:
    return FieldTable({
        "brand": pd.Series(BRANDS, dtype="object"),
        "price": pd.Series(PRICES, dtype="float64"),
        "in_stock": pd.Series(STOCK, dtype="boolean"),
    })


def rows(table: FieldTable, conditions: list[str]) -> list[int]:
    return np.flatnonzero(table.mask(parse_filters(conditions))).tolist()


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        (["brand=DEWALT"], [0, 1]),  # case-blind, spaces trimmed
        (["brand=makita"], [2, 5]),  # NFKC: full-width letters are the plain ones
        (["brand=makita|dewalt"], [0, 1, 2, 5]),
        (["brand= dewalt | nobody "], [0, 1]),
        (["brand=nobody"], []),
        (["price>=10"], [1, 3, 5]),
        (["price>10"], [3, 5]),
        (["price<10"], [0, 4]),
        (["price<=10"], [0, 1, 4]),
        (["price=10"], [1]),
        (["price=3|50"], [3, 4]),
        (["price=5..50"], [1, 3]),
        (["price=..10"], [0, 1, 4]),
        (["price=100.."], [5]),
        (["price=.."], [0, 1, 3, 4, 5]),  # any price: not the product without one
        (["in_stock=true"], [0, 3, 5]),
        (["in_stock=FALSE"], [1, 4]),
        (["in_stock=true|false"], [0, 1, 3, 4, 5]),
        (["in_stock=true", "price<=50", "brand=dewalt"], [0]),  # all must hold
    ],
)
def test_text_conditions_select_the_rows_that_meet_them(
    table: FieldTable, conditions: list[str], expected: list[int]
) -> None:
    assert rows(table, conditions) == expected


def test_json_filters_mean_the_same(table: FieldTable) -> None:
    def picked(spec: dict[str, object]) -> list[int]:
        return np.flatnonzero(table.mask(filter_from_json(spec))).tolist()

    assert picked({"brand": "dewalt"}) == rows(table, ["brand=dewalt"])
    assert picked({"brand": ["Makita", "DeWalt"]}) == [0, 1, 2, 5]
    assert picked({"brand": "a|b"}) == []  # a JSON value is taken whole
    assert picked({"price": {"gte": 5, "lte": 50}}) == [1, 3]
    assert picked({"price": {"gt": 4.99}}) == [1, 3, 5]
    assert picked({"price": 10}) == [1]
    assert picked({"price": [3, 50]}) == [3, 4]
    assert picked({"price": {"lte": 10**400}}) == [0, 1, 3, 4, 5]  # past any float: no limit
    assert picked({"in_stock": False, "price": {"lt": 5}}) == [4]
    assert picked({}) == list(range(6))
    assert as_filter({}) is None and as_filter([]) is None and as_filter(None) is None
    assert as_filter("price<=5") == parse_filters(["price<=5"])


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (5, "filters of type int: give a dict"),
        ([5], "filters of type list: give a dict"),
        (b"brand=x", "filters of type bytes: give a dict"),
        ({"brand": object()}, "filter 'brand': a value of type object is not a string"),
        ({"price": {"gte": {1, 2}}}, "filter 'price': a value of type set is not a string, number"),
        ({"brand": None}, "filter 'brand': null is not a string"),  # JSON's own words
    ],
)
def test_the_python_api_filters_of_the_wrong_type(filters: object, message: str) -> None:
    # Each raised a bare TypeError from inside the parser.
    with pytest.raises(FilterError, match=re.escape(message)):
        as_filter(filters)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (["colour=red"], "unknown field 'colour': this index has brand, price, in_stock"),
        (["brand>=3"], "brand is a text field: use brand=value, brand=a|b or brand^=path"),
        (["brand="], "brand is a text field"),
        (["brand=a|"], "brand is a text field"),
        (["brand=  "], "brand is a text field"),
        (["price=abc"], "price is a number field"),
        (["price<=1e3"], "price is a number field"),  # no exponents
        (["price<=" + "9" * 16], "price is a number field"),  # 16 digits: always finite below
        (["price=1..2..3"], "price is a number field"),
        (["in_stock=yes"], "in_stock is a boolean field: use in_stock=true or in_stock=false"),
        (["in_stock>=1"], "in_stock is a boolean field"),
        (["price"], "is not field=value"),
        (["price >= 3"], "no space before the operator"),
        (["2price=3"], "is not field=value"),
        (["brand=" + "x" * 300], "at most 200"),
    ],
)
def test_bad_text_conditions_say_what_to_fix(
    table: FieldTable, conditions: list[str], message: str
) -> None:
    with pytest.raises(FilterError, match=re.escape(message)):
        table.mask(parse_filters(conditions, "filter"), "filter")


@pytest.mark.parametrize(
    ("spec", "message", "field"),
    [
        ({"price": "5"}, "price is a number field: give a number", "filters.price"),
        ({"price": True}, "price is a number field", "filters.price"),
        ({"brand": 5}, "brand is a text field: give a string", "filters.brand"),
        ({"brand": " "}, "non-blank", "filters.brand"),
        ({"brand": {"gte": 1}}, "brand is a text field", "filters.brand"),
        ({"in_stock": "true"}, "in_stock is a boolean field", "filters.in_stock"),
        ({"price": []}, "the list of values is empty", "filters.price"),
        ({"price": {"from": 1}}, "a range takes gte, gt, lte and lt", "filters.price"),
        ({"price": {}}, "a range takes gte, gt, lte and lt", "filters.price"),
        ({"price": None}, "is not a string, number or boolean", "filters.price"),
        ({"colour": "red"}, "unknown field 'colour'", "filters.colour"),
        ({"price": {"under": 5}}, "price is a number field", "filters.price"),  # paths: text
    ],
)
def test_bad_json_filters_name_the_key_at_fault(
    table: FieldTable, spec: dict[str, object], message: str, field: str
) -> None:
    with pytest.raises(FilterError, match=re.escape(message)) as info:
        table.mask(filter_from_json(spec, "filters"), "filters")
    assert info.value.field == field


def _accepted(table: FieldTable, text: str) -> bool:
    try:
        table.mask(parse_filters([text]))
    except FilterError:
        return False
    return True


NAMES = ["price", "brand", "in_stock", "colour", "", "price "]
OPS = ["=", ">=", "<=", ">", "<", "=>", "==", "^=", "^"]
PIECES = ["|", "..", ".", "-", "+", " ", "\t", "\n", "0", "7", "12", "1.5", "e3", "true",
          "FALSE", "x", "Ma", "\u3000", "\xa0", "1234567890123456"]


@pytest.mark.parametrize("kinds", [{"brand": "string", "price": "number", "in_stock": "boolean"}])
def test_the_documented_pattern_is_exactly_what_is_accepted(
    table: FieldTable, kinds: dict[str, FieldType]
) -> None:
    """The OpenAPI document declares field_pattern for GET's filter: a condition matches it
    exactly when the service accepts it (random strings from the grammar's own pieces)."""
    pattern = re.compile("|".join(field_pattern(n, t) for n, t in kinds.items()))
    rng = random.Random(7)
    agreed = accepted = 0
    for _ in range(4000):
        value = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 5)))
        text = rng.choice(NAMES) + rng.choice(OPS) + value
        documented = pattern.search(text) is not None  # JSON Schema's pattern: a search
        assert documented == _accepted(table, text), text
        agreed += 1
        accepted += documented
    assert agreed == 4000 and 100 < accepted < 3900  # both sides were exercised


def test_field_values_and_summary(table: FieldTable) -> None:
    assert table.values([0, 3, 4]) == [
        {"brand": "DeWalt", "price": 4.99, "in_stock": True},
        {"brand": None, "price": 50.0, "in_stock": True},
        {"brand": None, "price": 3.0, "in_stock": False},
    ]
    assert table.values([2], ["price"]) == [{"price": None}]
    brand, price, in_stock = table.summary()
    assert brand == {"name": "brand", "type": "string", "missing": 2,
                     "values": [{"value": "DeWalt", "count": 2},
                                {"value": "Makita", "count": 2}]}
    assert price == {"name": "price", "type": "number", "min": 3.0, "max": 120.0, "missing": 1}
    assert in_stock == {"name": "in_stock", "type": "boolean", "missing": 1}


def test_limits_and_python_values(table: FieldTable) -> None:
    with pytest.raises(FilterError, match="21 filter conditions; at most 20"):
        parse_filters(["price>=1"] * 21)
    with pytest.raises(FilterError, match="give 1 to 100 values, got 101"):
        filter_from_json({"price": list(range(101))})
    # numpy scalars (a value computed in Python) are their Python values
    spec = {"price": {"lte": np.float64(10)}, "in_stock": np.bool_(True)}
    assert np.flatnonzero(table.mask(filter_from_json(spec))).tolist() == [0]


def test_a_value_of_the_wrong_type_never_shares_a_valid_filters_key() -> None:
    assert filter_from_json({"price": 5}).key != filter_from_json({"price": "5.0"}).key
    assert filter_from_json({"in_stock": True}).key != filter_from_json({"in_stock": "true"}).key
    assert parse_filters(["price=5"]).key != filter_from_json({"price": 5}).key


def test_a_path_keeps_itself_and_what_is_under_it() -> None:
    table = FieldTable({"category": pd.Series(
        ["dairy eggs > milk", "Dairy Eggs > yogurt", "frozen > pizza", "dairy eggs",
         "dairy eggsnog > x", None], dtype="object")})

    def picked(flt: Filter) -> list[int]:
        return np.flatnonzero(table.mask(flt)).tolist()

    assert picked(parse_filters(["category^=dairy eggs"])) == [0, 1, 3]  # not "dairy eggsnog"
    assert picked(parse_filters(["category^=DAIRY EGGS|frozen"])) == [0, 1, 2, 3]
    assert picked(parse_filters(["category^=dairy eggs > milk"])) == [0]
    assert picked(parse_filters(["category=dairy eggs"])) == [3]  # equality stays exact
    assert picked(filter_from_json({"category": {"under": ["frozen"]}})) == [2]
    assert picked(filter_from_json({"category": {"under": "dairy eggs"}})) == [0, 1, 3]
    (summary,) = table.summary()
    assert summary["groups"] == [{"value": "dairy eggs", "count": 3},
                                 {"value": "dairy eggsnog", "count": 1},
                                 {"value": "frozen", "count": 1}]
    with pytest.raises(FilterError, match="a range takes gte, gt, lte and lt"):
        filter_from_json({"category": {"under": "a", "gte": 1}})


def test_a_long_text_condition_is_checked_without_backtracking(table: FieldTable) -> None:
    """Many values and a blank last one: the pattern the grammar was once checked with
    backtracked exponentially here (18 values: minutes; 48: years), and one GET request held
    the service's event loop. Checked on a thread, so that a regression fails rather than
    hangs the suite."""
    import threading

    errors: list[BaseException] = []

    def check() -> None:
        try:
            table.mask(parse_filters(["brand=" + "aaa|" * 18 + " "]))
        except FilterError as e:
            errors.append(e)

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "checking one 80-character condition took over 30 s"
    assert errors and "brand is a text field" in str(errors[0])


def test_a_mixed_number_value_matches_however_it_is_written() -> None:
    # text values compare after NFKC, which spelled the catalog's "1½" as "11/2" (eleven halves)
    table = FieldTable({"size": pd.Series(["1\u00bd in", "11/2 in", "1/2 in"])})
    for typed in ("size=1 1/2 in", "size=1\u00bd in", "size=1 \u00bd in"):
        assert table.mask(parse_filters([typed])).tolist() == [True, False, False], typed
