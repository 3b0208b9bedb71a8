"""Suggestion keys: case-, accent- and space-insensitive (``aisle.retrieval.spelling.fold``),
and the one casing suggestions are shown in."""

from __future__ import annotations

import re
from collections.abc import Callable

from aisle.retrieval.querytext import drop_invisible
from aisle.retrieval.spelling import fold

_DIGITS = re.compile(r"\d+")
# A comma between digits groups thousands ("10,000"): digit_runs reads no number break there.
_GROUPING = re.compile(r"(?<=\d),(?=\d)")
# A prefix ending on a number that may go on: a digit as digit_runs reads one (\d, not
# str.isdigit, which U+1369, an Ethiopic numeral, also passes), or one and a comma ("10,").
_HALF_TYPED = re.compile(r"\d,?\Z")


def key(text: str) -> str:
    """The lookup key of a suggestion: ``fold`` without invisible characters (as search
    drops them: a zero-width space or a BOM) or the trailing space."""
    return fold(drop_invisible(text)).rstrip()


def prefix_key(prefix: str) -> str:
    """The key of a typed prefix. A trailing space stays: "moen " must not match "moenix"."""
    return fold(drop_invisible(prefix))


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
    return " ".join(drop_invisible(text).split()).lower()


def numbers(text: str) -> tuple[str, ...]:
    """The numbers a suggestion states, as a sorted multiset: sizes, counts, voltages, model
    numbers. Embeddings barely tell "24 inch vanity" from "36 inch vanity" (cosine 0.89) or
    "carlon 1 gang" from "carlon 2 gang"; two suggestions whose numbers differ are never
    duplicates. Sorted, so "2x8x8 treated" and "2x8 treated 8ft" state the same ones; read
    as ``digit_runs`` reads them, so "10,000 btu" and "10000 btu" state the same one."""
    return tuple(sorted(d.lstrip("0") or "0" for d in digit_runs(fold(text))))


def digit_runs(text: str) -> tuple[str, ...]:
    """The numbers of ``text`` as written, in order ("3/4 inch" -> ("3", "4"), "10,000 btu" ->
    ("10000",)): typo matching keeps them (``keeps_numbers``)."""
    return tuple(_DIGITS.findall(_GROUPING.sub("", text)))


def keeps_numbers(typed: str, key: tuple[str, ...]) -> bool:
    """Whether a suggestion whose numbers are ``key`` (``digit_runs``) states every number
    of the ``typed`` prefix unchanged, in order: each one equal, except that a number the
    prefix ends on may be half typed ("dewalt 2" -> "dewalt 20v"). Typo edits may change
    letters, never a number: "10 ga" must not become "100 gal", nor "3/4" "3/8"."""
    return numbers_kept(typed)(key)


def numbers_kept(typed: str) -> Callable[[tuple[str, ...]], bool]:
    """``keeps_numbers`` for one ``typed`` prefix, read once, over many suggestions."""
    runs = digit_runs(typed)
    *whole, last = runs or ("",)
    half_typed = bool(_HALF_TYPED.search(typed))

    def keeps(key: tuple[str, ...]) -> bool:
        if len(runs) > len(key):
            return False
        if any(a != b for a, b in zip(whole, key, strict=False)):
            return False
        if not runs:
            return True
        stated = key[len(runs) - 1]
        return stated.startswith(last) if half_typed else stated == last

    return keeps
