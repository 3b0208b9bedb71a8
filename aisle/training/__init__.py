"""Two-step cascade training of the towers (Instacart ITEMS)."""

from __future__ import annotations
