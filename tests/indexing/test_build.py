from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from aisle.data.dataset import load_dataset
from aisle.errors import ArtifactError, DataError, ManifestMismatch
from aisle.indexing import build_index, load_index
from aisle.indexing.retrieve import DenseRetriever
from aisle.towers import TowerConfig, TwoTowerModel, load_model


def test_index_holds_every_product_with_a_self_describing_manifest(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel
) -> None:
    manifest = json.loads((sample_index / "manifest.json").read_text())
    ds = load_dataset(sample_data)
    assert manifest["kind"] == "aisle.index"
    assert manifest["count"] == len(ds.products) == 300
    assert manifest["dim"] == 384
    assert manifest["model"]["fingerprint"] == base_model.fingerprint
    assert manifest["data"]["products_fingerprint"] == ds.fingerprint("products")
    index = load_index(sample_index, base_model.fingerprint)
    assert sorted(index.product_ids) == sorted(ds.products["product_id"])
    # the BM25 index inside is the one the manifest describes
    config = manifest["index_config"]
    assert index.lexical.params == {
        "analyzer": config["bm25_analyzer"],
        "fuzzy": config["bm25_fuzzy"],
        "k1": config["bm25_k1"],
        "b": config["bm25_b"],
    }
    assert config["bm25_analyzer"] == "product" and config["bm25_fuzzy"]


def test_flat_search_equals_brute_force(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel
) -> None:
    index = load_index(sample_index)
    ds = load_dataset(sample_data)
    products = base_model.encode_product(ds.products).numpy()
    queries = base_model.encode_query(["cordless drill", "white wall paint"]).numpy()
    scores, rows = index.searcher.search(queries, 5)
    exact = queries @ products.T
    for qi in range(2):
        top = np.argsort(-exact[qi])[:5]
        np.testing.assert_allclose(scores[qi], exact[qi][top], rtol=1e-5, atol=1e-5)
        assert list(index.product_ids[rows[qi]]) == list(ds.products["product_id"].iloc[top])


def test_dense_search_finds_the_right_kind_of_product(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    hits = DenseRetriever(base_model, load_index(sample_index)).hits(["cordless drill"], 5)[0]
    assert len(hits) == 5
    assert all("drill" in h.title for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_k_larger_than_the_catalog_returns_the_whole_catalog(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    hits = DenseRetriever(base_model, load_index(sample_index)).hits(["ladder"], 1000)[0]
    assert len(hits) == 300


def test_an_index_built_by_another_model_is_refused(sample_index: Path) -> None:
    other = load_model(None, TowerConfig(pooling="max"))
    with pytest.raises(ManifestMismatch, match="rebuild the index"):
        load_index(sample_index, other.fingerprint)
    with pytest.raises(ManifestMismatch):
        DenseRetriever(other, load_index(sample_index))


def test_wrong_query_dimension_is_a_clear_error(sample_index: Path) -> None:
    index = load_index(sample_index)
    with pytest.raises(ValueError, match=r"needs \(n, 384\)"):
        index.searcher.search(np.zeros((1, 10), dtype=np.float32), 3)


def test_corrupt_or_inconsistent_index_is_refused(sample_index: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(sample_index, broken)
    (broken / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_index(broken)
    shutil.copytree(sample_index, tmp_path / "short", dirs_exist_ok=True)
    small = faiss.IndexFlatIP(384)
    small.add(np.zeros((3, 384), dtype=np.float32))
    faiss.write_index(small, str(tmp_path / "short" / "index.faiss"))
    with pytest.raises(ArtifactError, match="inconsistent"):
        load_index(tmp_path / "short")
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        load_index(tmp_path)


def test_up_to_date_index_is_reused_and_force_rebuilds(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel
) -> None:
    before = (sample_index / "index.faiss").stat().st_mtime_ns
    build_index(sample_data, base_model, sample_index)
    assert (sample_index / "index.faiss").stat().st_mtime_ns == before


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path, base_model: TwoTowerModel) -> None:
    data = tmp_path / "empty"
    data.mkdir()
    (data / "products.csv").write_text("product_id,title,description,brand,category\n")
    with pytest.raises(DataError, match="no products"):
        build_index(data, base_model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]
