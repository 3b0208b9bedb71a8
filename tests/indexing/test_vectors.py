"""Building an index from a precomputed vector file: each refusal, and the round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aisle.cli import main
from aisle.data.dataset import load_dataset
from aisle.errors import ManifestMismatch
from aisle.indexing.build import build_index, build_version
from aisle.indexing.vectors import (
    FINGERPRINT_KEY,
    RUNTIME_KEY,
    VectorFileError,
    export_vectors,
    read_vectors,
    write_vectors,
)
from aisle.retrieval.config import IndexConfig
from aisle.retrieval.retriever import open_retriever
from aisle.retrieval.store import load_index
from aisle.towers.config import runtime_backend
from aisle.towers.model import TwoTowerModel

QUERIES = ["cordless drill", "white wall paint", "ladder", "garden hose"]


@pytest.fixture(scope="module")
def exported(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_vectors(sample_index, tmp_path_factory.mktemp("vec") / "vectors.parquet")


def _write(tmp: Path, ids: list[str], x: np.ndarray, fp: str) -> Path:
    return write_vectors(tmp / "v.parquet", np.asarray(ids), x, fp)


def _rewritten(exported: Path, out: Path, runtime: str | None) -> Path:
    """``exported``'s vectors in a file that names ``runtime`` (None: names none)."""
    t = pq.read_table(exported)
    x = np.stack(t.column("vector").to_numpy(zero_copy_only=False))
    return write_vectors(out, np.asarray(t.column("product_id").to_pylist()), x,
                         t.schema.metadata[FINGERPRINT_KEY].decode(), runtime=runtime)


def test_an_index_records_the_runtime_its_vector_file_names_and_no_other(
    sample_data: Path, base_model: TwoTowerModel, exported: Path, tmp_path: Path
) -> None:
    flat = IndexConfig(kind="flat")

    def built(name: str, vectors: Path | None) -> dict[str, object]:
        out = build_index(sample_data, base_model, tmp_path / name, flat, vectors=vectors)
        return dict(load_index(out).manifest["model"])

    # export-vectors writes what embedded the index; a build from the file records it, so a
    # build without the file finds that index current and keeps it.
    assert pq.read_schema(exported).metadata[RUNTIME_KEY] == base_model.runtime.encode()
    model = built("named", exported)
    assert (model["runtime"], model["backend"]) == (base_model.runtime, "torch")
    manifest = tmp_path / "named" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    built("named", None)
    assert manifest.stat().st_mtime_ns == stamp
    # A file that names no runtime makes an index whose runtime is unknown, not the model's:
    # a build without the file embeds the catalog again rather than trust it.
    model = built("unnamed", _rewritten(exported, tmp_path / "bare.parquet", None))
    assert (model["runtime"], model["backend"]) == (None, None)
    model = built("unnamed", None)
    assert (model["runtime"], model["backend"]) == (base_model.runtime, "torch")
    assert load_index(tmp_path / "unnamed").manifest["embedding"]["encoded"] == 300
    # A runtime aisle does not run is kept as the file gives it, with no backend.
    model = built("foreign", _rewritten(exported, tmp_path / "gpu.parquet", "gpu-fp16"))
    assert (model["runtime"], model["backend"]) == ("gpu-fp16", None)
    assert [runtime_backend(r) for r in ("torch", "onnx-int8.fdd10cf1", "torch.fp16", "auto",
                                         "onnx-int8.x")] == ["torch", "onnx-int8", None, None,
                                                             None]


def test_a_build_from_exported_vectors_equals_the_normal_build(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel, exported: Path,
    tmp_path: Path,
) -> None:
    out = build_index(sample_data, base_model, tmp_path / "from-file", vectors=exported)
    normal, built = load_index(sample_index), load_index(out)
    assert list(built.product_ids) == list(normal.product_ids)
    a = export_vectors(sample_index, tmp_path / "a.parquet")
    b = export_vectors(out, tmp_path / "b.parquet")
    va = np.stack(pq.read_table(a).column("vector").to_numpy(zero_copy_only=False))
    vb = np.stack(pq.read_table(b).column("vector").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(va, vb, atol=1e-5)
    # ... and both are what the model gives each product now.
    products = load_dataset(sample_data).products.set_index("product_id")
    ids = pq.read_table(b).column("product_id").to_pylist()
    fresh = base_model.encode_product(products.loc[ids].reset_index()).numpy()
    np.testing.assert_allclose(vb, fresh, atol=1e-5)
    for mode in ("dense", "hybrid", "lexical"):
        got = open_retriever(built, base_model).search_texts(QUERIES, 5, mode)
        want = open_retriever(normal, base_model).search_texts(QUERIES, 5, mode)
        for g, w in zip(got, want, strict=True):
            assert [h.product_id for h in g.hits] == [h.product_id for h in w.hits]
    embedding = built.manifest["embedding"]
    assert embedding["source"] == "file"
    assert embedding["model_fingerprint"] == base_model.fingerprint
    assert len(embedding["sha256"]) == 64
    assert built.manifest["count"] == normal.manifest["count"] == 300


def test_row_order_and_a_plain_list_column_of_doubles_are_accepted(
    sample_data: Path, base_model: TwoTowerModel, exported: Path, tmp_path: Path
) -> None:
    t = pq.read_table(exported)
    x = np.stack(t.column("vector").to_numpy(zero_copy_only=False)).astype(np.float64)
    ids = t.column("product_id").to_pylist()
    order = np.random.default_rng(0).permutation(len(ids))
    plain = pa.table({"product_id": [ids[i] for i in order],
                      "vector": pa.array([list(x[i]) for i in order], pa.list_(pa.float64()))})
    path = tmp_path / "plain.parquet"
    pq.write_table(plain.replace_schema_metadata(
        {FINGERPRINT_KEY: base_model.fingerprint.encode()}), path)
    out = build_index(sample_data, base_model, tmp_path / "idx", IndexConfig(kind="flat"),
                      vectors=path)
    assert sorted(load_index(out).product_ids) == sorted(ids)


def _refusal_cases(
    fp: str,
) -> dict[str, tuple[Callable[[list[str], np.ndarray], tuple[list[str], np.ndarray, str]], str]]:
    def scaled(ids: list[str], x: np.ndarray) -> tuple[list[str], np.ndarray, str]:
        return ids, x * 2, fp

    def nan(ids: list[str], x: np.ndarray) -> tuple[list[str], np.ndarray, str]:
        x = x.copy()
        x[5, 7] = np.nan
        return ids, x, fp

    return {
        "wrong dim": (lambda ids, x: (ids, x[:, :128] / np.linalg.norm(x[:, :128], axis=1,
                                                                        keepdims=True), fp),
                      "128 dimensions, the model's have 384"),
        "not normalised": (scaled, r"not unit length.*np\.linalg\.norm"),
        "duplicate": (lambda ids, x: ([*ids[:-1], ids[0]], x, fp), "appear twice"),
        "missing product": (lambda ids, x: (ids[1:], x[1:], fp), "1 catalog product"),
        "extra product": (lambda ids, x: ([*ids, "zz-not-sold"], np.vstack([x, x[:1]]), fp),
                          "not in the catalog.*zz-not-sold"),
        "nan": (nan, "NaN or inf"),
        "fingerprint": (lambda ids, x: (ids, x, "0" * 16), "made by model fingerprint 0000"),
    }


@pytest.mark.parametrize("case", ["wrong dim", "not normalised", "duplicate", "missing product",
                                  "extra product", "nan", "fingerprint"])
def test_each_bad_vector_file_is_refused_and_nothing_is_written(
    case: str, sample_data: Path, base_model: TwoTowerModel, exported: Path, tmp_path: Path
) -> None:
    t = pq.read_table(exported)
    ids = t.column("product_id").to_pylist()
    x = np.stack(t.column("vector").to_numpy(zero_copy_only=False))
    edit, message = _refusal_cases(base_model.fingerprint)[case]
    path = _write(tmp_path, *edit(ids, x))
    error = ManifestMismatch if case == "fingerprint" else VectorFileError
    with pytest.raises(error, match=message) as info:
        build_version(sample_data, base_model, tmp_path / "root", vectors=path)
    assert "\n" not in str(info.value)
    root = tmp_path / "root"
    assert not (root / "versions").exists() and not (root / "CURRENT").exists()


def test_a_file_naming_no_model_is_refused(base_model: TwoTowerModel, tmp_path: Path) -> None:
    path = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"product_id": ["a"], "vector": [[1.0, 0.0]]}), path)
    with pytest.raises(VectorFileError, match="names no model"):
        read_vectors(path, base_model.fingerprint, base_model.dim)


def test_cli_builds_a_version_from_vectors_and_exports_them(
    sample_data: Path, base_model: TwoTowerModel, exported: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    assert main(["index", "--data", str(sample_data), "--out", str(root),
                 "--vectors", str(exported), "kind=flat"]) == 0
    again = tmp_path / "again.parquet"
    assert main(["index", "export-vectors", "--index", str(root), "--out", str(again)]) == 0
    a, b = pq.read_table(exported), pq.read_table(again)
    assert a.column("product_id").to_pylist() == b.column("product_id").to_pylist()
    assert a.schema.metadata[FINGERPRINT_KEY] == b.schema.metadata[FINGERPRINT_KEY]
    manifest = json.loads((load_index(root).root / "manifest.json").read_text())
    assert manifest["embedding"]["source"] == "file"
    bad = _write(tmp_path, ["x"], np.ones((1, 384), np.float32), base_model.fingerprint)
    assert main(["index", "--data", str(sample_data), "--out", str(tmp_path / "r2"),
                 "--vectors", str(bad)]) == 2


def test_export_replaces_a_vector_file_and_nothing_else(sample_index: Path,
                                                        tmp_path: Path) -> None:
    from aisle.errors import ArtifactError

    catalog = tmp_path / "products.csv"
    catalog.write_text("product_id,title\np1,drill\n")  # a mistyped --out
    with pytest.raises(ArtifactError, match="is not a vector file aisle wrote"):
        export_vectors(sample_index, catalog)
    assert catalog.read_text() == "product_id,title\np1,drill\n"
    with pytest.raises(ArtifactError, match="is not a file"):
        export_vectors(sample_index, tmp_path)
    again = export_vectors(sample_index, tmp_path / "v.parquet")
    assert export_vectors(sample_index, again) == again  # an earlier export is replaced
