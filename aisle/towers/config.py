"""Tower configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aisle.data.schema import PRODUCT_FIELDS

Pooling = Literal["mean", "cls", "max"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class TowerConfig:
    # Pooling of token states into one vector; the SBERT paper (Reimers & Gurevych, 2019,
    # table 7) finds mean best for MiniLM-style bi-encoders, cls/max are kept for comparison.
    pooling: Pooling = "mean"
    # Shopper queries are short (median 3 words); 32 word pieces cover >99.9% of homedepot's.
    max_query_length: int = 32
    # Title + brand + category + a truncated description fit in 128 word pieces; longer inputs
    # cost quadratic attention time for little gain.
    max_product_length: int = 128
    # Which product fields become tower input, in this order (see towers/text.py).
    product_fields: tuple[str, ...] = PRODUCT_FIELDS
    # Descriptions can run to pages; keep the head, where the useful facts are.
    max_description_chars: int = 300
    batch_size: int = 64
    device: Device = "auto"
