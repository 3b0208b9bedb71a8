"""Query text normalising, and what a query must be to be searched."""

from __future__ import annotations

import pytest

from aisle.retrieval.querytext import normalise, query_problem


def test_normalise() -> None:
    assert normalise("  ｃｏｒｄｌｅｓｓ\t DRILL ") == "cordless DRILL"  # case is the preparer's
    assert normalise("ﬁre  pit") == "fire pit"
    assert normalise("² in") == "2 in"
    assert normalise("Straße") == "Straße"


@pytest.mark.parametrize(("query", "message"), [
    ("", "query is empty"),
    (" \t", "query is empty"),
    ("\ud800 drill", "query is not valid Unicode: character 0 is a lone surrogate ('\\ud800')"),
    ("\u200b", "query has no letters or digits"),
    ("\ufffd\ufffd", "only U+FFFD replacement characters; send the query as UTF-8"),
    ("!!! ...", "query has no letters or digits"),
])
def test_query_problem_says_what_to_fix(query: str, message: str) -> None:
    problem = query_problem(query)
    assert problem is not None and message in problem


@pytest.mark.parametrize("query", ["drill", "漢字", "2", "ü", "🔨 drill", "\x00 a"])
def test_searchable_queries_pass(query: str) -> None:
    assert query_problem(query) is None
