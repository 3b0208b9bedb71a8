"""Suggestion keys: case-, accent- and space-insensitive (``aisle.retrieval.spelling.fold``),
and the one casing suggestions are shown in."""

from __future__ import annotations

from aisle.retrieval.spelling import fold


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
