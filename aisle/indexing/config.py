"""Index configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IndexKind = Literal["flat"]


@dataclass(frozen=True)
class IndexConfig:
    # Exact inner product over unit vectors (= cosine). The ground truth for every ANN type.
    kind: IndexKind = "flat"


Mode = Literal["dense", "lexical", "hybrid"]
FusionMethod = Literal["convex", "rrf"]


@dataclass(frozen=True)
class FusionConfig:
    """How hybrid mode fuses the dense and the lexical candidate lists (indexing/fusion.py)."""

    method: FusionMethod = "convex"
    # Weight of the dense side in the convex combination; `aisle tune-fusion` picks it on dev.
    weight: float = 0.5
    # RRF's constant (Cormack et al. 2009 use 60).
    rrf_k: float = 60.0
    # Candidates taken from each side before fusing.
    depth: int = 200
