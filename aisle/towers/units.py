"""Sizes in one spelling for the towers: ``12"``, ``12in``, ``12 in.`` and ``12 inches`` all
read ``12 inch``.

Product search leans on sizes ("19/32 osb", "20v drill", "2x4"), and shoppers and catalogs
spell them differently: titles write ``20-Volt`` and ``1.9 cu. ft.``, queries ``20v`` and
``2 cu ft``. Word-piece tokenizers split each spelling differently, so the towers see
different tokens for the same size. With ``TowerConfig.normalise_units`` on, both towers read
every text through ``normalise_units`` (at training, indexing and serving alike); the BM25
analyzer has its own unit handling and is not affected.

Only a unit right after a number changes ("in" the preposition stays), and each unit takes an
English word the base model knows ("volt", not "v").
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import torch

from aisle.towers.config import TowerConfig
from aisle.towers.encoder import Tower
from aisle.towers.onnx import OnnxTower
from aisle.towers.static import StaticTower

# Canonical word -> spellings after a number (case-insensitive; a trailing "." is dropped).
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "inch": ("inches", "inch", "in"),
    "feet": ("feet", "foot", "ft"),
    "cubic": ("cubic", "cu"),
    "square": ("square", "sq"),
    "gallon": ("gallons", "gallon", "gal"),
    "ounce": ("ounces", "ounce", "oz"),
    "pound": ("pounds", "pound", "lbs", "lb"),
    "watt": ("watts", "watt", "w"),
    "volt": ("volts", "volt", "v"),
    "amp": ("amperes", "ampere", "amps", "amp"),
}
_CANONICAL = {s: word for word, spellings in _SPELLINGS.items() for s in spellings}
_NUMBER = r"\d+(?:[./]\d+)*"
_UNIT = re.compile(
    rf"(?<![\w.])({_NUMBER})\s*(?:-\s*)?"
    rf"({'|'.join(sorted(_CANONICAL, key=len, reverse=True))})"
    # Not inside a word or a model number ("4V2"), not "2 in 1" / "2-in-1", not "w/".
    r"(?![a-z\d])(?<!in(?=\s*-?\s*1(?![\d./])))(?<!w(?=/))\.?",
    re.IGNORECASE,
)
# "cu. ft." / "sq. ft." after a number: the second unit follows the first, not a number.
_SECOND = re.compile(r"\b(cubic|square)\s+(feet|foot|ft)(?![a-z])\.?", re.IGNORECASE)
# Inch marks: a double quote, two single quotes, or a (double) prime; then feet marks.
_INCHES = re.compile(rf"(?<![\d./])({_NUMBER})\s*(?:''|[\"\u201d\u2033]|\u2032\u2032)")
_FEET = re.compile(rf"(?<![\d./])({_NUMBER})\s*['\u2019\u2032]")
_TIMES = re.compile(rf"(?<=\d)\s*x\s*(?={_NUMBER})", re.IGNORECASE)


def _unit(match: re.Match[str]) -> str:
    # A space after, so "6 in.x 8 in." does not glue the unit to the next word; normalise_units
    # collapses the spaces.
    return f"{match.group(1)} {_CANONICAL[match.group(2).lower()]} "


def normalise_units(text: str) -> str:
    """``text`` with every size in one spelling: ``2x4`` -> ``2 x 4``, ``3/4"`` -> ``3/4
    inch``, ``20-Volt`` / ``20v`` -> ``20 volt``, ``1.9 cu. ft.`` -> ``1.9 cubic feet``."""
    text = _INCHES.sub(r"\1 inch", text)
    text = _FEET.sub(r"\1 feet", text)
    text = _TIMES.sub(" x ", text)
    text = _UNIT.sub(_unit, text)
    text = _SECOND.sub(lambda m: f"{m.group(1).lower()} feet ", text)
    return " ".join(text.split())


# One size of each spelling and each exception the rules make: what ``rules_digest`` runs.
_PROBES = (
    '12" tile', "12'' tile", "12in", "12 in. pipe", "12 inches", "6 ft", "6' ladder",
    "8 foot", "2x4x8", "3/4 x 8", "20-Volt drill", "20v", "1.9 cu. ft.", "1.9 cubic foot",
    "2 sq ft", "2 sq. ft.", "5 gal", "16 oz", "10 lbs", "60 w bulb", "60 watts", "15 amp",
    "2 amperes", "2 in 1", "2-in-1", "fan w/ light", "4V2 model", "1/2 in", "2\u2033",
    "2\u2032", "2\u2032\u2032", "2\u201d", "the 3 in the box", "10.5v",
)


@functools.cache
def rules_digest() -> str:
    """A digest of what ``normalise_units`` does: its patterns, its spellings and its output
    on ``_PROBES``. A model's fingerprint holds it (with ``normalise_units`` on), so vectors
    embedded under older rules (an embedding cache, an index) are not taken for new ones."""
    patterns = [p.pattern for p in (_UNIT, _SECOND, _INCHES, _FEET, _TIMES)]
    blob = json.dumps([_SPELLINGS, patterns, [normalise_units(t) for t in _PROBES]])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class UnitTower:
    """A tower that reads its texts through ``normalise_units``; everything else is the
    wrapped tower's (its weights, dimension, device and vocabulary)."""

    def __init__(self, tower: Tower | OnnxTower | StaticTower) -> None:
        self.tower = tower

    def __getattr__(self, name: str) -> Any:
        # Dunders and ``tower`` itself are not delegated: copy and pickle probe for dunders on
        # an instance that may not have ``tower`` yet, and must copy the wrapper, not the tower.
        if name == "tower" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.tower, name)

    def encode(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        return self.tower.encode([normalise_units(t) for t in texts], progress=progress)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tower.forward([normalise_units(t) for t in texts])


def read_units(
    tower: Tower | OnnxTower | StaticTower | UnitTower, config: TowerConfig
) -> Tower | OnnxTower | StaticTower | UnitTower:
    """``tower`` as ``config`` has it read its texts (``TwoTowerModel`` holds its towers
    through this, so no path embeds text another way); a ``UnitTower`` stays as it is."""
    if config.normalise_units and not isinstance(tower, UnitTower):
        return UnitTower(tower)
    return tower
