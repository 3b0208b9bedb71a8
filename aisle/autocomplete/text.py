"""Suggestion keys: case-, accent- and space-insensitive (``aisle.retrieval.spelling.fold``)."""

from __future__ import annotations

from aisle.retrieval.spelling import fold


def key(text: str) -> str:
    """The lookup key of a suggestion: ``fold`` without the trailing space."""
    return fold(text).rstrip()


def prefix_key(prefix: str) -> str:
    """The key of a typed prefix. A trailing space stays: "moen " must not match "moenix"."""
    return fold(prefix)

