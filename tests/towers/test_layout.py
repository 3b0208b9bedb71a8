"""A model directory is a sentence-transformers model: shared towers as the plain encoder,
untied ones behind a query/document Router; directories in the older layout still load."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import modules as models

from aisle.artifacts import tree_fingerprint, write_manifest
from aisle.towers.model import KIND, TwoTowerModel, load_model
from aisle.towers.units import normalise_units

QUERIES = ["cordless drill", "Milk Chocolate", "3/4 in. x 10 ft. PVC pipe", "Ünïcödé ß 電動ドリル"]
PRODUCTS = pd.DataFrame(
    [
        {"product_id": "1", "title": "Claw Hammer", "brand": "Estwing", "category": "Hand Tools",
         "description": "A 16 oz. forged steel hammer with a   shock-reduction grip."},
        {"product_id": "2", "title": "20-Volt MAX Cordless Drill", "brand": "DEWALT",
         "category": "", "description": None},
        {"product_id": "3", "title": "Ceiling Fan", "brand": "", "category": "Lighting",
         "description": "word " * 200},
    ]
)
MIN_COSINE = 0.9999


def cosines(a: Any, b: Any) -> np.ndarray:
    """Row-wise cosine of two ``(N, D)`` arrays or tensors."""
    x, y = (torch.nn.functional.normalize(torch.as_tensor(m).float(), dim=1) for m in (a, b))
    return (x * y).sum(dim=1).numpy()


def st_model(path: Path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def shared_dir(base_model: TwoTowerModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # save() re-points the model it is called on: save a copy, not the session fixture.
    copy = TwoTowerModel(base_model.query, base_model.product, base_model.config, "", "")
    return copy.save(tmp_path_factory.mktemp("layout") / "shared")


@pytest.fixture(scope="module")
def untied(base_model: TwoTowerModel) -> TwoTowerModel:
    """Untied towers whose product tower has drifted from the query tower (so swapped routes
    would show)."""
    model = base_model.untie()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.product.model.parameters():
            p.mul_(1 + 0.03 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def untied_dir(untied: TwoTowerModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untied.save(tmp_path_factory.mktemp("layout") / "untied")


def test_shared_towers_are_a_plain_sentence_transformer(
    shared_dir: Path, base_model: TwoTowerModel
) -> None:
    st = st_model(shared_dir)
    assert [type(m) for m in st] == [models.Transformer, models.Pooling, models.Normalize]
    texts = base_model.product_texts(PRODUCTS)
    q = cosines(st.encode_query(QUERIES), base_model.encode_query(QUERIES))
    d = cosines(st.encode_document(texts), base_model.encode_product(PRODUCTS))
    assert q.min() >= MIN_COSINE and d.min() >= MIN_COSINE, (q, d)
    np.testing.assert_allclose(np.linalg.norm(st.encode_query(QUERIES), axis=1), 1, atol=1e-5)


def test_a_shared_model_reads_a_long_query_whole_where_aisle_cuts_it(
    shared_dir: Path, base_model: TwoTowerModel
) -> None:
    # One encoder has one max length, the product side's; aisle cuts queries at 32 pieces.
    st = st_model(shared_dir)
    assert st.max_seq_length == base_model.config.max_product_length == 128
    long = ["dewalt 20 volt max lithium ion cordless compact drill driver kit with two "
            "batteries charger and contractor bag for wood metal and plastic drilling jobs "
            "around the house garage and yard"]
    assert cosines(st.encode_query(long), base_model.encode_query(long)).max() < MIN_COSINE
    st.max_seq_length = base_model.config.max_query_length
    assert cosines(st.encode_query(long), base_model.encode_query(long)).min() >= MIN_COSINE


def test_untied_towers_are_the_routes_of_a_router(
    untied_dir: Path, untied: TwoTowerModel
) -> None:
    st = st_model(untied_dir)
    assert len(st) == 1 and isinstance(st[0], models.Router)
    texts = untied.product_texts(PRODUCTS)
    q_st, d_st = st.encode_query(QUERIES), st.encode_document(texts)
    q = cosines(q_st, untied.encode_query(QUERIES))
    d = cosines(d_st, untied.encode_product(PRODUCTS))
    assert q.min() >= MIN_COSINE and d.min() >= MIN_COSINE, (q, d)
    # The towers differ, so swapped routes could not pass the check above.
    assert cosines(q_st, untied.product.encode(QUERIES)).max() < 0.999
    assert cosines(d_st, untied.query.encode(texts)).max() < 0.999
    # A plain encode is a product's (the Router's default route).
    assert cosines(st.encode(texts), d_st).min() >= MIN_COSINE


def test_saved_models_load_back_into_aisle(
    shared_dir: Path, untied_dir: Path, base_model: TwoTowerModel, untied: TwoTowerModel
) -> None:
    for path, model in ((shared_dir, base_model), (untied_dir, untied)):
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["layout"] == "sentence-transformers"
        loaded = load_model(path)
        assert loaded.shared == model.shared == (manifest["towers"] == "shared")
        assert loaded.fingerprint == manifest["fingerprint"]
        torch.testing.assert_close(loaded.encode_query(QUERIES), model.encode_query(QUERIES))
        torch.testing.assert_close(loaded.encode_product(PRODUCTS), model.encode_product(PRODUCTS))
    assert load_model(untied_dir).fingerprint == untied.fingerprint


def test_sizes_in_one_spelling_are_aisle_s_step_not_the_model_s(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    config = replace(base_model.config, normalise_units=True)
    path = TwoTowerModel(base_model.query, base_model.product, config, "", "").save(
        tmp_path / "units"
    )
    model = load_model(path)
    st = st_model(path)
    query = ["dewalt 20v drill"]
    assert cosines(st.encode_query(query), model.encode_query(query)).max() < MIN_COSINE
    same = cosines(st.encode_query([normalise_units(q) for q in query]), model.encode_query(query))
    assert same.min() >= MIN_COSINE
    assert "aisle.towers.units.normalise_units" in (path / "README.md").read_text()


def write_old_layout(model: TwoTowerModel, out: Path) -> dict[str, Any]:
    """``model`` saved as aisle saved models before the sentence-transformers layout: each
    tower a sentence-transformers directory under ``shared/`` or ``query/`` + ``product/``,
    nothing at the root but the manifest; the manifest it got."""
    out.mkdir()
    if model.shared:
        model.query.model.save(str(out / "shared"))
    else:
        model.query.model.save(str(out / "query"))
        model.product.model.save(str(out / "product"))
    weights = tree_fingerprint(out)
    old = TwoTowerModel(model.query, model.product, model.config, "", weights)
    manifest = {
        "kind": KIND,
        "towers": "shared" if model.shared else "untied",
        "dim": model.dim,
        "tower_config": asdict(model.config),
        "weights_fingerprint": weights,
        "fingerprint": old.fingerprint,
    }
    write_manifest(out, manifest)
    return manifest


@pytest.mark.parametrize("towers", ["shared", "untied"])
def test_model_directories_in_the_old_layout_still_load(
    towers: str, base_model: TwoTowerModel, untied: TwoTowerModel, tmp_path: Path
) -> None:
    model = base_model if towers == "shared" else untied
    manifest = write_old_layout(model, tmp_path / "old")
    assert not (tmp_path / "old" / "modules.json").exists()
    loaded = load_model(tmp_path / "old")
    assert loaded.shared == (towers == "shared")
    # The fingerprint an index built with it recorded: the manifest's, as before.
    assert loaded.fingerprint == manifest["fingerprint"]
    torch.testing.assert_close(loaded.encode_query(QUERIES), model.encode_query(QUERIES))
    torch.testing.assert_close(loaded.encode_product(PRODUCTS), model.encode_product(PRODUCTS))


def test_an_index_built_with_an_old_model_directory_still_matches_it(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    from aisle.data.synthetic import write_sample
    from aisle.indexing.build import build_index
    from aisle.retrieval.retriever import index_model
    from aisle.retrieval.store import load_index

    data = write_sample(tmp_path / "data", n_products=40)
    manifest = write_old_layout(base_model, tmp_path / "old")
    index = load_index(build_index(data, load_model(tmp_path / "old"), tmp_path / "index"))
    assert index.manifest["model"]["fingerprint"] == manifest["fingerprint"]
    model = index_model(index, str(tmp_path / "old"))
    index.check_model(model.fingerprint, model.ref)  # raises on a mismatch


def test_an_onnx_export_of_an_old_model_directory_still_loads(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    from aisle.towers.export import export_model

    old = tmp_path / "old"
    write_old_layout(base_model, old)
    export_model(old)  # an old directory keeps its layout: the files go to onnx/shared/
    path = old / "manifest.json"
    manifest = json.loads(path.read_text())
    tower = manifest["onnx"]["towers"]["shared"]
    assert tower["dir"] == "onnx/shared" and (old / "onnx/shared/model.onnx").is_file()
    assert load_model(old).backend == "onnx-fp32"
    # Exports recorded before "dir" gave every path relative to onnx/.
    del tower["dir"]
    tower["files"] = {"fp32": "shared/model.onnx"}
    tower["tokenizer"] = "shared/tokenizer.json"
    path.write_text(json.dumps(manifest))
    loaded = load_model(old)
    assert loaded.backend == "onnx-fp32" and loaded.fingerprint == manifest["fingerprint"]
    torch.testing.assert_close(
        loaded.encode_query(QUERIES), base_model.encode_query(QUERIES), atol=1e-4, rtol=0
    )
