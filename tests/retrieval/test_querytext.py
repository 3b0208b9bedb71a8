"""Query text normalising, and what a query must be to be searched."""

from __future__ import annotations

import pytest

from aisle.retrieval.querytext import normalise, query_problem


def test_normalise() -> None:
    assert normalise("  ｃｏｒｄｌｅｓｓ\t DRILL ") == "cordless DRILL"  # case is the preparer's
    assert normalise("ﬁre  pit") == "fire pit"
    assert normalise("² in") == "2 in"
    assert normalise("Straße") == "Straße"
    # NFKC would glue trade marks to the word as letters, and keep a fraction slash
    assert normalise("Ryobi™ 18V") == "Ryobi 18V"
    assert normalise("Gorilla™Glue ℠") == "Gorilla Glue"
    assert normalise("½ in. pipe") == "1/2 in. pipe"
    assert normalise("3⁄4 and 1∕8") == "3/4 and 1/8"
    # Invisible characters go (the tower's tokenizer drops them; BM25 split words at them);
    # whitespace controls still separate words.
    assert normalise("dri\u00adll\u200b bit\x00s\ufeff") == "drill bits"
    assert normalise("\u202eleft\u200d\u2060right\x1fend\x85x") == "leftright end x"


@pytest.mark.parametrize(("query", "message"), [
    ("", "query is empty"),
    (" \t", "query is empty"),
    ("\ud800 drill", "query is not valid Unicode: character 0 is a lone surrogate ('\\ud800')"),
    ("\u200b", "query has no letters or digits"),
    ("\ufffd\ufffd", "only U+FFFD replacement characters; send the query as UTF-8"),
    ("!!! ...", "query has no letters or digits"),
    ("™", "query has no letters or digits"),  # a mark, not the letters NFKC spells it with
])
def test_query_problem_says_what_to_fix(query: str, message: str) -> None:
    problem = query_problem(query)
    assert problem is not None and message in problem


@pytest.mark.parametrize("query", ["drill", "漢字", "2", "ü", "🔨 drill", "\x00 a"])
def test_searchable_queries_pass(query: str) -> None:
    assert query_problem(query) is None


@pytest.mark.parametrize(("typed", "normal"), [
    # NFKC spells a vulgar fraction as digits around a fraction slash: after a whole number
    # it would glue them into one number ("1½" -> "11/2", eleven halves)
    ("1½ in. pipe", "1 1/2 in. pipe"),
    ("2¾\" screws", "2 3/4\" screws"),
    ("1 ½ in", "1 1/2 in"),
    ("½ in", "1/2 in"),
])
def test_a_mixed_number_keeps_its_whole_part(typed: str, normal: str) -> None:
    assert normalise(typed) == normal
