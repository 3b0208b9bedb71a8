"""GET /search's hand-written query-string parsing."""

from __future__ import annotations

import pytest

from aisle.serving.params import SEARCH_PARAMETERS, BadParameter, parse_search_params


def test_parses_the_parameters() -> None:
    assert parse_search_params({"q": "drill"}) == ("drill", None, None, None, (), ())
    assert parse_search_params({"q": " a b ", "k": "25", "mode": "hybrid"}) == (
        " a b ", 25, "hybrid", None, (), ())
    assert parse_search_params({"q": "", "k": "-3"})[:2] == ("", -3)  # checked later
    assert parse_search_params({"q": "x", "partition": "store-2"}).partition == "store-2"


def test_filter_and_fields_repeat_in_order_other_parameters_count_once() -> None:
    got = parse_search_params([("q", "a"), ("filter", "brand=X|Y"), ("fields", "price"),
                               ("filter", "price<=5"), ("fields", "brand"), ("q", "b")])
    assert got.q == "b"  # the last, as Starlette reads a repeated parameter
    assert got.filters == ("brand=X|Y", "price<=5")
    assert got.fields == ("price", "brand")


@pytest.mark.parametrize(("raw", "k"), [("5", 5), ("+5", 5), ("05", 5), ("-0", 0), ("-3", -3)])
def test_k_is_an_integer_in_digits(raw: str, k: int) -> None:
    assert parse_search_params({"q": "x", "k": raw})[1] == k


@pytest.mark.parametrize("raw", [" 5 ", "5 ", "\t5", "5.0", "5.", "5.00", "1_000", "0x5", "+-5"])
def test_k_is_nothing_but_an_integer_as_the_openapi_document_declares(raw: str) -> None:
    """FastAPI (pydantic, lax) took spaces around k and a decimal point ("5.0"), and so did
    this parser, although the document declares k an integer."""
    with pytest.raises(BadParameter) as info:
        parse_search_params({"q": "x", "k": raw})
    assert str(info.value) == ("malformed request: k: must be a whole number, digits only "
                               f"(such as 10), got {raw!r}")
    assert info.value.field == "k"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "q: the query parameter is required"),
        ({"q": "x", "k": "ten"}, "k: must be a whole number, digits only (such as 10), "
                                 "got 'ten'"),
        ({"q": "x", "k": "2.5"}, "k: must be a whole number"),
        ({"q": "x", "k": "1e3"}, "k: must be a whole number"),
        ({"q": "x", "k": "\u0665"}, "k: must be a whole number"),  # Arabic-Indic five
        ({"q": "x", "k": "\uff15"}, "k: must be a whole number"),  # full-width five
        ({"q": "x", "k": ""}, "k: must be a whole number"),
        ({"q": "x", "mode": "fuzzy"}, "mode: must be one of dense, lexical, hybrid, got 'fuzzy'"),
        ({"q": "x", "partiton": "s1"},
         "unknown query parameter 'partiton'; GET /search takes q, k, mode, partition, "
         "filter, fields"),
        ({"q": "x", "K": "5"}, "unknown query parameter 'K'"),
    ],
)
def test_bad_parameters_say_what_to_fix(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadParameter, match="malformed request") as info:
        parse_search_params(params)
    assert message in str(info.value)


def test_openapi_documents_them_with_the_configured_limits() -> None:
    import copy

    from aisle.serving.app import create_app
    from aisle.serving.config import ServeConfig

    before = copy.deepcopy(SEARCH_PARAMETERS)
    config = ServeConfig(index="unused", max_query_chars=100, max_k=50)
    schema = create_app(config).openapi()  # nothing loads before start-up
    q, k, mode, partition, conditions, fields = schema["paths"]["/search"]["get"]["parameters"]
    assert [q["name"], k["name"], q["required"], k["required"]] == ["q", "k", True, False]
    assert q["schema"] == {"$ref": "#/components/schemas/Query"}
    assert schema["components"]["schemas"]["Query"]["maxLength"] == 100
    assert k["schema"] == {"type": "integer", "minimum": 1, "maximum": 50}
    assert [mode, partition] == SEARCH_PARAMETERS[2:4]
    # Before an index has loaded, no filter or field is valid: the document says none.
    assert conditions["schema"]["maxItems"] == fields["schema"]["maxItems"] == 0
    assert before == SEARCH_PARAMETERS  # another app's limits never leak into the next
    # Each cause of a 503 the service gives (batching.Overloaded and its kinds) is named.
    for path, method in (("/search", "get"), ("/search", "post"), ("/admin/reload", "post")):
        meaning = schema["paths"][path][method]["responses"]["503"]["description"]
        assert all(cause in meaning for cause in ("loading", "queue is full", "shutting down"))
