"""The embedding job: blocks, checkpoints and resume, the embedding cache."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aisle.indexing.build import build_version
from aisle.indexing.embed_cache import EmbeddingCache, cache_key, text_hash
from aisle.indexing.embed_job import embed_catalog
from aisle.indexing.versions import EMBED_CACHE, WORK
from aisle.retrieval.store import load_index
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


def test_damaged_cached_or_checkpointed_vectors_are_encoded_again_not_indexed(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    """A cache shard or a block checkpoint whose vectors were zeroed (its header kept) was
    read as it was: every build, --force too, failed with "index vectors must be
    L2-normalised", blaming the vectors and naming neither folder."""
    data = prepare_catalog(catalog, "day1")
    root = tmp_path / "root"
    whole = build_version(data, base_model, root)
    shard = sorted((root / EMBED_CACHE).glob("*/*.vecs.npy"))[0]
    damaged = np.load(shard, mmap_mode="r+")
    damaged[:7] = 0.0
    damaged[7] = np.nan
    damaged.flush()
    del damaged
    counting.texts.clear()
    again = build_version(data, base_model, root, force=True)
    assert len(counting.texts) == 8  # the damaged ones alone
    a, b = vectors_by_product(whole), vectors_by_product(again)
    for pid in a:
        np.testing.assert_allclose(a[pid], b[pid], atol=1e-5)
    # Their new vectors were stored, and win over the damaged copies: nothing is encoded again.
    counting.texts.clear()
    build_version(data, base_model, root, force=True)
    assert counting.texts == []

    # A block checkpoint zeroed after a killed build: that block is embedded again.
    killed = tmp_path / "killed"
    embed_catalog(data, base_model, killed / WORK)
    block = killed / WORK / "block-000001.npy"
    zeroed = np.load(block)
    np.save(block, np.zeros_like(zeroed))
    counting.texts.clear()
    resumed = build_version(data, base_model, killed)
    assert len(counting.texts) == 40  # block 1's products, from the cache-less root
    b = vectors_by_product(resumed)
    for pid in a:
        np.testing.assert_allclose(a[pid], b[pid], atol=1e-5)


def test_each_backend_and_int8_generation_has_its_own_cache() -> None:
    """torch, fp32 and int8 vectors of one model differ, and int8's changed on 2026-12-05 (one
    text a call): none is read for another."""
    keys = {cache_key("fp", b) for b in ("torch", "onnx-fp32", "onnx-int8")}
    assert len(keys) == 3
    assert cache_key("fp", "onnx-int8") != "fp-onnx-int8"  # int8's older, batched vectors


def test_the_cache_ignores_and_removes_a_shard_without_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EmbeddingCache(tmp_path, "m", 4)
    cache.add(["a" * 32, "b" * 32], np.eye(4, dtype=np.float32)[:2])
    cache.add(["b" * 32, "c" * 32], np.eye(4, dtype=np.float32)[2:])  # b is kept once
    # A shard killed between its two files: vectors written, keys not.
    orphan = tmp_path / "m" / "99999999999999999999-dead.vecs.npy"
    np.save(orphan, np.ones((1, 4), np.float32))
    with caplog.at_level("INFO", logger="aisle.indexing.embed_cache"):
        again = EmbeddingCache(tmp_path, "m", 4)
    assert len(again) == 3
    assert not orphan.exists() and f"removed {orphan.name}" in caplog.text
    assert len(list((tmp_path / "m").iterdir())) == 4  # the two whole shards, nothing else
    vecs, hit = again.lookup(["c" * 32, "x" * 32, "a" * 32, "b" * 32])
    assert list(hit) == [True, False, True, True]
    np.testing.assert_array_equal(vecs[[0, 2, 3]], np.eye(4, dtype=np.float32)[[3, 0, 1]])
    assert list(again.holds(["c" * 32, "x" * 32, "a" * 32, "b" * 32])) == list(hit)
    assert list(EmbeddingCache(tmp_path, "empty", 4).holds(["a" * 32])) == [False]
    shutil.rmtree(tmp_path / "m")
    assert len(EmbeddingCache(tmp_path, "m", 4)) == 0


def _kill_after_blocks(
    model: TwoTowerModel, monkeypatch: pytest.MonkeyPatch, blocks: int
) -> None:
    """Make the product tower raise (as a killed process would stop) after ``blocks`` calls."""
    inner, calls = model.product.encode, [0]

    def encode(texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        calls[0] += 1
        if calls[0] > blocks:
            raise KeyboardInterrupt("killed")
        return inner(texts, progress)

    monkeypatch.setattr(model.product, "encode", encode)


def test_a_resume_against_the_catalog_prepared_again_in_other_blocks_keeps_every_product(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import aisle.data.dataset as dataset

    root = tmp_path / "root"
    in_40s = prepare_catalog(catalog, "in-40s")  # 3 blocks of 40
    with monkeypatch.context() as m:
        _kill_after_blocks(base_model, m, 2)
        with pytest.raises(KeyboardInterrupt):
            build_version(in_40s, base_model, root)
    assert (root / WORK / "block-000001.parquet").is_file()
    # The same catalog (same fingerprint) prepared again with blocks of 100: block 0 and 1
    # now hold other products than the checkpoints of blocks 0 and 1.
    monkeypatch.setattr(dataset, "ROW_GROUP_SIZE", 100)
    in_100s = dataset.prepare(tmp_path / "in-40s-csv", tmp_path / "in-100s")
    index = load_index(build_version(in_100s, base_model, root))
    assert sorted(index.product_ids) == sorted(catalog["product_id"])
    assert index.manifest["count"] == 120 and index.manifest["embedding"]["resumed_blocks"] == 0


def test_a_checkpoint_is_reused_only_for_the_products_of_its_block(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    first = embed_catalog(prepare_catalog(catalog, "day1"), base_model, work)
    # The same catalog in another order: same fingerprint, same block sizes, other blocks.
    shuffled = catalog.sample(frac=1, random_state=0).reset_index(drop=True)
    counting.texts.clear()
    again = embed_catalog(prepare_catalog(shuffled, "shuffled"), base_model, work)
    assert list(again.rows["product_id"]) == list(shuffled["product_id"])
    assert again.resumed_blocks == 0 and len(counting.texts) == 120
    by_id = dict(zip(first.rows["product_id"], first.vectors, strict=True))
    np.testing.assert_allclose(
        again.vectors, np.stack([by_id[p] for p in shuffled["product_id"]]), atol=1e-5
    )
    # Run again with that work dir: now every checkpoint holds its block's products.
    counting.texts.clear()
    resumed = embed_catalog(prepare_catalog(shuffled, "shuffled-2"), base_model, work)
    assert resumed.resumed_blocks == 3 and not counting.texts


def test_an_embedding_job_whose_catalog_changes_under_it_fails_instead_of_publishing(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import aisle.indexing.embed_job as embed_job
    from aisle.errors import AisleError

    data = prepare_catalog(catalog, "day1")
    # More products than were counted at the start: the one array cannot hold them.
    counted = embed_job.product_count(data)
    with monkeypatch.context() as m:
        m.setattr(embed_job, "product_count", lambda p: counted - 1)
        with pytest.raises(AisleError, match="changed while they were embedded"):
            embed_catalog(data, base_model, tmp_path / "work")
    # Fewer: nothing is published.
    blocks = embed_job.iter_product_blocks
    monkeypatch.setattr(embed_job, "iter_product_blocks", lambda p: list(blocks(p))[:2])
    root = tmp_path / "root"
    with pytest.raises(AisleError, match="gave 80 products, the catalog has 120"):
        build_version(data, base_model, root)
    assert not (root / "versions").exists() or not any((root / "versions").iterdir())


def test_checkpoints_left_without_their_state_file_are_discarded(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    """A kill while a foreign work dir is deleted (its state file gone first, its blocks not
    yet) must not let the next build take those blocks as its own."""
    data = prepare_catalog(catalog.iloc[:80], "day1")
    work = tmp_path / "work"
    first = embed_catalog(data, base_model, work)
    # Another model's checkpoints (same products, same dimension), half deleted.
    rng = np.random.default_rng(0)
    for i in range(2):
        foreign = rng.standard_normal((40, base_model.dim)).astype(np.float32)
        np.save(work / f"block-{i:06d}.npy", foreign / np.linalg.norm(foreign, axis=1)[:, None])
    (work / "state.json").unlink()
    counting.texts.clear()
    again = embed_catalog(data, base_model, work)
    assert again.resumed_blocks == 0 and len(counting.texts) == 80
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-5)


def test_a_block_killed_while_it_is_embedded_again_is_not_taken_from_its_old_checkpoint(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A re-embedded block's new vectors land before its new rows: a kill in between must not
    leave the old rows (the block's "done" marker) over the new vectors."""
    import aisle.indexing.embed_job as embed_job

    one_block = catalog.iloc[:40]
    data = prepare_catalog(one_block, "day1")
    work = tmp_path / "work"
    first = embed_catalog(data, base_model, work)
    # The same products in another order (same fingerprint, same block sizes): the checkpoint
    # of block 0 is refused and the block embedded again; killed after its vectors are out.
    shuffled = prepare_catalog(one_block.sample(frac=1, random_state=0), "shuffled")
    publish = embed_job.publish

    def killed_at_rows(tmp: Path, path: Path) -> None:
        if path.suffix == ".parquet":
            raise KeyboardInterrupt("killed")
        publish(tmp, path)

    with monkeypatch.context() as m:
        m.setattr(embed_job, "publish", killed_at_rows)
        with pytest.raises(KeyboardInterrupt):
            embed_catalog(shuffled, base_model, work)
    # Back to the first order: block 0 must be embedded again, not read as the old rows with
    # the shuffled block's vectors.
    again = embed_catalog(prepare_catalog(one_block, "day1-again"), base_model, work)
    assert list(again.rows["product_id"]) == list(one_block["product_id"])
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-5)
