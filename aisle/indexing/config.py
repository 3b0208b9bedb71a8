"""Index configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IndexKind = Literal["flat"]


@dataclass(frozen=True)
class IndexConfig:
    # Exact inner product over unit vectors (= cosine). The ground truth for every ANN type.
    kind: IndexKind = "flat"
