"""The static query tower: learnt by `aisle static-query` into a model directory, loaded by
every query path through ``query_tower``, plain sentence-transformers where it is read alone,
and keyed apart from the transformer tower wherever query vectors are cached."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aisle.errors import AisleError, ArtifactError
from aisle.towers.model import TwoTowerModel, load_model
from aisle.towers.static import STATIC_DIR, StaticOnly, StaticTower
from aisle.training.static import StaticConfig, distill, export_static, student_for

LOOSE = StaticConfig(epochs=2, min_mean_cosine=0.0)  # the sample is too small to agree well
TEXTS = ["cordless drill", "3/4 in. pvc elbow", "DeWALT 20V MAX", "zzqx", ""]


@pytest.fixture(scope="module")
def static_model(tmp_path_factory: pytest.TempPathFactory,
                 sample_data: Path) -> Path:
    out = tmp_path_factory.mktemp("static") / "model"
    load_model(None).save(out)  # not the shared base_model: save() re-points its ref and weights
    export_static(out, sample_data, LOOSE)
    return out


@pytest.fixture(scope="module")
def static_index(tmp_path_factory: pytest.TempPathFactory, static_model: Path,
                 sample_data: Path) -> Path:
    from aisle.indexing.build import build_index

    model = load_model(static_model, query_tower="transformer")
    return build_index(sample_data, model, tmp_path_factory.mktemp("sidx") / "index")


def test_the_folded_table_encodes_as_the_trained_student(base_model: TwoTowerModel) -> None:
    student = student_for(base_model)
    with torch.no_grad():  # a map that is not the identity, so that folding it matters
        student.lin.weight.copy_(torch.randn(384, 384, generator=torch.Generator().manual_seed(0)))
        student.lin.bias.copy_(torch.randn(384))
        trained = student(TEXTS).numpy()
    tower = StaticTower(student.table(), student.tokenizer, "test", 32)
    folded = tower.encode(TEXTS).numpy()
    np.testing.assert_allclose(folded[:-1], trained[:-1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(folded[:-1], axis=1), 1.0, atol=1e-5)
    assert not folded[-1].any()  # no word piece: the zero vector, as sentence-transformers


def test_the_export_is_a_plain_sentence_transformers_model_that_load_model_runs(
    static_model: Path,
) -> None:
    from sentence_transformers import SentenceTransformer

    manifest = json.loads((static_model / "manifest.json").read_text())
    section = manifest["static_query"]
    assert section["dir"].startswith(STATIC_DIR + "-") and section["teacher_runtime"] == "torch"
    assert section["weights_fingerprint"] == manifest["weights_fingerprint"]
    assert 0 < section["agreement"]["mean_cosine"] <= 1 and section["texts"] > 100

    static = load_model(static_model, query_tower="static")
    plain = SentenceTransformer(str(static_model / section["dir"]), device="cpu")
    np.testing.assert_allclose(plain.encode(TEXTS[:-1]),
                               static.encode_query(TEXTS[:-1]).numpy(), atol=1e-5)
    transformer = load_model(static_model)  # auto on torch: the trained tower
    assert isinstance(static.query, StaticTower)
    assert not isinstance(transformer.query, StaticTower)
    # The product side, and what an index checks, are the same; query caches are not.
    assert static.fingerprint == transformer.fingerprint
    assert static.runtime == transformer.runtime == "torch"
    assert static.query_runtime.startswith("torch+static.")
    assert transformer.query_runtime == "torch"
    records = [{"title": "cordless drill", "brand": "", "category": "", "description": ""}]
    import pandas as pd

    np.testing.assert_array_equal(static.encode_product(pd.DataFrame(records)).numpy(),
                                  transformer.encode_product(pd.DataFrame(records)).numpy())
    with pytest.raises(StaticOnly, match="query_tower=transformer"):
        static.save(static_model.parent / "copy")


def test_static_is_refused_where_the_model_has_none_or_a_stale_one(
    static_model: Path, tmp_path: Path
) -> None:
    base = tmp_path / "plain"
    load_model(None).save(base)
    with pytest.raises(ArtifactError, match="aisle static-query --model"):
        load_model(base, query_tower="static")
    with pytest.raises(ArtifactError, match=r"not an aisle model directory.*aisle export"):
        load_model(None, query_tower="static")  # the built-in base: export a copy first
    stale = tmp_path / "stale"
    shutil.copytree(static_model, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["weights_fingerprint"] = "0" * 64  # the weights were trained again since
    (stale / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="learnt from other weights"):
        load_model(stale, query_tower="static")
    assert not isinstance(load_model(stale, backend="torch").query, StaticTower)


def test_learning_it_again_publishes_a_new_folder_and_drops_the_old_one_after(
    static_model: Path, sample_data: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(static_model, model_dir)
    before = json.loads((model_dir / "manifest.json").read_text())["static_query"]
    loaded = load_model(model_dir, query_tower="static")
    vectors = loaded.encode_query(TEXTS[:2])
    after = export_static(model_dir, sample_data, replace(LOOSE, seed=14))
    assert after["dir"] != before["dir"] and (model_dir / after["dir"]).is_dir()
    assert not (model_dir / before["dir"]).exists()
    # The tower loaded before holds its table; a fresh load runs the new one, keyed apart.
    assert torch.equal(loaded.encode_query(TEXTS[:2]), vectors)
    again = load_model(model_dir, query_tower="static")
    assert again.query_runtime != loaded.query_runtime
    assert not torch.allclose(again.encode_query(TEXTS[:2]), vectors)


def test_a_tower_that_agrees_too_little_is_refused_and_nothing_is_written(
    base_model: TwoTowerModel, sample_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    load_model(None).save(out)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(AisleError, match="min_mean_cosine"):
        export_static(out, sample_data, replace(LOOSE, min_mean_cosine=0.999))
    assert not list(out.glob(STATIC_DIR + "*"))
    assert (out / "manifest.json").read_bytes() == before
    with pytest.raises(ArtifactError, match="not an aisle model directory"):
        export_static(tmp_path / "nowhere", sample_data, LOOSE)


def test_the_student_learns_towards_its_teacher(base_model: TwoTowerModel,
                                                sample_data: Path) -> None:
    from aisle.data.dataset import load_dataset

    ds = load_dataset(sample_data)
    titles = ds.products["title"].astype(str).tolist()
    first, _ = distill(base_model, base_model, [], titles, replace(LOOSE, epochs=1))
    longer, record = distill(base_model, base_model, [], titles, replace(LOOSE, epochs=30))
    texts = titles[:50]
    goal = base_model.encode_query([t.lower() for t in texts]).numpy()
    with torch.no_grad():
        cos_first = (first(texts).numpy() * goal).sum(1).mean()
        cos_longer = (longer(texts).numpy() * goal).sum(1).mean()
    assert cos_longer > cos_first + 0.05, (cos_first, cos_longer)
    assert record["agreement"]["mean_cosine"] > 0.7


def test_every_query_path_runs_the_static_tower_over_an_index_built_without_it(
    static_model: Path, static_index: Path, sample_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aisle.api import open_index
    from aisle.cli import main
    from aisle.evaluation.run import evaluate_command

    recorded = json.loads((static_index / "manifest.json").read_text())["model"]
    assert "query_tower" not in recorded["tower_config"]  # the product tower built it
    static = open_index(static_index, query_tower="static")
    transformer = open_index(static_index)  # the index's config: auto, on torch
    found = static.search("cordless drill", k=5)
    assert len(found) == 5
    assert static.retriever.model.query_runtime != transformer.retriever.model.query_runtime
    with pytest.raises(AisleError, match="query_tower"):
        open_index(static_index, query_tower="fast")  # type: ignore[arg-type]

    assert main(["search", "--index", str(static_index), "--query-tower", "static",
                 "--mode", "dense", "cordless", "drill", "-k", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "dense search:" and len([ln for ln in out if ln.strip()[:1].isdigit()]) == 5

    result = evaluate_command(sample_data, "test", static_index, query_tower="static")
    assert result["query_runtime"].startswith("torch+static.")
    assert result["runtime"] == "torch"
    with pytest.raises(AisleError, match="--query-tower"):
        evaluate_command(sample_data, "test", None, baseline="bm25", query_tower="static")


def test_the_service_keys_cached_query_vectors_by_query_tower(
    static_model: Path, static_index: Path,
) -> None:
    from aisle.serving.config import ServeConfig
    from aisle.serving.snapshot import load_snapshot

    static = load_snapshot(ServeConfig(index=str(static_index), query_tower="static"))
    plain = load_snapshot(ServeConfig(index=str(static_index), query_tower="transformer"))
    assert static.vector_key != plain.vector_key
    assert isinstance(static.model.query, StaticTower)
    # A reload keeps the loaded model only while it is the query tower the config asks for.
    again = load_snapshot(ServeConfig(index=str(static_index), query_tower="static"), static)
    assert again.model is static.model
    switched = load_snapshot(ServeConfig(index=str(static_index), query_tower="transformer"),
                             static)
    assert switched.model is not static.model
    assert not isinstance(switched.model.query, StaticTower)


def test_a_distillation_teacher_searches_its_index_with_the_transformer(
    static_model: Path, sample_data: Path, tmp_path: Path
) -> None:
    """An index that serves with the static tower (auto, on an ONNX export) still teaches
    with the transformer, and names it in the step key as before."""
    from aisle.artifacts import manifest_fingerprint
    from aisle.data.dataset import load_dataset
    from aisle.evaluation.run import open_index_retriever
    from aisle.indexing.build import build_index
    from aisle.retrieval.retriever import searched_rankings
    from aisle.retrieval.store import read_index_manifest
    from aisle.towers.export import export_model
    from aisle.training.config import StepConfig
    from aisle.training.distill import candidates_fingerprint, index_rankings

    model_dir = tmp_path / "model"
    shutil.copytree(static_model, model_dir)
    export_model(model_dir)  # fp32 ONNX: auto now runs the static query tower
    index = build_index(sample_data, load_model(model_dir), tmp_path / "index")
    ds = load_dataset(sample_data)
    assert isinstance(open_index_retriever(index, None, ds).model.query, StaticTower)
    cfg = StepConfig(distill_candidates=4, distill_index=str(index))
    manifest = read_index_manifest(index)
    assert candidates_fingerprint(cfg) == manifest_fingerprint({"index": manifest,
                                                                "queries": "onnx-fp32"})
    queries = ds.query_texts()
    texts = [queries[q] for q in sorted(queries)[:5]]
    transformer = open_index_retriever(index, None, ds, query_tower="transformer")
    _, taught = index_rankings(index, ds, texts, 4)
    expected = searched_rankings(transformer, texts, 4)[1]
    assert taught == expected


def test_an_onnx_export_in_place_keeps_a_static_tower_published_while_it_ran(
    static_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisle.towers import export

    model_dir = tmp_path / "model"
    shutil.copytree(static_model, model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    section = manifest.pop("static_query")
    (model_dir / "manifest.json").write_text(json.dumps(manifest))

    def build(*args: object, **kwargs: object) -> dict[str, object]:
        # While the export runs, `aisle static-query` publishes its section.
        (model_dir / "manifest.json").write_text(json.dumps({**manifest,
                                                             "static_query": section}))
        return {"towers": {}, "weights_fingerprint": manifest["weights_fingerprint"]}

    monkeypatch.setattr(export, "_build", build)
    export.export_model(model_dir)
    after = json.loads((model_dir / "manifest.json").read_text())
    assert after["static_query"] == section and "onnx" in after


def test_an_onnx_model_serving_static_queries_builds_no_query_session(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Untied ONNX towers with a static export: ``auto`` runs the static tower, and loading
    builds the product session alone, not a transformer query session to throw away."""
    from aisle.towers import onnx
    from aisle.towers.export import export_model

    model_dir = load_model(None).untie().save(tmp_path / "untied")
    export_model(model_dir)
    export_static(model_dir, sample_data, LOOSE)
    towers = json.loads((model_dir / "manifest.json").read_text())["onnx"]["towers"]
    files = {side: model_dir / towers[side]["dir"] / towers[side]["files"]["fp32"]
             for side in ("query", "product")}
    opened: list[Path] = []
    session = onnx.session

    def recording(path: Path, threads: int) -> object:
        opened.append(Path(path))
        return session(path, threads)

    monkeypatch.setattr(onnx, "session", recording)
    static = load_model(model_dir)
    assert isinstance(static.query, StaticTower) and static.backend == "onnx-fp32"
    assert opened == [files["product"]]
    opened.clear()
    transformer = load_model(model_dir, query_tower="transformer")
    assert opened == [files["query"], files["product"]]
    import pandas as pd

    records = pd.DataFrame([{"title": "cordless drill", "brand": "DeWALT", "category": "",
                             "description": ""}])
    np.testing.assert_array_equal(static.encode_product(records).numpy(),
                                  transformer.encode_product(records).numpy())
    assert static.fingerprint == transformer.fingerprint and static.runtime == transformer.runtime


def test_a_tuned_fusion_names_the_query_tower_that_chose_it(
    static_model: Path, static_index: Path, sample_data: Path, tmp_path: Path
) -> None:
    from aisle.evaluation.tune import tune_fusion

    index = tmp_path / "index"
    shutil.copytree(static_index, index)
    tune_fusion(sample_data, index, query_tower="static")
    tuning = json.loads((index / "manifest.json").read_text())["fusion_tuning"]
    assert tuning["query_runtime"].startswith("torch+static.") and tuning["split"] == "dev"
    tune_fusion(sample_data, index, query_tower="transformer")
    tuning = json.loads((index / "manifest.json").read_text())["fusion_tuning"]
    assert tuning["query_runtime"] == "torch"
