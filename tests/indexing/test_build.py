from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from aisle.data.dataset import load_dataset
from aisle.errors import AisleError, ArtifactError, DataError, ManifestMismatch
from aisle.indexing.build import build_index
from aisle.retrieval.retriever import open_retriever
from aisle.retrieval.store import load_index
from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model
from tests.conftest import reseal
from tests.indexing.conftest import CountingEncoder, tune


def test_index_holds_every_product_with_a_self_describing_manifest(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel
) -> None:
    manifest = json.loads((sample_index / "manifest.json").read_text())
    ds = load_dataset(sample_data)
    assert manifest["kind"] == "aisle.index"
    assert manifest["count"] == len(ds.products) == 300
    assert manifest["dim"] == 384
    # The catalog's fields are stored with the rows, typed (aisle/data/fields.py).
    assert manifest["fields"] == {"brand": "string", "category": "string",
                                  "in_stock": "boolean", "price": "number"}
    stored = pd.read_parquet(sample_index / "rows.parquet")
    assert stored["price"].dtype == "float64" and str(stored["in_stock"].dtype) == "boolean"
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
    retriever = open_retriever(load_index(sample_index), base_model)
    hits = retriever.search_texts(["cordless drill"], 5, "dense")[0].hits
    assert len(hits) == 5
    assert all("drill" in h.title for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_k_larger_than_the_catalog_returns_the_whole_catalog(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    retriever = open_retriever(load_index(sample_index), base_model)
    hits = retriever.search_texts(["ladder"], 1000, "dense")[0].hits
    assert len(hits) == 300


def test_an_index_built_by_another_model_is_refused(sample_index: Path) -> None:
    other = load_model(None, TowerConfig(pooling="max"))
    with pytest.raises(ManifestMismatch, match="rebuild the index"):
        load_index(sample_index, other.fingerprint)
    with pytest.raises(ManifestMismatch):
        open_retriever(load_index(sample_index), other)


def test_wrong_query_dimension_is_a_clear_error(sample_index: Path) -> None:
    index = load_index(sample_index)
    with pytest.raises(ValueError, match=r"needs \(n, 384\)"):
        index.searcher.search(np.zeros((1, 10), dtype=np.float32), 3)


def test_corrupt_or_inconsistent_index_is_refused(sample_index: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(sample_index, broken)
    (broken / "index.faiss").write_bytes(b"not a faiss index")
    # A plain build takes a version whose manifest matches for current, damaged or not: the
    # error says how to build it again.
    with pytest.raises(ArtifactError, match=r"corrupt.*rebuild it \(aisle index build --force\), "
                                            r"or serve the version before it"):
        load_index(broken)
    shutil.copytree(sample_index, tmp_path / "short", dirs_exist_ok=True)
    small = faiss.IndexFlatIP(384)
    small.add(np.zeros((3, 384), dtype=np.float32))
    faiss.write_index(small, str(tmp_path / "short" / "index.faiss"))
    with pytest.raises(ArtifactError, match="inconsistent"):
        load_index(tmp_path / "short")
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        load_index(tmp_path)


def test_a_row_map_that_names_other_ids_than_faiss_holds_is_refused(
    sample_index: Path, tmp_path: Path
) -> None:
    """Labels that are unique and as many as FAISS's vectors can still name other ids: a
    product FAISS holds would be missing from every result, and one past the last label would
    fail the searches that find it. Loading says so and names the ids."""
    rows = pd.read_parquet(sample_index / "rows.parquet")
    n = len(rows)
    # A permutation of the row numbers names the same ids (which vector is which product is
    # the build's to know): it loads.
    shuffled = tmp_path / "shuffled"
    shutil.copytree(sample_index, shuffled)
    rows.assign(label=np.arange(n)[::-1]).to_parquet(shuffled / "rows.parquet")
    reseal(shuffled)  # as though the build wrote it so (another size: the size check refuses)
    assert load_index(shuffled).manifest["count"] == n
    # The default index holds ids 0..n-1; one row relabelled past them.
    moved = tmp_path / "moved"
    shutil.copytree(sample_index, moved)
    labels = np.arange(n)
    labels[5] = n + 7
    rows.assign(label=labels).to_parquet(moved / "rows.parquet")
    reseal(moved)
    with pytest.raises(ArtifactError, match=re.escape(
            f"does not match {moved / 'index.faiss'}: 1 FAISS id(s) that no row names (first "
            f"[5]), 1 row label(s) that FAISS does not hold (first [{n + 7}]); rebuild")):
        load_index(moved)
    # An index that stores ids (an id map here; IVF keeps them in its lists): its ids, not
    # row numbers, are what the labels must name.
    mapped = tmp_path / "mapped"
    shutil.copytree(sample_index, mapped)
    hnsw = faiss.read_index(str(sample_index / "index.faiss"))
    vectors = hnsw.reconstruct_n(0, n)  # HNSW's storage keeps them exactly

    def write_mapped(ids: np.ndarray) -> None:
        by_id = faiss.IndexIDMap(faiss.IndexHNSWFlat(hnsw.d, 16, faiss.METRIC_INNER_PRODUCT))
        by_id.add_with_ids(vectors, ids)
        faiss.write_index(by_id, str(mapped / "index.faiss"))
        reseal(mapped)

    write_mapped(np.arange(n, dtype=np.int64) * 2)
    with pytest.raises(ArtifactError, match=rf": {n // 2} FAISS id\(s\) that no row names"):
        load_index(mapped)  # the row map still says 0..n-1
    rows.assign(label=np.arange(n) * 2).to_parquet(mapped / "rows.parquet")
    reseal(mapped)
    index = load_index(mapped)
    assert index.product_ids[2] == rows["product_id"].iloc[1] and index.product_ids[1] is None
    # A FAISS id repeated, or negative (-1 in place of the last: numpy would read -1 as the
    # last slot), against a row map of 0..n-1.
    rows.to_parquet(mapped / "rows.parquet")
    reseal(mapped)
    for at, bad, message in (
            (1, 0, "0 FAISS id(s) that no row names (first []), 1 FAISS id(s) held more than "
                   "once (first [0]), 1 row label(s) that FAISS does not hold (first [1])"),
            (n - 1, -1, f"1 FAISS id(s) that no row names (first [-1]), 1 row label(s) that "
                        f"FAISS does not hold (first [{n - 1}])")):
        ids = np.arange(n, dtype=np.int64)
        ids[at] = bad
        write_mapped(ids)
        with pytest.raises(ArtifactError, match=re.escape(f": {message}; rebuild")):
            load_index(mapped)


def test_up_to_date_index_is_reused_and_force_rebuilds(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel
) -> None:
    before = (sample_index / "index.faiss").stat().st_mtime_ns
    build_index(sample_data, base_model, sample_index)
    assert (sample_index / "index.faiss").stat().st_mtime_ns == before


def test_a_truncated_file_is_refused_as_it_loads_and_rebuilt_by_a_plain_build(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel, tmp_path: Path
) -> None:
    """The manifest records each file's size. A file cut short after the build (a copy
    stopped early, a full disk) was trusted until ``--force``, because the manifest still
    matched: the load failed deep in FAISS, or in BM25 at the first hybrid search, and a
    plain build reused it."""
    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    manifest = json.loads((index / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"index.faiss", "rows.parquet", "bm25/analyzer.json"}
    assert manifest["files"]["index.faiss"] == (index / "index.faiss").stat().st_size
    with open(index / "index.faiss", "r+b") as f:
        f.truncate(manifest["files"]["index.faiss"] // 2)
    size = manifest["files"]["index.faiss"]
    with pytest.raises(ArtifactError, match=re.escape(
            f"index.faiss is {size // 2} bytes, its manifest records {size} (truncated or "
            "replaced after the build); rebuild it")):
        load_index(index)
    build_index(sample_data, base_model, index)  # not current: rebuilt, no --force
    assert (index / "index.faiss").stat().st_size == size
    assert load_index(index).manifest["count"] == manifest["count"]


@pytest.mark.parametrize(("files", "message"), [
    ([], "'files' must be an object"),
    ({"index.faiss": -1}, "file 'index.faiss' has size -1"),
    ({"index.faiss": "12"}, "file 'index.faiss' has size '12'"),
    ({"../elsewhere": 3}, "file '../elsewhere' is not a path inside the index directory"),
])
def test_an_edited_file_record_is_refused(
    files: object, message: str, sample_index: Path, tmp_path: Path
) -> None:
    broken = shutil.copytree(sample_index, tmp_path / "broken")
    _edit_manifest("files", files)(broken)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        load_index(broken)


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path, base_model: TwoTowerModel) -> None:
    data = tmp_path / "empty"
    data.mkdir()
    (data / "products.csv").write_text("product_id,title,description,brand,category\n")
    # Named as given: not the temporary directory a CSV catalog is prepared into.
    with pytest.raises(DataError, match=f"^{re.escape(str(data))}: the catalog has no products"):
        build_index(data, base_model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def _edit_manifest(
    key: str, value: object = None, delete: bool = False
) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        path = directory / "manifest.json"
        manifest = json.loads(path.read_text())
        if delete:
            del manifest[key]
        else:
            manifest[key] = value
        path.write_text(json.dumps(manifest))

    return edit


def _drop_product_ids(directory: Path) -> None:
    rows = pd.read_parquet(directory / "rows.parquet")
    rows.drop(columns=["product_id"]).to_parquet(directory / "rows.parquet")
    reseal(directory)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_edit_manifest("count", delete=True), r"'count' must be a non-negative integer"),
        (_edit_manifest("count", "300"), r"'count' must be a non-negative integer, got '300'"),
        (_edit_manifest("dim", delete=True), r"'dim' must be a non-negative integer"),
        (_edit_manifest("model", delete=True), r"'model' must be an object"),
        (_edit_manifest("model", {"ref": "m"}), r"'model\.fingerprint' must be"),
        (_edit_manifest("index_config", {"kind": "flatt"}), r"'flatt' is not one of"),
        (_edit_manifest("index_config", {"kind": "flat", "foo": 1}), r"unknown config key"),
        (_edit_manifest("partitions", {"x": "../../elsewhere"}), r"partition 'x' points at"),
        (lambda d: (d / "manifest.json").write_text("[1, 2]"), r"not a JSON object"),
        (_drop_product_ids, r"rows\.parquet has no product_id column"),
    ],
    ids=["no-count", "count-string", "no-dim", "no-model", "no-fingerprint", "kind-typo",
         "unknown-key", "partition-outside", "manifest-list", "rows-without-ids"],
)
def test_an_edited_or_incomplete_index_is_refused_with_a_rebuild_hint(
    edit: Callable[[Path], None], message: str, sample_index: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(sample_index, broken)
    edit(broken)
    with pytest.raises(ArtifactError, match=message) as raised:
        load_index(broken)
    assert "rebuild" in str(raised.value)


def test_a_bm25_dir_without_its_analyzer_file_is_refused_unless_it_predates_it(
    sample_index: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(sample_index, broken)
    (broken / "bm25" / "analyzer.json").unlink()
    # The manifest records the file: the index is refused as it loads, dense search too.
    with pytest.raises(ArtifactError, match=r"bm25/analyzer\.json is missing; rebuild"):
        load_index(broken)
    # Without that record (an index from before 2026-12-08), when BM25 is first read.
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["files"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    index = load_index(broken)  # dense search does not need it
    with pytest.raises(ArtifactError, match=r"analyzer\.json is missing.*rebuild the index"):
        index.lexical  # noqa: B018
    # An index from before analyzer.json recorded no BM25 settings in its manifest either:
    # that one loads with bm25s's tokenizer (tests/indexing/test_update.py builds a real one).
    for key in ("bm25_analyzer", "bm25_k1", "bm25_b", "bm25_fuzzy"):
        del manifest["index_config"][key]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    assert load_index(broken).lexical.params["analyzer"] == "word"


def test_eager_loading_reads_everything_so_deleting_the_directory_later_is_harmless(
    sample_index: Path, tmp_path: Path, base_model: TwoTowerModel
) -> None:
    lazy_dir, eager_dir = tmp_path / "lazy", tmp_path / "eager"
    shutil.copytree(sample_index, lazy_dir)
    shutil.copytree(sample_index, eager_dir)
    lazy = load_index(lazy_dir)
    eager = load_index(eager_dir, base_model.fingerprint, eager=True)
    expected = load_index(sample_index).lexical.search(["cordless drill"], 5)
    assert expected
    shutil.rmtree(lazy_dir)
    shutil.rmtree(eager_dir)
    assert eager.lexical.search(["cordless drill"], 5) == expected
    with pytest.raises(ArtifactError, match="deleted after this index was loaded"):
        lazy.lexical  # noqa: B018
    assert eager.load_all() is eager  # nothing left to read: no error


def test_texts_without_any_bm25_term_build_an_index_whose_lexical_side_finds_nothing(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    # A partition whose only product is titled with emoji and punctuation, and a catalog whose
    # every text is stop words or punctuation: bm25s alone fails on an empty vocabulary.
    blank = {"description": "", "brand": "", "category": ""}
    outlet = pd.DataFrame([{**catalog.iloc[0].to_dict(), **blank, "product_id": "z1",
                            "title": "\U0001f528\U0001f528 !!!", "partition": "outlet"}])
    products = pd.concat([catalog.iloc[:40].assign(partition=""), outlet], ignore_index=True)
    index = load_index(build_index(prepare_catalog(products, "outlet"), base_model,
                                   tmp_path / "a"))
    part = index.partition("outlet")
    assert list(part.product_ids) == ["z1"] and part.lexical.search(["hammer", "!!!"], 5) == [
        [], []]
    query = base_model.encode_query(["hammer"]).numpy()
    assert [h.product_id for h in part.search(query, 5)[0]] == ["z1"]

    nothing = catalog.iloc[:3].assign(title=["---", "The", "\U0001f528"], partition="", **blank)
    index = load_index(build_index(prepare_catalog(nothing, "nothing"), base_model,
                                   tmp_path / "b"))
    assert index.lexical.search(["the", "---", "drill"], 3) == [[], [], []]
    assert len(index.search(query, 5)[0]) == 3


@pytest.mark.parametrize("kind", ["hnsw", "flat", "ivf_flat"])
def test_a_device_the_build_cannot_use_is_refused_before_any_embedding(
    kind: str,
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """device=gpu for a kind that builds on CPU only (or, for IVF, on a machine whose faiss
    sees no GPU) used to be refused by the FAISS build, after the whole catalog was embedded."""
    from aisle.indexing.build import build_version
    from aisle.retrieval.config import IndexConfig

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    data = prepare_catalog(catalog.iloc[:40], "small")
    config = IndexConfig(kind=kind, device="gpu")  # type: ignore[arg-type]
    with pytest.raises(AisleError, match=r"CPU only|sees no GPU"):
        build_version(data, base_model, tmp_path / "root", config)
    assert counting.texts == []
    with pytest.raises(AisleError, match=r"CPU only|sees no GPU"):
        build_index(data, base_model, tmp_path / "plain", config)
    assert counting.texts == [] and not (tmp_path / "plain").exists()


def test_a_partition_too_small_for_a_gpu_ivf_index_builds_flat_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aisle.indexing.ann import build_faiss_index, uses_gpu
    from aisle.indexing.build import fitting_config
    from aisle.retrieval.config import IndexConfig

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    big = IndexConfig(kind="ivf_flat", device="gpu")
    assert fitting_config(big, 39 * 8, 8, "partition 'q'") == big and uses_gpu(big)
    used = fitting_config(IndexConfig(kind="ivf_flat", device="gpu"), 30, 8, "partition 'p'")
    assert used.kind == "flat" and not uses_gpu(used)
    x = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    index = build_faiss_index(used, x / np.linalg.norm(x, axis=1, keepdims=True))
    assert index.ntotal == 30


def test_a_rebuild_by_the_same_model_keeps_the_tuned_fusion_and_another_model_does_not(
    sample_index: Path, sample_data: Path, base_model: TwoTowerModel, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aisle.indexing.build import build_version
    from aisle.retrieval.layout import resolve_index_dir

    out = tmp_path / "index"
    shutil.copytree(sample_index, out)
    tune(out, 0.7)
    build_index(sample_data, base_model, out, force=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fusion"]["weight"] == 0.7 and manifest["fusion_tuning"]["split"] == "dev"
    assert load_index(out).fusion().weight == 0.7

    tune(out, 0.9, fingerprint="another model")  # its dense scores mean something else
    build_index(sample_data, base_model, out, force=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fusion"]["weight"] != 0.9 and "fusion_tuning" not in manifest
    assert "tuned for another model's vectors and is not kept" in caplog.text

    root = tmp_path / "root"
    first = build_version(sample_data, base_model, root)
    tune(first, 0.6)
    second = build_version(sample_data, base_model, root, force=True)
    assert second != first and resolve_index_dir(root) == second
    assert json.loads((second / "manifest.json").read_text())["fusion"]["weight"] == 0.6
