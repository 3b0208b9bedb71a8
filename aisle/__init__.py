"""aisle: two-tower product search relevance (Instacart ITEMS style)."""

from __future__ import annotations

__version__ = "0.1.0"
