"""ONNX Runtime towers: export, parity with torch, checked int8, refusal, reload, untied towers,
and files where sentence-transformers' ONNX backend finds them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer import modules as models

from aisle.errors import AisleError, ArtifactError
from aisle.towers.config import TowerConfig
from aisle.towers.export import Agreement, export_model
from aisle.towers.model import TwoTowerModel, load_model
from aisle.towers.onnx import InferenceOnly, pool, session

# Small samples keep the int8 check fast; the thresholds are the real defaults.
SMALL = Agreement(queries=64, products=128)
TEXTS = [
    "",
    " ",
    "cordless drill",
    "Ünïcödé ß 電動ドリル 🔨",
    "DEWALT 20-Volt MAX Lithium-Ion Cordless 1/2 in. Drill/Driver Kit",
    "garden hose " * 120,  # far past both max lengths
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> Path:
    """The base model copied out with fp32 and int8 towers (the --out path of the CLI)."""
    return export_model(
        None, tmp_path_factory.mktemp("onnx") / "base", int8=True, data=sample_data,
        agreement=SMALL,
    )


def transformer_subfolders(model_dir: Path) -> dict[str, str]:
    """Route (or "shared") -> the folder of its Transformer module, read from modules.json and
    the Router's config as sentence-transformers reads them."""
    first = json.loads((model_dir / "modules.json").read_text())[0]
    if not first["type"].endswith(".Router"):
        return {"shared": first["path"]}
    config = json.loads((model_dir / first["path"] / "router_config.json").read_text())
    return {route: ids[0] for route, ids in config["structure"].items()}


def st_onnx_file(model_dir: Path, subfolder: str, file_name: str | None = None) -> Path:
    """The file sentence-transformers' ONNX backend loads for the Transformer module in
    ``subfolder`` (``model_kwargs={"file_name": ...}`` when given), as its loader finds it."""
    from sentence_transformers.backend.utils import backend_should_export

    kwargs = {"subfolder": subfolder, **({"file_name": file_name} if file_name else {})}
    export, kwargs = backend_should_export(model_dir, True, kwargs, "model.onnx", "*.onnx", "ONNX")
    assert not export, f"sentence-transformers finds no ONNX file in {model_dir}/{subfolder}"
    return model_dir / kwargs["subfolder"] / kwargs["file_name"]


def test_the_export_is_recorded_and_keeps_the_fingerprint(
    exported: Path, base_model: TwoTowerModel
) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    tower = manifest["onnx"]["towers"]["shared"]
    assert tower["dir"] == "onnx"
    assert tower["files"] == {"fp32": "model.onnx", "int8": "model_qint8.onnx"}
    assert all((exported / "onnx" / f).is_file() for f in tower["files"].values())
    assert manifest["fingerprint"] == base_model.fingerprint
    model = load_model(exported)
    assert model.backend == "onnx-int8" and model.shared
    assert model.fingerprint == base_model.fingerprint


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_fp32_onnx_gives_torch_vectors(exported: Path, pooling: str) -> None:
    config = TowerConfig(pooling=pooling)  # type: ignore[arg-type]
    ours = load_model(exported, TowerConfig(pooling=pooling, backend="onnx-fp32"))  # type: ignore[arg-type]
    ref = load_model(exported, TowerConfig(pooling=pooling, backend="torch"))  # type: ignore[arg-type]
    assert ours.backend == "onnx-fp32" and ref.backend == "torch"
    assert ours.fingerprint == ref.fingerprint == load_model(None, config).fingerprint
    for side in ("query", "product"):
        a = getattr(ours, side).encode(TEXTS)
        b = getattr(ref, side).encode(TEXTS)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.norm(dim=1), torch.ones(len(TEXTS)))


@pytest.mark.parametrize("backend", ["onnx-fp32", "onnx-int8"])
def test_an_onnx_tower_s_max_length_past_the_model_s_positions_is_lowered_to_them(
    exported: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """ONNX Runtime failed the first text past 512 tokens ("input index out of range")."""
    from aisle.towers.positions import config_position_limit

    with caplog.at_level("WARNING"):
        model = load_model(exported, TowerConfig(max_query_length=2048), backend=backend)
    assert "a max length of 2048 tokens is past the 512 this model reads" in caplog.text
    assert model.query.max_length == 512
    assert model.encode_query(["drill " * 700]).shape == (1, model.dim)
    # RoBERTa-style tables keep their rows up to the padding index unused.
    folder = next(exported.rglob("config.json")).parent
    assert config_position_limit(folder) == 512
    config = json.loads((folder / "config.json").read_text())
    (folder.parent / "roberta").mkdir(exist_ok=True)
    (folder.parent / "roberta" / "config.json").write_text(json.dumps(
        {**config, "model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}))
    assert config_position_limit(folder.parent / "roberta" / "onnx") == 512


def test_tokenisation_is_sentence_transformers_own(exported: Path) -> None:
    ours = load_model(exported, TowerConfig(backend="onnx-fp32"))
    st = load_model(exported, TowerConfig(backend="torch")).query.model
    for tower in (ours.query, ours.product):
        st.max_seq_length = tower.max_length
        expected = st.preprocess(TEXTS)
        got = tower.features(TEXTS)  # type: ignore[union-attr]
        assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
        for name, array in got.items():
            np.testing.assert_array_equal(array, expected[name].numpy(), err_msg=name)
    assert ours.query.features(TEXTS)["input_ids"].shape[1] == 32  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_pooling_matches_sentence_transformers_on_padded_batches(mode: str) -> None:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, 7, 16, generator=gen)
    mask = torch.tensor([[1] * 7, [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0], [1] * 5 + [0] * 2])
    pooled = models.Pooling(16, pooling_mode=mode)(
        {"token_embeddings": tokens, "attention_mask": mask}
    )["sentence_embedding"]
    expected = torch.nn.functional.normalize(pooled, dim=-1)
    got = pool(tokens.numpy(), mask.numpy(), mode)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_queries_and_titles(
    exported: Path, homedepot: Path
) -> None:
    from aisle.towers.quantize import measure_agreement

    fp32 = load_model(exported, TowerConfig(backend="onnx-fp32"))
    int8 = load_model(exported, TowerConfig(backend="onnx-int8"))
    result = measure_agreement(fp32, int8, homedepot, Agreement(queries=100, products=200))
    for side in ("queries", "products"):
        assert result[side]["mean"] >= 0.99 and result[side]["p1"] >= 0.97, result
    a, b = fp32.encode_query(TEXTS), int8.encode_query(TEXTS)
    assert float((a * b).sum(dim=1).min()) > 0.95
    assert float((a - b).abs().max()) > 1e-4  # it really is another runtime, not a copy


def test_an_int8_vector_does_not_depend_on_what_shares_its_call(exported: Path) -> None:
    """int8 scales activations once per ONNX Runtime call: a text encoded beside a long one
    would get a coarser scale. Each text is its own call, so its vector is the same bit for bit
    alone, in any batch and in any position (the service micro-batches queries; index builds
    batch, shard and resume products); fp32 batches, and agrees up to rounding."""
    texts = ["cordless drill", "DEWALT 20-Volt MAX Lithium-Ion Cordless 1/2 in. Drill/Driver Kit",
             "garden hose " * 120, "Ünïcödé ß 電動ドリル 🔨"]
    int8 = load_model(exported, TowerConfig(backend="onnx-int8"))
    for encode in (int8.encode_query, int8.product.encode):
        alone = torch.cat([encode([t]) for t in texts])
        assert torch.equal(encode(texts), alone)
        assert torch.equal(encode(texts[::-1]), alone.flip(0))
    # An int8 tower's one-text calls shared among worker threads: the same vectors, in order.
    products = torch.cat([int8.product.encode([t]) for t in texts])
    for threads in (1, 3):
        config = TowerConfig(backend="onnx-int8", onnx_product_threads=threads)
        tower = load_model(exported, config).product
        assert getattr(tower, "tower", tower).workers.n == threads
        assert torch.equal(tower.encode(texts * 2, progress=True), products.repeat(2, 1))
    fp32 = load_model(exported, TowerConfig(backend="onnx-fp32"))
    alone = torch.cat([fp32.encode_query([t]) for t in texts])
    assert torch.allclose(fp32.encode_query(texts), alone, atol=1e-5)


def float_weight_matmuls(path: Path) -> tuple[list[str], int]:
    """An ONNX graph's MatMuls that multiply by a stored float weight, and how many integer
    MatMuls (weights quantised to int8) it holds."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    floats = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    return floats, sum(n.op_type == "MatMulInteger" for n in graph.node)


def test_int8_keeps_the_first_feed_forward_output_in_fp32(exported: Path) -> None:
    from aisle.towers.quantize import KEEP_FP32

    tower = json.loads((exported / "manifest.json").read_text())["onnx"]["towers"]["shared"]
    kept = tower["int8_fp32_nodes"]
    assert len(kept) == 1, kept
    assert KEEP_FP32.search(kept[0]) and "layer.0/output/dense" in kept[0], kept
    floats, integer = float_weight_matmuls(exported / "onnx" / "model_qint8.onnx")
    assert floats == kept
    # MiniLM-L6: 6 layers x (attention output, feed-forward in, feed-forward out), one kept;
    # Q, K and V are one fused Attention node (QAttention in int8), not MatMuls.
    assert integer == 6 * 3 - 1
    fp32_floats, none = float_weight_matmuls(exported / "onnx" / "model.onnx")
    assert none == 0 and len(fp32_floats) == 6 * 3 and kept[0] in fp32_floats


def test_only_the_first_feed_forward_output_is_kept_by_name() -> None:
    from types import SimpleNamespace

    from aisle.towers.quantize import fp32_nodes

    names = {
        "/hf/bert/encoder/layer.0/output/dense/MatMul": True,
        "/0/auto_model/encoder/layer.0/output/dense/MatMul": True,
        "/transformer/layer.0/ffn/lin2/MatMul": True,
        "layer.0/output/dense/MatMul": True,
        "/encoder/layer.0/attention/output/dense/MatMul": False,
        "/encoder/layer.0/intermediate/dense/MatMul": False,
        "/encoder/layer.10/output/dense/MatMul": False,
        "/encoder/layer.1/output/dense/MatMul": False,
        "/encoder/layer.0/output/dense/MatMul_1": False,
        "/encoder/player.0/output/dense/MatMul": False,
    }
    graph = SimpleNamespace(node=[SimpleNamespace(op_type="MatMul", name=n) for n in names]
                            + [SimpleNamespace(op_type="Add", name=next(iter(names)))])
    assert fp32_nodes(graph) == [n for n, kept in names.items() if kept]


def test_sentence_transformers_finds_the_export(exported: Path) -> None:
    assert transformer_subfolders(exported) == {"shared": ""}
    assert st_onnx_file(exported, "") == exported / "onnx" / "model.onnx"
    int8 = st_onnx_file(exported, "", "model_qint8.onnx")
    assert int8 == exported / "onnx" / "model_qint8.onnx"
    # The names optimum's feature-extraction models feed and read.
    sess = session(int8, 1)
    assert [o.name for o in sess.get_outputs()] == ["last_hidden_state"]
    assert {i.name for i in sess.get_inputs()} == {"input_ids", "attention_mask", "token_type_ids"}
    assert "onnx/model_qint8.onnx" in (exported / "README.md").read_text()  # the card says so


def test_a_failed_int8_check_writes_nothing(
    sample_data: Path, base_model: TwoTowerModel, tmp_path: Path
) -> None:
    strict = Agreement(min_mean_cosine=1.0, queries=16, products=16)
    with pytest.raises(AisleError, match="int8 towers disagree with fp32"):
        export_model(None, tmp_path / "copy", int8=True, data=sample_data, agreement=strict)
    assert list(tmp_path.iterdir()) == []
    # save() re-points the model it is called on: save a copy, not the session fixture.
    copy = TwoTowerModel(base_model.query, base_model.product, base_model.config, "", "")
    model_dir = copy.save(tmp_path / "model")
    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    with pytest.raises(AisleError, match="queries mean cosine"):
        export_model(model_dir, int8=True, data=sample_data, agreement=strict)
    assert {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()} == before
    assert not (model_dir / "onnx").exists()


def test_a_nan_agreement_fails_the_int8_check(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NaN < limit is False: a NaN score (a broken export) used to pass the gate.
    import aisle.towers.quantize as quantize

    monkeypatch.setattr(quantize, "_cosine_stats",
                        lambda a, b: {"mean": float("nan"), "p1": float("nan")})
    small = Agreement(queries=16, products=16)
    with pytest.raises(AisleError, match="queries mean cosine nan"):
        export_model(None, tmp_path / "copy", int8=True, data=sample_data, agreement=small)
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(AisleError, match="--int8 needs --data"):
        export_model(None, tmp_path / "x", int8=True)
    with pytest.raises(AisleError, match="pass --out"):
        export_model(None)
    with pytest.raises(ArtifactError, match="no onnx-int8 export"):
        load_model(None, TowerConfig(backend="onnx-int8"))
    model = load_model(exported)
    with pytest.raises(InferenceOnly, match="backend=torch"):
        model.save(tmp_path / "y")
    with pytest.raises(InferenceOnly):
        model.untie()


def test_an_index_built_with_torch_is_served_by_the_onnx_towers(
    exported: Path, sample_index: Path
) -> None:
    from aisle.retrieval.retriever import index_model, open_retriever
    from aisle.retrieval.store import load_index

    index = load_index(sample_index)
    model = index_model(index, str(exported))
    assert model.backend == "onnx-int8"
    index.check_model(model.fingerprint, model.ref)  # raises on a mismatch
    top = open_retriever(index, model).search_texts(["cordless drill"], 5, "dense")[0].hits
    assert len(top) == 5 and "drill" in top[0].title.lower()


def test_untied_towers_export_as_two_files(base_model: TwoTowerModel, tmp_path: Path) -> None:
    untied = base_model.untie()
    model_dir = untied.save(tmp_path / "untied")
    fingerprint = untied.fingerprint
    export_model(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    towers = manifest["onnx"]["towers"]
    assert set(towers) == {"query", "product"}
    assert "int8_agreement" not in manifest["onnx"]
    # Each route's file sits in its own Transformer module's folder, where
    # sentence-transformers looks, and it is the file aisle runs for that side.
    routes = transformer_subfolders(model_dir)
    for side, route in (("query", "query"), ("product", "document")):
        recorded = model_dir / towers[side]["dir"] / towers[side]["files"]["fp32"]
        assert st_onnx_file(model_dir, routes[route]) == recorded
    model = load_model(model_dir)
    assert model.backend == "onnx-fp32" and not model.shared
    assert model.fingerprint == fingerprint
    torch.testing.assert_close(
        model.encode_query(TEXTS), untied.encode_query(TEXTS), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        model.product.encode(TEXTS), untied.product.encode(TEXTS), atol=1e-4, rtol=0
    )


def test_backend_overrides_the_tower_config_everywhere_a_model_loads(
    exported: Path, sample_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aisle.cli import main
    from aisle.retrieval.retriever import index_model
    from aisle.retrieval.store import load_index

    assert load_model(exported, backend="torch").backend == "torch"
    assert load_model(exported, backend="onnx-fp32").backend == "onnx-fp32"
    assert load_model(exported, TowerConfig(backend="torch"), backend="auto").backend == (
        "onnx-int8"
    )
    with pytest.raises(ArtifactError, match="no onnx-fp32 export"):
        load_model(None, backend="onnx-fp32")
    index = load_index(sample_index)
    assert index_model(index, str(exported), backend="onnx-fp32").backend == "onnx-fp32"
    # the CLI flag: the same top hit from torch and int8 towers of one model
    tops = []
    for backend in ("torch", "onnx-int8"):
        args = ["search", "--index", str(sample_index), "--model", str(exported),
                "--backend", backend, "-k", "1", "cordless", "drill"]
        assert main(args) == 0
        tops.append(capsys.readouterr().out.split()[2])  # rank, score, product id
    assert tops[0] == tops[1]


def test_onnx_towers_read_sizes_as_their_torch_model_does(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    model = load_model(None, TowerConfig(normalise_units=True))
    model_dir = model.save(tmp_path / "units")
    export_model(model_dir)  # its parity check compares normalised torch with normalised ONNX
    onnx = load_model(model_dir)
    assert onnx.backend == "onnx-fp32" and onnx.config.normalise_units
    torch.testing.assert_close(
        onnx.encode_query(["dewalt 20v drill"]),
        base_model.encode_query(["dewalt 20 volt drill"]),
        atol=1e-4,
        rtol=0,
    )


def test_auto_runs_torch_on_a_cuda_device_and_int8_on_the_cpu(exported: Path) -> None:
    """On a GPU, auto keeps torch (a GPU embeds a catalog far faster than int8 on the CPU);
    an explicit ONNX backend is still honoured there."""
    from aisle.towers.onnx import resolve_backend

    manifest = json.loads((exported / "manifest.json").read_text())
    assert resolve_backend("auto", manifest, "m", "cpu") == "onnx-int8"
    assert resolve_backend("auto", manifest, "m", "cuda") == "torch"
    assert resolve_backend("onnx-int8", manifest, "m", "cuda") == "onnx-int8"


def test_another_int8_export_of_the_same_weights_is_another_runtime(
    exported: Path, base_model: TwoTowerModel, sample_data: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`aisle export --int8` run again with another recipe keeps the weights' fingerprint but
    not the vectors: the old export's index is embedded again, an update refuses to mix the
    two, the service loads the new query tower with the new index, and neither cache hands one
    export's vectors to the other."""
    import logging
    import shutil

    from aisle.errors import ManifestMismatch
    from aisle.indexing.build import build_index, build_version
    from aisle.indexing.embed_cache import cache_key
    from aisle.indexing.update import update_version
    from aisle.retrieval.layout import resolve_index_dir
    from aisle.retrieval.retriever import index_model, index_query_runtime
    from aisle.retrieval.store import load_index
    from aisle.serving.config import ServeConfig
    from aisle.serving.snapshot import _still_serves
    from aisle.towers.model import model_runtime
    from aisle.towers.quantize import QUANTISER

    int8 = load_model(exported, backend="onnx-int8")
    assert base_model.runtime == "torch"
    assert load_model(exported, backend="onnx-fp32").runtime == "onnx-fp32"
    assert int8.runtime.startswith("onnx-int8.")
    assert load_model(exported, backend="onnx-int8").runtime == int8.runtime  # stable
    again_dir = shutil.copytree(exported, tmp_path / "again")
    manifest = json.loads((again_dir / "manifest.json").read_text())
    manifest["onnx"]["int8_agreement"]["queries"]["mean"] = 0.5  # not part of the recipe
    (again_dir / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(again_dir, backend="onnx-int8").runtime == int8.runtime
    # The quantiser's settings are recorded and part of the recipe: other settings, another
    # export.
    assert manifest["onnx"]["int8_options"] == QUANTISER
    manifest["onnx"]["int8_options"] = {**QUANTISER, "per_channel": False}
    (again_dir / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(again_dir, backend="onnx-int8").runtime != int8.runtime
    manifest["onnx"]["int8_options"] = QUANTISER
    for tower in manifest["onnx"]["towers"].values():
        tower["int8_fp32_nodes"] = []  # the recipe before 2026-12-05: every MatMul in int8
    (again_dir / "manifest.json").write_text(json.dumps(manifest))
    again = load_model(again_dir, backend="onnx-int8")
    assert again.fingerprint == int8.fingerprint and again.runtime != int8.runtime
    assert cache_key(again.fingerprint, again.runtime) != cache_key(int8.fingerprint, int8.runtime)
    # What a load would run is read from the directory without loading it, as the keys of
    # first-stage candidates need (aisle.training.distill.candidates_fingerprint).
    for ref, backend, loaded in ((exported, "onnx-int8", int8), (again_dir, "onnx-int8", again),
                                 (exported, "torch", base_model)):
        assert model_runtime(ref, backend=backend) == loaded.runtime  # type: ignore[arg-type]
    assert model_runtime(exported, backend="onnx-fp32") == "onnx-fp32"

    def runtime(index: Path) -> str:
        return str(json.loads((index / "manifest.json").read_text())["model"]["runtime"])

    index = build_index(sample_data, int8, tmp_path / "index")
    queried = index_query_runtime(json.loads((index / "manifest.json").read_text()))
    assert queried == index_model(load_index(index)).runtime == int8.runtime
    built = (index / "manifest.json").stat().st_mtime_ns
    assert runtime(index) == int8.runtime
    assert (build_index(sample_data, int8, index) / "manifest.json").stat().st_mtime_ns == built
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "aisle.retrieval.store" and r.levelno >= logging.WARNING]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aisle.retrieval.store"):
        load_index(index).check_runtime(int8.runtime)
        load_index(index).check_runtime("torch")  # a backend asked for, not another export
        assert warnings() == []
        load_index(index).check_runtime(again.runtime)
    assert len(warnings()) == 1 and "another int8 export" in warnings()[0]
    served = ServeConfig(index=str(index))

    def still(model: TwoTowerModel, config: ServeConfig = served) -> bool:
        return _still_serves(model, load_index(index), config)

    assert still(int8) and not still(again)
    # A reload keeps a loaded model only where a fresh start would load the same: not a
    # torch or fp32 tower for an index the int8 export embedded, unless asked for.
    assert not still(base_model) and not still(load_model(exported, backend="onnx-fp32"))
    assert still(base_model, ServeConfig(index=str(index), backend="torch"))
    assert runtime(build_index(sample_data, again, index)) == again.runtime  # embedded again
    assert still(again) and not still(int8)

    root = tmp_path / "root"
    build_version(sample_data, int8, root)
    with pytest.raises(ManifestMismatch, match="another int8 export"):
        update_version(sample_data, root, again)
    # A version from before exports were recorded cannot say which one embedded it.
    path = resolve_index_dir(root) / "manifest.json"
    old = json.loads(path.read_text())
    del old["model"]["runtime"]
    path.write_text(json.dumps(old))
    with pytest.raises(ManifestMismatch, match="did not record"):
        update_version(sample_data, root, int8)


def test_the_fp32_parity_check_refuses_nan_on_either_side() -> None:
    from types import SimpleNamespace

    from aisle.errors import ArtifactError
    from aisle.towers.export import PARITY_TEXTS, _check_parity

    def model(query: float, product: float) -> TwoTowerModel:
        def tower(value: float) -> SimpleNamespace:
            return SimpleNamespace(encode=lambda texts: torch.full((len(texts), 4), value))
        return SimpleNamespace(query=tower(query), product=tower(product))  # type: ignore[return-value]

    assert len(PARITY_TEXTS) > 0
    assert _check_parity(model(0.5, 0.5), model(0.5, 0.5)) == 0.0
    for broken in (model(float("nan"), 0.5), model(0.5, float("nan"))):  # nan on either side
        with pytest.raises(ArtifactError, match="differ from torch"):
            _check_parity(model(0.5, 0.5), broken)


LONG_PRODUCT = ("Tile Saw | brand: RIDGID | category: Power Tools | description: "
                + "wet cutting with a 7 in. diamond blade and a sliding table " * 12)


def test_a_copied_base_model_reads_products_as_aisle_does(exported: Path) -> None:
    """The base model's own directory reads 256 word pieces; aisle's towers, and the card
    of the copy, 128: sentence-transformers must read the copy as aisle does."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(exported), device="cpu", local_files_only=True)
    assert st.max_seq_length == 128
    ours = load_model(exported, TowerConfig(backend="torch")).product.encode([LONG_PRODUCT])
    torch.testing.assert_close(st.encode_document([LONG_PRODUCT], convert_to_tensor=True), ours,
                               atol=1e-5, rtol=0)


def test_a_hub_download_with_its_own_onnx_folder_exports_a_copy(
    base_model: TwoTowerModel, tmp_path: Path
) -> None:
    """Hub snapshots of sentence-transformers models ship an onnx/ folder of their own; the
    copy used to leave it out and refuse itself ("the copy is not faithful")."""
    import shutil

    from aisle.towers.model import base_model_path

    hub = shutil.copytree(base_model_path(), tmp_path / "hub")
    (hub / "onnx").mkdir()
    (hub / "onnx" / "model_O4.onnx").write_bytes(b"the hub's own export")
    source = load_model(hub)
    out = export_model(hub, tmp_path / "copy")
    model = load_model(out)
    assert model.backend == "onnx-fp32" and model.fingerprint == source.fingerprint
    torch.testing.assert_close(model.encode_query(TEXTS), source.encode_query(TEXTS),
                               atol=1e-4, rtol=0)
