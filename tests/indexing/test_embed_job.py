"""The embedding job: blocks, checkpoints and resume, the embedding cache."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from aisle.indexing.build import build_version
from aisle.indexing.embed_cache import EmbeddingCache, cache_key, text_hash
from aisle.indexing.embed_job import embed_catalog
from aisle.indexing.store import load_index
from aisle.indexing.versions import EMBED_CACHE, WORK
from aisle.towers.model import TwoTowerModel
from tests.indexing.conftest import CountingEncoder, edited


def vectors_by_product(root: Path) -> dict[str, np.ndarray]:
    index = load_index(root)
    flat = index.searcher.index  # type: ignore[attr-defined]
    return {
        str(pid): flat.reconstruct(i)
        for i, pid in enumerate(index.product_ids)
        if pid is not None
    }


def test_a_killed_build_resumes_from_its_checkpoints_and_equals_an_uninterrupted_one(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    data = prepare_catalog(catalog, "day1")
    whole = build_version(data, base_model, tmp_path / "whole")
    assert len(counting.texts) == 120

    # What a build killed after its first block leaves: checkpoints of block 0 (and the
    # half-written temp file of block 1) in ROOT/work, and no version yet.
    killed = tmp_path / "killed"
    embed_catalog(data, base_model, killed / WORK)
    for leftover in ("block-000001.parquet", "block-000002.parquet", "block-000002.npy"):
        (killed / WORK / leftover).unlink()
    (killed / WORK / ".block-000001.parquet.tmp").write_bytes(b"half a file")
    counting.texts.clear()

    resumed = build_version(data, base_model, killed)
    assert len(counting.texts) == 80  # blocks 1 and 2 only: 2 x 40 products
    assert not (killed / WORK).exists()  # checkpoints are dropped once the version is out
    manifest = load_index(killed).manifest
    assert manifest["embedding"]["resumed_blocks"] == 1
    assert manifest["embedding"]["encoded"] == 80
    a, b = vectors_by_product(whole), vectors_by_product(resumed)
    assert a.keys() == b.keys() and len(a) == 120
    for pid in a:
        np.testing.assert_allclose(a[pid], b[pid], atol=1e-5)
    rows_a = pd.read_parquet(whole / "rows.parquet")
    rows_b = pd.read_parquet(resumed / "rows.parquet")
    pd.testing.assert_frame_equal(rows_a, rows_b)


def test_a_work_dir_of_another_catalog_is_discarded(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    embed_catalog(prepare_catalog(catalog.iloc[:40], "small"), base_model, work)
    counting.texts.clear()
    other = catalog.iloc[40:80]
    out = embed_catalog(prepare_catalog(other, "other"), base_model, work)
    assert out.resumed_blocks == 0 and len(counting.texts) == 40
    assert list(out.rows["product_id"]) == list(other["product_id"])


def test_a_rebuild_encodes_only_new_and_changed_products(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    build_version(prepare_catalog(catalog, "day1"), base_model, root)
    counting.texts.clear()
    day2 = edited(catalog)
    build_version(prepare_catalog(day2, "day2"), base_model, root)
    # 5 changed titles + 6 new products; the 105 unchanged come from the cache.
    assert len(counting.texts) == 11
    assert sum("(new model)" in t for t in counting.texts) == 5
    assert sum("brand new thing" in t for t in counting.texts) == 6
    # Cached vectors are the vectors the model gives.
    key = cache_key(base_model.fingerprint, base_model.backend)
    cache = EmbeddingCache(root / EMBED_CACHE, key, base_model.dim)
    texts = base_model.product_texts(day2.iloc[:3])
    cached, hit = cache.lookup([text_hash(t) for t in texts])
    assert hit.all()
    np.testing.assert_allclose(cached, base_model.product.encode(texts).numpy(), atol=1e-5)


def test_the_cache_ignores_a_shard_without_keys(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "m", 4)
    cache.add(["a" * 32, "b" * 32], np.eye(4, dtype=np.float32)[:2])
    cache.add(["b" * 32, "c" * 32], np.eye(4, dtype=np.float32)[2:])  # b is kept once
    # A shard killed between its two files: vectors written, keys not.
    np.save(tmp_path / "m" / "99999999999999999999-dead.vecs.npy", np.ones((1, 4), np.float32))
    again = EmbeddingCache(tmp_path, "m", 4)
    assert len(again) == 3
    vecs, hit = again.lookup(["c" * 32, "x" * 32, "a" * 32, "b" * 32])
    assert list(hit) == [True, False, True, True]
    np.testing.assert_array_equal(vecs[[0, 2, 3]], np.eye(4, dtype=np.float32)[[3, 0, 1]])
    shutil.rmtree(tmp_path / "m")
    assert len(EmbeddingCache(tmp_path, "m", 4)) == 0
