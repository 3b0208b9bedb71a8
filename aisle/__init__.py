"""aisle: two-tower product search relevance (Instacart ITEMS style).

    import aisle
    idx = aisle.open_index("runs/demo/index")
    idx.search("cordless drill", k=10)

``open_index`` is imported on first use, so ``import aisle`` stays light (no torch, no faiss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "Results", "SearchIndex", "__version__", "open_index"]

if TYPE_CHECKING:
    from aisle.api import Result, Results, SearchIndex, open_index


def __getattr__(name: str) -> Any:
    if name in ("open_index", "SearchIndex", "Result", "Results"):
        from aisle import api

        return getattr(api, name)
    raise AttributeError(f"module 'aisle' has no attribute {name!r}")
