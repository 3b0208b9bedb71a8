from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from aisle.errors import AisleError, ArtifactError
from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model


def test_query_embeddings_are_unit_vectors(base_model: TwoTowerModel) -> None:
    emb = base_model.encode_query(["cordless drill", "paint", "ü 🙂 ∑"])
    assert emb.shape == (3, base_model.dim) == (3, 384)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


def test_empty_input_gives_an_empty_matrix(base_model: TwoTowerModel) -> None:
    assert base_model.encode_query([]).shape == (0, 384)


def test_word_order_matters(base_model: TwoTowerModel) -> None:
    # A bag-of-words encoder would give identical vectors; the transformer's positions must
    # separate them by far more than float noise (cosine 0.98 for the base model).
    a, b = base_model.encode_query(["milk chocolate", "chocolate milk"])
    assert float(a @ b) < 0.99
    assert float((a - b).norm()) > 0.1


def test_product_encoding_uses_the_shared_text_function(base_model: TwoTowerModel) -> None:
    frame = pd.DataFrame(
        [
            {
                "product_id": "1",
                "title": "Claw Hammer",
                "brand": "Estwing",
                "category": "",
                "description": "",
            }
        ]
    )
    expected = base_model.product.encode(["Claw Hammer | brand: Estwing"])
    torch.testing.assert_close(base_model.encode_product(frame), expected)


def test_pooling_is_selectable_and_changes_the_fingerprint(base_model: TwoTowerModel) -> None:
    cls = load_model(None, TowerConfig(pooling="cls"))
    assert cls.fingerprint != base_model.fingerprint
    a = base_model.encode_query(["garden hose"])
    b = cls.encode_query(["garden hose"])
    assert float((a - b).norm()) > 0.05
    torch.testing.assert_close(b.norm(dim=1), torch.ones(1))


def test_save_and_load_round_trip(base_model: TwoTowerModel, tmp_path: Path) -> None:
    untied = base_model.untie()
    assert not untied.shared and base_model.shared
    out = untied.save(tmp_path / "model", extra={"note": "test"})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "aisle.model" and manifest["towers"] == "untied"
    assert manifest["note"] == "test" and manifest["dim"] == 384
    loaded = load_model(out)
    assert not loaded.shared
    assert loaded.fingerprint == manifest["fingerprint"] == untied.fingerprint
    texts = ["kitchen faucet", "ceiling fan"]
    torch.testing.assert_close(loaded.encode_query(texts), base_model.encode_query(texts))


def test_a_plain_sentence_transformers_dir_loads_as_a_shared_model(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    base_model.query.model.save(str(tmp_path / "st"))
    model = load_model(tmp_path / "st")
    assert model.shared
    torch.testing.assert_close(model.encode_query(["rake"]), base_model.encode_query(["rake"]))


def test_new_weights_at_the_same_path_get_a_new_fingerprint(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    # A plain sentence-transformers directory has no manifest: its weights are hashed, and the
    # hash is cached only while no file under it changes (a service reloading a retrained
    # model from the same path must not compare the old fingerprint).
    st = base_model.query.model
    st.save(str(tmp_path / "st"))
    before = load_model(tmp_path / "st").fingerprint
    assert load_model(tmp_path / "st").fingerprint == before
    weights = next(iter(st.parameters()))
    original = weights.detach().clone()
    with torch.no_grad():
        weights.add_(1e-3)
    try:
        st.save(str(tmp_path / "st"))
    finally:
        with torch.no_grad():
            weights.copy_(original)  # the session's shared base model, restored bit for bit
    assert load_model(tmp_path / "st").fingerprint != before


def test_a_directory_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a sentence-transformers model directory"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{}")  # a config of no known model type
    with pytest.raises(ArtifactError, match="not a usable sentence-transformers model"):
        load_model(tmp_path)


def test_a_plain_directory_is_loaded_with_its_own_pooling(tmp_path: Path) -> None:
    """A CLS-pooled model (BGE, GTE) saved by sentence-transformers embeds as it does there,
    not as aisle's default mean pooling would."""
    from sentence_transformers import SentenceTransformer

    from aisle.towers.encoder import load_sentence_transformer
    from aisle.towers.model import base_model_path, directory_pooling

    cls_dir = tmp_path / "cls"
    load_sentence_transformer(base_model_path(), "cls", "cpu").save(str(cls_dir))
    model = load_model(cls_dir)
    assert model.config.pooling == "cls"
    plain = SentenceTransformer(str(cls_dir), device="cpu", local_files_only=True)
    texts = ["cordless drill", "white subway tile"]
    torch.testing.assert_close(model.encode_query(texts),
                               torch.nn.functional.normalize(plain.encode(
                                   texts, convert_to_tensor=True), dim=-1),
                               atol=1e-5, rtol=0)
    assert load_model(cls_dir, TowerConfig(pooling="mean")).config.pooling == "mean"  # asked
    # A config that names no pooling ("auto", the default) keeps the directory's.
    assert load_model(cls_dir, TowerConfig(device="cpu")).config.pooling == "cls"
    # A model built by hand names its pooling: "auto" would give it another fingerprint.
    with pytest.raises(AisleError, match="names its pooling"):
        TwoTowerModel(model.query, model.product, TowerConfig(), "", "")
    # The older config format, one flag a mode, reads the same.
    pooling_config = next(cls_dir.glob("*Pooling/config.json"))
    dim = json.loads(pooling_config.read_text()).get("word_embedding_dimension", 384)
    pooling_config.write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    assert directory_pooling(cls_dir) == "cls"
    assert directory_pooling(base_model_path()) == "mean"
    from aisle.towers.export import _saved_config

    assert _saved_config(cls_dir).pooling == "cls"  # `aisle export` copies it as it pools


def test_a_moved_model_directory_is_a_clear_error_and_a_reload_keeps_the_loaded_one(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from aisle.serving.config import ServeConfig
    from aisle.serving.snapshot import _still_serves
    from aisle.towers.model import model_runtime

    gone = tmp_path / "moved-away"
    with pytest.raises(ArtifactError, match="no such model directory"):
        model_runtime(gone)
    # The service reloading an index whose model directory moved: the loaded weights (same
    # fingerprint) keep serving rather than a reload that fails to load them again.
    index = SimpleNamespace(model_fingerprint=base_model.fingerprint, manifest={
        "model": {"ref": str(gone), "fingerprint": base_model.fingerprint, "runtime": "torch"}})
    assert _still_serves(base_model, index, ServeConfig(index="unused"))  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_directory_runs_in_fp32(dtype: torch.dtype, tmp_path: Path) -> None:
    """transformers loads weights in their saved dtype: a bf16 model ran in bf16 on the CPU,
    its 'unit' vectors up to 2e-3 off unit length (and its ONNX export and training broken)."""
    from sentence_transformers import SentenceTransformer

    from aisle.towers.model import base_model_path

    st = SentenceTransformer(str(base_model_path()), device="cpu", local_files_only=True)
    st.to(dtype).save(str(tmp_path / "half"))
    model = load_model(tmp_path / "half")
    assert {p.dtype for p in model.query.model.parameters()} == {torch.float32}
    texts = ["cordless drill", "white paint", "tile saw " * 40]
    emb = model.encode_query(texts)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)


def test_a_default_prompt_is_not_prepended_at_search_time_only(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    """A directory whose sentence-transformers config names a default prompt (as e5- or
    bge-style models do): sentence-transformers' encode prepended it, where training
    (``forward``) and the ONNX towers read the text bare, so one text got two vectors."""
    from sentence_transformers import SentenceTransformer

    from aisle.towers.model import base_model_path

    st = SentenceTransformer(str(base_model_path()), device="cpu", local_files_only=True,
                             prompts={"query": "query: "}, default_prompt_name="query")
    st.save(str(tmp_path / "prompted"))
    model = load_model(tmp_path / "prompted")
    texts = ["cordless drill", "white subway tile"]
    with torch.no_grad():
        trained_on = model.query.forward(texts)
    torch.testing.assert_close(model.encode_query(texts), trained_on, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.encode_query(texts), base_model.encode_query(texts),
                               atol=1e-5, rtol=0)


def test_a_model_s_fingerprint_ignores_what_git_and_the_hub_keep_beside_it(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    """Two clones of one model repository (or two hub downloads) hold the same weights: an
    index built with one must match the other, and a `git gc` must not change a model."""
    import shutil

    from aisle.towers.model import base_model_path

    for n in (1, 2):
        clone = shutil.copytree(base_model_path(), tmp_path / f"clone{n}")
        (clone / ".git" / "objects").mkdir(parents=True)
        (clone / ".git" / "index").write_bytes(f"stat data of clone {n}".encode())
        (clone / ".cache" / "huggingface").mkdir(parents=True)
        (clone / ".cache" / "huggingface" / "config.json.metadata").write_text(f"{n}.0\n")
    first, second = (load_model(tmp_path / f"clone{n}").fingerprint for n in (1, 2))
    assert first == second == base_model.fingerprint == "1d941209c53fa776"


def test_a_max_length_past_the_model_s_positions_is_lowered_to_them_as_it_loads(
    base_model: TwoTowerModel, caplog: pytest.LogCaptureFixture
) -> None:
    """It was taken as it was, and the first text past 512 tokens failed deep in the model
    ("The size of tensor a (702) must match the size of tensor b (512)"), in a dev evaluation
    or a search. Lowered, not refused: a saved model may record such a length."""
    from aisle.towers.encoder import position_limit

    assert position_limit(base_model.query.model) == 512
    with caplog.at_level("WARNING"):
        model = load_model(None, TowerConfig(backend="torch", max_product_length=1024))
    assert "a max length of 1024 tokens is past the 512 this model reads" in caplog.text
    assert model.product.max_length == 512 and model.query.max_length == 32
    long = pd.DataFrame({"product_id": ["p1"], "title": ["drill " * 700]})
    assert model.encode_product(long).shape == (1, model.dim)
