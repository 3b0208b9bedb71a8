"""The BM25 analyzers on strings worked out by hand."""

from __future__ import annotations

import pytest

from aisle.retrieval.analyzer import analyzer
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.querytext import normalise


@pytest.fixture(scope="module")
def product():
    return analyzer("product")


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        # fractions stay whole; "in." is the unit inch, spelled "in", a stop word
        ("3/4 in. PVC Elbow", ["3/4", "pvc", "elbow"]),
        # a mixed number splits at its hyphen into the whole and the fraction
        ("1-1/2 in. x 8 in. Extension Tube", ["1", "1/2", "8", "extens", "tube"]),
        # dimensions split where digits meet letters; the "x" between them is dropped
        ("2x4x8 Doug Fir", ["2", "4", "8", "doug", "fir"]),
        # digits glued to a unit or a model prefix are split; single letters are kept
        ("18v Makita Batteries 3.0ah", ["18", "v", "makita", "batteri", "3.0", "ah"]),
        ("400 watt bulb MH400", ["400", "w", "bulb", "mh", "400"]),
        ("600-Watt/3-Amp Timer", ["600", "w", "3", "amp", "timer"]),
        # a quote or prime after a digit is inches, an apostrophe feet
        ('30" vanity, 8\' ladder', ["30", "vaniti", "8", "ft", "ladder"]),
        ("30\u2033 vanity", ["30", "vaniti"]),
        # unit words take one spelling on both sides
        ("5 Gallons of paint, 2 pounds", ["5", "gal", "paint", "2", "lb"]),
        ("12 ounce can, 10 lbs", ["12", "oz", "can", "10", "lb"]),
        ("j hooks", ["j", "hook"]),
        # letters of any script are words, not dropped
        ("Jalape\u00f1o Salsa 16oz", ["jalapeño", "salsa", "16", "oz"]),
        ("", []),
        ("the and of", []),
    ],
)
def test_product_analyzer(product, text, terms):
    assert product.terms(text) == terms


def test_query_and_title_spellings_meet(product):
    # what a shopper types and how a catalog writes it end up as the same terms
    assert product.terms('3/4" pvc') == product.terms("3/4 in. PVC")
    assert product.terms("18 volt drill") == product.terms("18V Drill")
    assert product.terms("2 x 4") == product.terms("2x4")


def test_word_analyzer_is_bm25s_own(product):
    word = analyzer("word")
    # \b\w\w+\b tokens: single characters (and so "3/4") vanish, digits glued to letters stay
    assert word(["3/4 in. PVC Elbow", "18v drill"]) == [["pvc", "elbow"], ["18v", "drill"]]
    assert product(["3/4 in. PVC Elbow"]) == [["3/4", "pvc", "elbow"]]


def test_unknown_analyzer_is_refused():
    with pytest.raises(ValueError, match="unknown BM25 analyzer 'nope'"):
        analyzer("nope")


@pytest.mark.parametrize("inches", ['30"', "30\u2033", "30\u2032\u2032", "30''", "30\u201d"])
def test_inches_typed_any_way_read_as_inches_after_normalising(product, inches):
    # queries reach BM25 normalised (NFKC), which spells a double prime as two primes: those
    # are inches still, not an 8-foot ladder's feet
    assert product.terms(normalise(f"{inches} vanity")) == ["30", "vaniti"]


def test_product_text_is_read_as_queries_are(product):
    # queries are NFKC-normalised before BM25 sees them (querytext.normalise); a catalog's
    # fractions, full-width letters, ligatures and soft hyphens must give the same terms
    for title, typed in [("Copper Pipe \u00bd in.", "copper pipe 1/2 in"),
                         ("Pipe 1\u00bd in.", "pipe 1-1/2 in"),
                         ("\uff24\uff52\uff49\uff4c\uff4c", "drill"),
                         ("\ufb01re pit", "fire pit"),
                         ("dri\u00adll", "drill"),
                         ("Tile 2 m\u00b2", "tile 2 m2")]:
        assert product.terms(title) == product.terms(normalise(typed)), title


def test_bm25_finds_a_catalog_fraction_by_the_typed_one():
    texts = ["Copper pipe 3/4 in.", "Copper pipe \u00bd in."]
    index = BM25Index.build(texts, ["three-quarter", "half"], fuzzy=False)
    assert index.search([normalise("1/2 in copper pipe")], 1)[0][0][0] == "half"
    assert index.search([normalise("\u00bd in copper pipe")], 1)[0][0][0] == "half"


def test_control_characters_still_split_words(product):
    # catalog mojibake ("Men's" as "Men\x89Ûªs"): NFKC must not glue "men" to the debris
    assert product.terms("Men\x89\u00db\u00aas Watch")[0] == "men"
