"""Query text normalising, the case probe of a query tower, and what a query must be.

The service's cache keys exactly the string the encoder is given: two queries share a cached
vector only when the tower would have been given the same text for both. So normalisation
happens to the text itself, before encoding (``aisle.retrieval.query`` applies it for every
caller): Unicode NFKC (full-width letters, ligatures, superscripts become the plain characters;
trade marks dropped, "½" as "1/2") and whitespace collapsed; lower case as well, but only for a
model whose tokenizer ignores case anyway (``case_blind``), as a cased model reads "US" and "us"
differently.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # BM25's analyzer reads nfkc: a lexical search needs no torch
    from aisle.towers.model import TwoTowerModel

# Both spellings tokenize alike exactly when the tokenizer lower-cases (ASCII and beyond).
_CASE_PROBE = "Cordless DRILL Straße ÉCLAIR Ärmel"


# Two repairs of what NFKC does to shoppers' text. Trade marks it spells as letters glued to
# the word before them ("Ryobi™" -> "RyobiTM", a word no catalog holds, which the speller then
# "corrects") go before it; fraction slashes that survive it ("½" -> "1⁄2", which BM25 reads as
# the terms "1" and "2" and the tower as other word pieces) become the "/" shoppers type.
# Invisible characters go too: controls (but the whitespace ones, which split words), the
# soft hyphen, zero-width spaces and joiners, direction marks and the BOM. The query tower's
# tokenizer drops them, BM25's analyzer split words at them ("dri\u00adll" was the terms "dri"
# and "ll"), so the two sides of a hybrid search read two queries.
_INVISIBLE = [*range(0x00, 0x09), *range(0x0E, 0x1C), *range(0x7F, 0x85), *range(0x86, 0xA0),
              0xAD, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2065),
              0xFEFF]
_UNSEEN = str.maketrans(dict.fromkeys(map(chr, _INVISIBLE)))
_MARKS = {**_UNSEEN, ord("\u2122"): " ", ord("\u2120"): " "}
_SLASHES = str.maketrans({"\u2044": "/", "\u2215": "/"})  # ⁄ ∕
# NFKC spells a vulgar fraction as digits around a fraction slash, glued to a whole number
# before it ("1½" -> "11⁄2", eleven halves): a space keeps the mixed number "1 1/2".
_MIXED = re.compile(r"(?<=\d)(?=[\u00bc-\u00be\u2150-\u215f\u2189])")


def drop_invisible(text: str) -> str:
    """``text`` without the invisible characters ``nfkc`` drops (for autocomplete's keys,
    which fold text their own way)."""
    return text.translate(_UNSEEN)


def nfkc(text: str) -> str:
    """``text`` in Unicode NFKC, trade marks and invisible characters dropped and fraction
    slashes as "/" (a mixed number "1½" as "1 1/2")."""
    text = _MIXED.sub(" ", text.translate(_MARKS))
    return unicodedata.normalize("NFKC", text).translate(_SLASHES)


def normalise(text: str) -> str:
    """``text`` in Unicode NFKC (``nfkc``) with each whitespace run one space, none at either
    end."""
    return " ".join(nfkc(text).split())


def case_blind(model: TwoTowerModel) -> bool:
    """True when ``model``'s query tower gives "DRILL" the vector of "drill" (an uncased
    tokenizer, such as all-MiniLM-L6-v2's): then lower-casing queries first changes nothing
    the tower sees, and case variants of a query can share one cached vector."""
    vectors = model.encode_query([_CASE_PROBE, _CASE_PROBE.lower()]).numpy()
    return bool(np.allclose(vectors[0], vectors[1], rtol=0.0, atol=1e-5))


def query_problem(text: str) -> str | None:
    """Why ``text`` cannot be searched (a message that says what to send), or None."""
    if not text.strip():
        return "query is empty; send the words the shopper typed"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"query is not valid Unicode: character {e.start} is a lone surrogate "
                f"({text[e.start]!a}); send the query as UTF-8 text")
    if not any(c.isalnum() for c in nfkc(text)):
        if "\ufffd" in text:  # what undecodable bytes become
            return ("query has no letters or digits, only U+FFFD replacement characters; "
                    "send the query as UTF-8 text")
        return "query has no letters or digits; send the words the shopper typed"
    return None
