"""Suggestion keys: case-, accent- and space-insensitive (``aisle.retrieval.spelling.fold``),
and the one casing suggestions are shown in."""

from __future__ import annotations

import re

from aisle.retrieval.spelling import fold

_DIGITS = re.compile(r"\d+")


def key(text: str) -> str:
    """The lookup key of a suggestion: ``fold`` without the trailing space."""
    return fold(text).rstrip()


def prefix_key(prefix: str) -> str:
    """The key of a typed prefix. A trailing space stays: "moen " must not match "moenix"."""
    return fold(prefix)


def variant_key(text: str) -> str:
    """What the case, accent and spacing variants of one suggestion share: its key without
    spaces ("Shower Head", "shower  head" and "showerhead" are one suggestion)."""
    return key(text).replace(" ", "")


def shown(text: str) -> str:
    """A suggestion as shown: lower case, single spaces, accents kept.

    Lower case rather than each query's most common cased form: 97% of homedepot's log is
    typed in lower case, so lower case is the shoppers' own convention and a suggestion reads
    as the continuation of what they typed; a list that mixes "MOEN Chateau" (catalog casing)
    with "moen shower faucet" and "GLACIER BAY BATHROOM VANITY" reads as noise. The cost:
    acronyms and brand casings lose their capitals ("gfci", "dewalt")."""
    return " ".join(text.split()).lower()


def numbers(text: str) -> tuple[str, ...]:
    """The numbers a suggestion states, as a sorted multiset: sizes, counts, voltages, model
    numbers. Embeddings barely tell "24 inch vanity" from "36 inch vanity" (cosine 0.89) or
    "carlon 1 gang" from "carlon 2 gang"; two suggestions whose numbers differ are never
    duplicates. Sorted, so "2x8x8 treated" and "2x8 treated 8ft" state the same ones."""
    return tuple(sorted(d.lstrip("0") or "0" for d in _DIGITS.findall(fold(text))))


def digits(text: str) -> str:
    """The digits of ``text`` in order ("3/4 inch" -> "34"): typo matching keeps them."""
    return "".join(c for c in text if c.isdigit())
