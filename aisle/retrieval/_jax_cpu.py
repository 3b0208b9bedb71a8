"""Keep JAX, when it is installed, off the GPU in processes that use BM25.

``import bm25s`` runs a JAX op as soon as JAX is importable (its top-k selector warms up). On
a CUDA machine with a CUDA build of JAX that makes XLA take 75% of the GPU's memory, its
default preallocation, in every process that imports the index: training, index builds,
evaluation and the service alike, before torch or faiss ask for any. Several such processes
on one GPU then fail to allocate (seen on an H100, 2026-11-27). aisle's BM25 never uses JAX's
top-k, so JAX stays on the CPU unless the environment already chose its platforms.

Imported by ``aisle.retrieval``'s ``__init__``, so it runs before any ``import bm25s`` there.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Should JAX reach a GPU anyway (the environment chose it), it takes memory as it needs it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
