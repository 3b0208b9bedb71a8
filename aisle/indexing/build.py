"""``aisle index``: stream the catalog in blocks, embed, write FAISS + id map + manifest."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from tqdm import tqdm

from aisle.artifacts import atomic_dir, read_manifest, write_manifest
from aisle.configs import to_dict
from aisle.data.dataset import iter_product_blocks, prepared_dir, product_count
from aisle.data.schema import PRODUCTS
from aisle.errors import DataError
from aisle.indexing.config import FusionConfig, IndexConfig
from aisle.indexing.lexical import BM25Index
from aisle.indexing.store import INDEX_FILE, KIND, LEXICAL_DIR, ROWS_FILE, index_is_current
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)


def build_index(
    data: Path,
    model: TwoTowerModel,
    out: Path,
    config: IndexConfig | None = None,
    force: bool = False,
) -> Path:
    """Embed every product of ``data`` with ``model.encode_product`` and publish at ``out``.

    A build whose manifest already records this model and this catalog is reused unless
    ``force``.
    """
    config = config or IndexConfig()
    started = time.perf_counter()
    with prepared_dir(Path(data)) as prep:
        data_manifest = read_manifest(prep, "aisle.dataset")
        catalog_fp = data_manifest["fingerprints"][PRODUCTS]
        if not force and index_is_current(Path(out), model.fingerprint, catalog_fp):
            log.info("index at %s is up to date (same model and catalog); reusing it", out)
            return Path(out)
        total = product_count(prep)
        if total == 0:
            raise DataError(f"{data}: the catalog has no products; nothing to index")
        index = faiss.IndexFlatIP(model.dim)
        frames: list[pd.DataFrame] = []
        texts: list[str] = []
        with tqdm(total=total, desc="embedding catalog", unit="product") as bar:
            for block in iter_product_blocks(prep):
                block_texts = model.product_texts(block)
                vectors = model.product.encode(block_texts).numpy()
                index.add(np.ascontiguousarray(vectors, dtype=np.float32))
                frames.append(block[["product_id", "title"]])
                texts.extend(block_texts)
                bar.update(len(block))
        rows = pd.concat(frames, ignore_index=True)
        # BM25 over the very strings the product tower embedded, for lexical and hybrid modes.
        lexical = BM25Index.build(texts, rows["product_id"].tolist())
        with atomic_dir(Path(out)) as tmp:
            faiss.write_index(index, str(tmp / INDEX_FILE))
            rows.to_parquet(tmp / ROWS_FILE, index=False)
            lexical.save(tmp / LEXICAL_DIR)
            write_manifest(
                tmp,
                {
                    "kind": KIND,
                    "index_config": to_dict(config),
                    "model": {
                        "ref": model.ref,
                        "fingerprint": model.fingerprint,
                        "tower_config": to_dict(model.config),
                    },
                    "dim": model.dim,
                    "lexical": {"kind": "bm25s", "dir": LEXICAL_DIR},
                    "fusion": to_dict(FusionConfig()),
                    "count": int(index.ntotal),
                    "data": {"name": data_manifest["name"], "products_fingerprint": catalog_fp},
                    "build_seconds": round(time.perf_counter() - started, 1),
                },
            )
    log.info("indexed %d products in %.1fs -> %s", total, time.perf_counter() - started, out)
    return Path(out)
