"""Loading a built index: manifest checks, the FAISS searcher and the row -> product map."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from aisle.artifacts import MANIFEST, read_manifest
from aisle.configs import from_dict
from aisle.errors import ArtifactError, ManifestMismatch
from aisle.indexing.config import FusionConfig
from aisle.indexing.lexical import BM25Index
from aisle.indexing.searcher import FaissSearcher, Searcher

log = logging.getLogger(__name__)

KIND = "aisle.index"
INDEX_FILE = "index.faiss"
ROWS_FILE = "rows.parquet"
LEXICAL_DIR = "bm25"


@dataclass(frozen=True)
class Hit:
    product_id: str
    title: str
    score: float


@dataclass(frozen=True)
class ProductIndex:
    """A loaded index: ``searcher`` over catalog rows, ``product_ids``/``titles`` per row."""

    root: Path
    manifest: dict[str, Any]
    searcher: Searcher
    product_ids: np.ndarray
    titles: np.ndarray

    @property
    def model_ref(self) -> str:
        return str(self.manifest["model"]["ref"])

    @property
    def model_fingerprint(self) -> str:
        return str(self.manifest["model"]["fingerprint"])

    def check_model(self, fingerprint: str, ref: str = "") -> None:
        if fingerprint != self.model_fingerprint:
            raise ManifestMismatch(
                f"index {self.root} was built with model {self.model_ref} (fingerprint "
                f"{self.model_fingerprint}); the model given {ref or ''} has fingerprint "
                f"{fingerprint}. Query vectors from another model are meaningless against it: "
                "rebuild the index with this model (aisle index --model ...) or use its model"
            )

    @functools.cached_property
    def lexical(self) -> BM25Index:
        """The BM25 index over the same product text, loaded on first use."""
        path = self.root / LEXICAL_DIR
        try:
            return BM25Index.load(path)
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path} is missing or corrupt ({e}); rebuild the index") from e

    def fusion(self) -> FusionConfig:
        """The index's default fusion (set by `aisle tune-fusion`)."""
        return from_dict(FusionConfig, self.manifest.get("fusion", {}))

    def search(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        scores, rows = self.searcher.search(vectors, min(k, self.searcher.count))
        return [
            [
                Hit(str(self.product_ids[r]), str(self.titles[r]), float(s))
                for s, r in zip(srow, rrow, strict=True)
                if r >= 0
            ]
            for srow, rrow in zip(scores, rows, strict=True)
        ]


def index_is_current(out: Path, model_fingerprint: str, products_fingerprint: str) -> bool:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(
        manifest.get("kind") == KIND
        and manifest.get("model", {}).get("fingerprint") == model_fingerprint
        and manifest.get("data", {}).get("products_fingerprint") == products_fingerprint
        and (Path(out) / INDEX_FILE).is_file()
        and (Path(out) / LEXICAL_DIR).is_dir()
    )


def load_index(root: Path, model_fingerprint: str | None = None) -> ProductIndex:
    """Load and verify an index directory; refuse one built by a different model."""
    root = Path(root)
    manifest = read_manifest(root, KIND)
    try:
        index = faiss.read_index(str(root / INDEX_FILE))
    except RuntimeError as e:
        raise ArtifactError(f"{root / INDEX_FILE} is corrupt or missing ({e}); rebuild it") from e
    try:
        rows = pd.read_parquet(root / ROWS_FILE)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{root / ROWS_FILE} is corrupt or missing ({e}); rebuild it") from e
    if not (index.ntotal == len(rows) == manifest["count"]) or index.d != manifest["dim"]:
        raise ArtifactError(
            f"{root} is inconsistent: faiss holds {index.ntotal} x {index.d}, the row map "
            f"{len(rows)}, the manifest {manifest['count']} x {manifest['dim']}; rebuild it"
        )
    loaded = ProductIndex(
        root=root,
        manifest=manifest,
        searcher=FaissSearcher(index),
        product_ids=rows["product_id"].to_numpy(dtype=object),
        titles=rows["title"].to_numpy(dtype=object),
    )
    if model_fingerprint is not None:
        loaded.check_model(model_fingerprint)
    log.info("loaded index %s: %d products, model %s", root, index.ntotal, loaded.model_ref)
    return loaded
