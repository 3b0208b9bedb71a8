"""Query and product towers over sentence-transformers encoders."""

from __future__ import annotations

from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model
from aisle.towers.text import product_text

__all__ = ["TowerConfig", "TwoTowerModel", "load_model", "product_text"]
