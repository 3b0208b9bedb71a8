"""Two-step cascade training of the towers (Instacart ITEMS)."""

from __future__ import annotations

import os

# A fixed cuBLAS workspace, so that matrix products repeat exactly on CUDA (trainer.py trains
# with deterministic algorithms there). torch reads it once, when cuBLAS first runs, so it is
# set on import, before any model is loaded; an explicit setting wins.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
