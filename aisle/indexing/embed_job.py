"""The embedding step of an index build: stream, embed, checkpoint, resume.

The catalog streams one parquet row group (block) at a time. Each block's product texts come
from ``model.product_texts``; texts already in the embedding cache are not encoded again. A
finished block is checkpointed in the work directory (``block-<i>.npy`` then
``block-<i>.parquet``, the parquet last, so a block is done exactly when its parquet exists);
a killed build run again with the same work directory skips the finished blocks. A work
directory left by another model, catalog or block layout (the same catalog prepared again with
other row groups, or in another order) is discarded, never mixed in; a checkpoint is used
only if it holds exactly the products of its block.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from aisle.artifacts import atomic_write_text, publish, read_manifest
from aisle.data.dataset import iter_product_blocks, product_count
from aisle.data.fields import field_columns
from aisle.data.schema import PRODUCTS
from aisle.errors import AisleError
from aisle.indexing.embed_cache import EmbeddingCache, text_hashes, unit_rows
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)

EmbedEngine = Literal["local", "ray"]
STATE = "state.json"
PARTITION = "partition"
Encoder = Callable[[Sequence[str]], np.ndarray]


def check_engine(engine: EmbedEngine) -> None:
    """Refuse ``ray`` where Ray is not installed, before a build touches its --out."""
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise AisleError(
            "--engine ray needs Ray, which is not installed: pip install 'aisle[ray]', or use "
            "--engine local"
        )


@dataclass(frozen=True)
class EmbeddedCatalog:
    """Every product of a catalog, in catalog order, with its text and vector."""

    # product_id, title, text, text_hash, and partition when the catalog has one
    rows: pd.DataFrame
    vectors: np.ndarray  # (n, D) float32, unit rows
    encoded: int  # texts this run sent to the encoder (cache misses of unfinished blocks)
    resumed_blocks: int  # blocks taken from an earlier, interrupted run


def _block_paths(work: Path, i: int) -> tuple[Path, Path]:
    return work / f"block-{i:06d}.npy", work / f"block-{i:06d}.parquet"


def _prepare_work(work: Path, state: dict[str, object]) -> None:
    path = work / STATE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            old = None
        if old == state:
            return
        log.info("work dir %s belongs to another build (%s); starting afresh", work, old)
        shutil.rmtree(work)
    elif work.is_dir() and any(work.iterdir()):
        # Checkpoints without a state file say nothing of the model or catalog that made them
        # (a kill while rmtree above deleted the state first): never reuse them.
        log.info("work dir %s has no %s; starting afresh", work, STATE)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state, sort_keys=True))


def block_sizes(prepared: Path) -> list[int]:
    """The products file's row-group (block) sizes, from its footer. The catalog fingerprint
    ignores row order and grouping, so the same catalog prepared again (another
    ``ROW_GROUP_SIZE``, another order) may have other blocks: the work state records these,
    and ``_load_block`` checks each checkpoint's product ids (which also catches a new order).
    """
    meta = pq.ParquetFile(Path(prepared) / f"{PRODUCTS}.parquet").metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def row_columns(block: pd.DataFrame) -> list[str]:
    """The catalog columns an index keeps per row: id, title, partition and the fields."""
    return ["product_id", "title", *([PARTITION] if PARTITION in block else []),
            *field_columns(block)]


def _load_block(
    work: Path, i: int, dim: int, product_ids: Sequence[str]
) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Block ``i``'s checkpoint, if it holds exactly ``product_ids`` (in order) as ``dim``-d
    vectors; otherwise None, and the block is embedded again."""
    vec_path, rows_path = _block_paths(work, i)
    if not rows_path.is_file():
        return None
    try:
        rows = pd.read_parquet(rows_path)
        vectors = np.load(vec_path)
    except (OSError, ValueError) as e:
        log.warning("checkpoint of block %d is unreadable (%s); embedding it again", i, e)
        return None
    if (
        "product_id" not in rows.columns
        or rows["product_id"].tolist() != list(product_ids)
        or vectors.shape != (len(rows), dim)
    ):
        log.warning("checkpoint of block %d does not hold that block's products; embedding it "
                    "again", i)
        return None
    if not unit_rows(vectors).all():
        log.warning("checkpoint of block %d holds vectors that are not unit vectors (a damaged "
                    "file?); embedding it again", i)
        return None
    return rows, vectors


def _save_block(work: Path, i: int, rows: pd.DataFrame, vectors: np.ndarray) -> None:
    vec_path, rows_path = _block_paths(work, i)
    # A block embedded again (its checkpoint held other products) loses its old "done" marker
    # first: a kill after the new vectors must not leave the old rows over them.
    rows_path.unlink(missing_ok=True)
    tmp = vec_path.with_name(f".{vec_path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, vectors)
    publish(tmp, vec_path)
    tmp = rows_path.with_name(f".{rows_path.name}.tmp")
    rows.to_parquet(tmp, index=False)
    publish(tmp, rows_path)  # the block is done


def local_encoder(model: TwoTowerModel) -> Encoder:
    return lambda texts: model.product.encode(texts).numpy()


def embed_catalog(
    prepared: Path,
    model: TwoTowerModel,
    work: Path,
    cache: EmbeddingCache | None = None,
    engine: EmbedEngine = "local",
) -> EmbeddedCatalog:
    """Embed every product of the prepared dataset ``prepared``, resuming from ``work``."""
    prepared, work = Path(prepared), Path(work)
    catalog_fp = read_manifest(prepared, "aisle.dataset")["fingerprints"][PRODUCTS]
    _prepare_work(
        work,
        {
            "model": model.fingerprint,
            "runtime": model.runtime,
            "products": catalog_fp,
            "blocks": block_sizes(prepared),
        },
    )
    if engine == "ray":
        from aisle.indexing.ray_engine import RayEncoder

        encode: Encoder = RayEncoder(model)
    else:
        encode = local_encoder(model)
    frames: list[pd.DataFrame] = []
    encoded = resumed = filled = 0
    total = product_count(prepared)
    # One array for the whole catalog, filled block by block: a list of blocks joined at the
    # end would hold every vector twice while it is joined (30 GB for 10M products).
    out = np.empty((total, model.dim), np.float32)
    with tqdm(total=total, desc="embedding catalog", unit="product") as bar:
        for i, block in enumerate(iter_product_blocks(prepared)):
            done = _load_block(work, i, model.dim, block["product_id"].tolist())
            if done is not None:
                rows, vectors = done
                # Fields are read from the catalog, not the checkpoint: one written before
                # fields were stored has none.
                rows = rows.assign(**{c: block[c].to_numpy() for c in field_columns(block)})
                resumed += 1
            else:
                texts = model.product_texts(block)
                hashes = text_hashes(texts)
                vectors, hit = (
                    cache.lookup(hashes)
                    if cache is not None
                    else (np.zeros((len(texts), model.dim), np.float32), np.zeros(len(texts), bool))
                )
                miss = np.flatnonzero(~hit)
                if len(miss):
                    fresh = np.asarray(encode([texts[j] for j in miss]), dtype=np.float32)
                    vectors[miss] = fresh
                    encoded += len(miss)
                    if cache is not None:
                        cache.add([hashes[j] for j in miss], fresh)
                rows = block[row_columns(block)].assign(text=texts, text_hash=hashes)
                _save_block(work, i, rows, vectors)
            if filled + len(vectors) > total:
                raise AisleError(f"{prepared}: its products changed while they were embedded "
                                 f"(more than the {total} counted at the start); build again")
            out[filled:filled + len(vectors)] = vectors
            filled += len(vectors)
            frames.append(rows)
            bar.update(len(rows))
    if resumed:
        log.info("resumed: %d block(s) came from the checkpoints in %s", resumed, work)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(rows) != total or filled != total:
        # Never publish an index that silently lacks products.
        raise AisleError(
            f"embedding {prepared} gave {len(rows)} products, the catalog has {total}; "
            f"delete {work} and build again"
        )
    log.info("embedded %d products (%d encoded, the rest cached)", len(rows), encoded)
    return EmbeddedCatalog(rows, out, encoded, resumed)
