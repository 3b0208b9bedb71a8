"""``aisle index update`` equals a full rebuild, without re-embedding unchanged products."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aisle.configs import load_config
from aisle.indexing.build import build_version
from aisle.indexing.update import update_version
from aisle.retrieval.config import IndexConfig
from aisle.retrieval.filters import Filter, parse_filters
from aisle.retrieval.fusion import fuse
from aisle.retrieval.query import QueryPreparer
from aisle.retrieval.retriever import Retriever
from aisle.retrieval.store import ProductIndex, load_index
from aisle.towers.model import TwoTowerModel
from tests.conftest import reseal
from tests.indexing.conftest import CountingEncoder, edited, tune

QUERIES = ["cordless drill", "white wall paint", "garden hose", "ladder", "brand new thing"]


def results(
    index: ProductIndex, model: TwoTowerModel, flt: Filter | None = None, k: int = 10
) -> list[list[tuple[str, float]]]:
    where = None if flt is None else index.select(flt)
    hits = index.search(model.encode_query(QUERIES).numpy(), k, where)
    return [[(h.product_id, h.score) for h in row] for row in hits]


def assert_same_results(a: ProductIndex, b: ProductIndex, model: TwoTowerModel) -> None:
    assert sorted(p for p in a.product_ids if p is not None) == sorted(
        p for p in b.product_ids if p is not None
    )
    for ra, rb in zip(results(a, model), results(b, model), strict=True):
        np.testing.assert_allclose([s for _, s in ra], [s for _, s in rb], atol=1e-5)
        # Equal scores may come in either order; compare ids score by score.
        assert {p for p, _ in ra} == {p for p, _ in rb}
    # The stored fields follow their products (an in-place update keeps ids with gaps), and
    # a filter selects the same products from both.
    ids = sorted(p for p in b.product_ids if p is not None)
    assert a.field_values(ids) == b.field_values(ids)
    flt = parse_filters(["price<=40", "in_stock=true"])
    for ra, rb in zip(results(a, model, flt), results(b, model, flt), strict=True):
        np.testing.assert_allclose([s for _, s in ra], [s for _, s in rb], atol=1e-5)
        assert {p for p, _ in ra} == {p for p, _ in rb}


@pytest.mark.parametrize(
    ("overrides", "in_place"),
    [
        (["kind=flat"], True),
        (["kind=hnsw"], False),  # rebuilt from cached vectors
        (["kind=ivf_flat", "nlist=2", "nprobe=2"], True),  # nprobe = nlist: exhaustive
    ],
)
def test_update_equals_a_full_rebuild(
    overrides: list[str],
    in_place: bool,
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load_config(IndexConfig, None, overrides)
    day1, day2 = prepare_catalog(catalog, "day1"), prepare_catalog(edited(catalog), "day2")
    root = tmp_path / "root"
    first = build_version(day1, base_model, root, config)
    counting.texts.clear()
    with caplog.at_level("INFO"):
        updated = update_version(day2, root, base_model)
    assert len(counting.texts) == 11  # 5 changed + 6 new; the rest come from the cache
    assert updated != first and load_index(root).root == updated
    assert ("updated in place" in caplog.text) == in_place
    assert ("cannot remove vectors" in caplog.text) == (not in_place)

    rebuilt = build_version(day2, base_model, tmp_path / "full", config)
    new, full = load_index(updated), load_index(rebuilt)
    assert new.manifest["count"] == full.manifest["count"] == 122
    assert_same_results(new, full, base_model)
    # Per partition too (store-1, store 2), and the deleted product is gone everywhere.
    for name in ("store-1", "store 2"):
        assert_same_results(new.partition(name), full.partition(name), base_model)
    gone = catalog["product_id"].iloc[8]
    assert gone not in set(new.product_ids) and gone in set(load_index(first).product_ids)
    # Hybrid over an updated index (in place: rows removed from FAISS and the id map) fuses
    # arrays of rows to fuse's answer.
    retriever = Retriever(base_model, new, QueryPreparer(None, fold_case=True))
    assert retriever.fusion_ids is not None  # else the lists are compared with themselves
    queries = retriever.prepare(QUERIES)
    dense, lexical = retriever.candidates(queries, 10)
    assert retriever.hybrid_ranked(queries, 10) == [
        fuse(d, lx, 10, retriever.fusion) for d, lx in zip(dense, lexical, strict=True)]


def test_an_ivf_index_updated_in_place_loads_only_with_the_row_map_of_its_ids(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    """An IVF index updated in place keeps its products' ids, with gaps where products left.
    Its row map must name exactly those: a row relabelled to an id FAISS does not hold is
    refused as the index loads, not found missing from results later."""
    from aisle.errors import ArtifactError

    root = tmp_path / "root"
    config = load_config(IndexConfig, None, ["kind=ivf_flat", "nlist=2", "nprobe=2"])
    build_version(prepare_catalog(catalog, "day1"), base_model, root, config)
    updated = update_version(prepare_catalog(edited(catalog), "day2"), root, base_model)
    rows = pd.read_parquet(updated / "rows.parquet")
    labels = rows["label"].to_numpy()
    assert not np.array_equal(labels, np.arange(len(rows)))  # gaps: the ids are FAISS's own
    assert load_index(updated).manifest["count"] == len(rows)
    moved = labels.copy()
    moved[0] = labels.max() + 100
    rows.assign(label=moved).to_parquet(updated / "rows.parquet")
    reseal(updated)
    with pytest.raises(ArtifactError, match=re.escape(
            f"1 FAISS id(s) that no row names (first [{labels[0]}]), 1 row label(s) that "
            f"FAISS does not hold (first [{labels.max() + 100}])")):
        load_index(updated)


def test_a_version_built_on_a_gpu_is_updated_on_the_cpu_where_faiss_sees_none(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The manifest records device=gpu for a GPU build, and an update builds with the
    recorded config: on a CPU machine it embedded the changed products, then failed ("device=gpu
    but faiss sees no GPU", with no option to change it), so the index could not be updated."""
    import json

    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("this machine has a GPU: a device=gpu version updates on it")
    root = tmp_path / "root"
    config = load_config(IndexConfig, None, ["kind=ivf_flat", "nlist=2", "nprobe=2"])
    built = build_version(prepare_catalog(catalog, "day1"), base_model, root, config)
    manifest = json.loads((built / "manifest.json").read_text())
    manifest["index_config"]["device"] = "gpu"  # as a GPU build records it
    (built / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level("WARNING"):
        updated = update_version(prepare_catalog(edited(catalog), "day2"), root, base_model)
    assert "built with device=gpu and faiss sees no GPU here" in caplog.text
    assert load_index(updated).manifest["index_config"]["device"] == "auto"
    fresh = build_version(prepare_catalog(edited(catalog), "day2b"), base_model,
                          tmp_path / "fresh", config)
    assert_same_results(load_index(updated), load_index(fresh), base_model)


def test_a_flat_update_keeps_every_vector(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    build_version(prepare_catalog(catalog, "day1"), base_model, root)
    day2 = edited(catalog)
    index = load_index(update_version(prepare_catalog(day2, "day2"), root, base_model))
    flat = index.searcher.index  # type: ignore[attr-defined]
    by_id = {pid: flat.reconstruct(i) for i, pid in enumerate(index.product_ids)}
    expected = base_model.encode_product(day2).numpy()
    got = np.stack([by_id[p] for p in day2["product_id"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_update_of_the_same_catalog_is_a_no_op_and_needs_a_versioned_root(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    sample_index: Path,
    tmp_path: Path,
) -> None:
    data = prepare_catalog(catalog.iloc[:40], "small")
    root = tmp_path / "root"
    first = build_version(data, base_model, root)
    assert update_version(data, root, base_model) == first
    with pytest.raises(ValueError, match="not a versioned index root"):
        update_version(data, sample_index, base_model)


def test_an_update_never_mixes_backends(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    import json

    from aisle.errors import ManifestMismatch

    root = tmp_path / "root"
    version = build_version(prepare_catalog(catalog, "day1"), base_model, root)
    manifest_path = version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["model"]["backend"] == base_model.backend == "torch"
    # as if the catalog had been embedded by the model's int8 export
    manifest["model"]["backend"] = "onnx-int8"
    manifest_path.write_text(json.dumps(manifest))
    day2 = prepare_catalog(edited(catalog), "day2")
    with pytest.raises(ManifestMismatch, match="embedded with the onnx-int8 backend"):
        update_version(day2, root, base_model)
    # `aisle index update` can load the model with another backend, and says how
    with pytest.raises(ManifestMismatch, match=r"aisle index update --backend onnx-int8"):
        update_version(day2, root, model_ref=str(base_model.ref), backend="torch")


def test_the_update_command_loads_the_model_with_the_backend_that_built_the_version(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    from aisle.cli import main
    from aisle.retrieval.layout import current_id

    root = tmp_path / "root"
    first = build_version(prepare_catalog(catalog, "day1"), base_model, root)
    day2 = prepare_catalog(edited(catalog), "day2")
    day3 = prepare_catalog(edited(catalog).iloc[:100], "day3")
    # No --model, no --backend: the current version's model, with its backend (torch).
    assert main(["index", "update", "--data", str(day2), "--out", str(root)]) == 0
    second = current_id(root)
    assert second != first.name
    assert load_index(root).manifest["model"]["backend"] == "torch"
    # --model and --backend given: used as given.
    assert main(["index", "update", "--data", str(day3), "--out", str(root), "--model",
                 str(base_model.ref), "--backend", "torch"]) == 0
    assert current_id(root) not in (first.name, second)
    with pytest.raises(ValueError, match="not both"):
        update_version(day3, root, base_model, backend="torch")


def test_an_update_keeps_the_bm25_analyzer_an_older_version_was_built_with(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    import json

    # A version written before the BM25 fields existed: bm25s's tokenizer, no record of it.
    root = tmp_path / "root"
    legacy = IndexConfig(bm25_analyzer="word", bm25_k1=1.5, bm25_b=0.75, bm25_fuzzy=False)
    version = build_version(prepare_catalog(catalog, "day1"), base_model, root, legacy)
    for manifest_path in version.rglob("manifest.json"):  # the catalog's and each partition's
        manifest = json.loads(manifest_path.read_text())
        for key in ("bm25_analyzer", "bm25_k1", "bm25_b", "bm25_fuzzy"):
            del manifest["index_config"][key]
        del manifest["files"]  # recorded since 2026-12-08
        manifest_path.write_text(json.dumps(manifest))
    for analyzer_file in version.rglob("analyzer.json"):
        analyzer_file.unlink()
    legacy_params = {"analyzer": "word", "fuzzy": False, "k1": 1.5, "b": 0.75}
    assert load_index(version).lexical.params == legacy_params

    updated = load_index(update_version(prepare_catalog(edited(catalog), "day2"), root, base_model))
    assert updated.lexical.params == legacy_params
    assert updated.manifest["index_config"]["bm25_analyzer"] == "word"
    assert updated.partition("store-1").lexical.params["analyzer"] == "word"


def test_an_update_over_vectors_of_an_unknown_runtime_replaces_them_and_a_foreign_one_refuses(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import json
    import logging

    import pyarrow.parquet as pq

    from aisle.errors import ManifestMismatch
    from aisle.indexing.embed_cache import cache_key
    from aisle.indexing.vectors import FINGERPRINT_KEY, export_vectors, write_vectors

    day1, day2 = prepare_catalog(catalog, "day1"), prepare_catalog(edited(catalog), "day2")

    def vectors_of(root: Path, name: str) -> dict[str, np.ndarray]:
        t = pq.read_table(export_vectors(root, tmp_path / f"{name}.out.parquet"))
        return dict(zip(t.column("product_id").to_pylist(),
                        np.stack(t.column("vector").to_numpy(zero_copy_only=False)),
                        strict=True))

    table = pq.read_table(export_vectors(build_version(day1, base_model, tmp_path / "embedded"),
                                         tmp_path / "v.parquet"))
    ids = np.asarray(table.column("product_id").to_pylist())
    # Made some other way: each product's vector is its neighbour's (still unit length).
    x = np.roll(np.stack(table.column("vector").to_numpy(zero_copy_only=False)), 1, axis=0)
    fingerprint = table.schema.metadata[FINGERPRINT_KEY].decode()

    def root_from(name: str, runtime: str | None) -> Path:
        vectors = write_vectors(tmp_path / f"{name}.parquet", ids, x, fingerprint,
                                runtime=runtime)
        # Flat removes vectors, so an update keeps those of unchanged products in place.
        build_version(day1, base_model, tmp_path / name, IndexConfig(kind="flat"),
                      vectors=vectors)
        return tmp_path / name

    # Named by no runtime: the update says so, embeds every product and builds the index from
    # those vectors alone; the new version records what made them, and keeps its cache.
    build_version(day2, base_model, tmp_path / "fresh", IndexConfig(kind="flat"))
    want = vectors_of(tmp_path / "fresh", "fresh")
    unnamed = root_from("unnamed", None)
    assert load_index(unnamed).manifest["model"]["runtime"] is None
    with caplog.at_level(logging.WARNING, logger="aisle.indexing.update"):
        update_version(day2, unnamed, base_model)
    assert any("does not record what embedded" in r.getMessage() for r in caplog.records)
    assert load_index(unnamed).manifest["model"]["runtime"] == base_model.runtime
    got = vectors_of(unnamed, "unnamed")
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose(np.stack([got[p] for p in want]), np.stack(list(want.values())),
                               atol=1e-5)
    assert (unnamed / "embed-cache" / cache_key(base_model.fingerprint,
                                                 base_model.runtime)).is_dir()
    # So is a version from before backends and runtimes were recorded.
    legacy = tmp_path / "legacy"
    manifest_path = build_version(day1, base_model, legacy) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["model"]["backend"], manifest["model"]["runtime"]
    manifest_path.write_text(json.dumps(manifest))
    update_version(day2, legacy, base_model)
    assert load_index(legacy).manifest["model"]["runtime"] == base_model.runtime
    # Named by a runtime this model is not: refused, before anything is written.
    foreign = root_from("foreign", "gpu-fp16")
    before = sorted(p.name for p in (foreign / "versions").iterdir())
    with pytest.raises(ManifestMismatch, match=r"made by gpu-fp16 \(its vector file says\)"):
        update_version(day2, foreign, base_model)
    assert sorted(p.name for p in (foreign / "versions").iterdir()) == before
    # Named by this model's own runtime: an update like any other, which keeps the vectors of
    # unchanged products.
    caplog.clear()
    same = root_from("same", base_model.runtime)
    with caplog.at_level(logging.WARNING, logger="aisle.indexing.update"):
        update_version(day2, same, base_model)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert load_index(same).manifest["model"]["runtime"] == base_model.runtime
    unchanged = str(catalog["product_id"].iloc[0])
    np.testing.assert_allclose(vectors_of(same, "same")[unchanged],
                               x[list(ids).index(unchanged)], atol=1e-6)


@pytest.fixture
def root_of_40(catalog: pd.DataFrame, prepare_catalog: Callable[[pd.DataFrame, str], Path],
               base_model: TwoTowerModel, tmp_path: Path) -> tuple[Path, Path]:
    """A versioned root and its one version, of the catalog's first 40 products."""
    root = tmp_path / "root"
    return root, build_version(prepare_catalog(catalog.iloc[:40], "d40"), base_model, root)


@pytest.mark.parametrize("job", ["update", "build"])
def test_a_build_or_update_does_not_undo_a_rollback_made_while_it_ran(
    job: str, root_of_40: tuple[Path, Path], catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path], base_model: TwoTowerModel,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An operator who rolls back away from a bad version while a nightly job runs keeps
    that choice: the job's version is written, not made current."""
    import logging

    import aisle.indexing.build as build_module
    import aisle.indexing.update as update_module
    from aisle.cli import main
    from aisle.indexing.versions import current_id, rollback

    root, first = root_of_40
    bad = build_version(prepare_catalog(catalog.iloc[:45], "d45"), base_model, root)
    module = update_module if job == "update" else build_module
    embed = module.embed_for_build

    def rolled_back_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert rollback(root) == first.name  # an operator turns away from `bad`
        return embed(*args, **kwargs)

    monkeypatch.setattr(module, "embed_for_build", rolled_back_meanwhile)
    data = prepare_catalog(catalog.iloc[:50], "d50")
    with caplog.at_level(logging.WARNING, logger="aisle.indexing.build"):
        assert main(["index", job, "--data", str(data), "--out", str(root)]) == 0
    made = max((root / "versions").iterdir(), key=lambda p: p.stat().st_mtime)
    assert made.name not in (first.name, bad.name) and (made / "manifest.json").is_file()
    assert current_id(root) == first.name  # the rollback stands
    assert f"version {made.name} is written but not made current" in caplog.text
    assert f"index version {made.name} is written in {root}, not current" in (
        capsys.readouterr().out)


def test_an_update_over_a_corrupt_partition_says_to_build_again(
    root_of_40: tuple[Path, Path], catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path], base_model: TwoTowerModel,
) -> None:
    from aisle.errors import ArtifactError

    root, first = root_of_40
    part = next((first / "partitions").iterdir()) / "index.faiss"
    part.write_bytes(part.read_bytes()[:100])  # truncated: a full disk, a bad copy
    with pytest.raises(ArtifactError, match=r"is corrupt .* aisle index build --force"):
        update_version(prepare_catalog(catalog.iloc[:50], "d50"), root, base_model)


def test_an_update_over_a_partition_whose_rows_and_index_disagree_is_refused_before_any_work(
    catalog: pd.DataFrame, prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel, counting: CountingEncoder, tmp_path: Path,
) -> None:
    """A partition's FAISS index with one vector fewer than its row map (a copy of another
    build's file): changed in place (flat), its labels would point at the wrong vectors."""
    import faiss

    from aisle.errors import ArtifactError
    from aisle.indexing.versions import current_id

    root = tmp_path / "root"
    first = build_version(prepare_catalog(catalog.iloc[:40], "d40"), base_model, root,
                          IndexConfig(kind="flat"))
    part = first / "partitions" / "store-1"
    index = faiss.read_index(str(part / "index.faiss"))
    index.remove_ids(np.array([0], dtype=np.int64))
    faiss.write_index(index, str(part / "index.faiss"))
    data = prepare_catalog(catalog.iloc[:50], "d50")
    counting.texts.clear()
    with pytest.raises(ArtifactError, match=(r"partitions/store-1: its index\.faiss holds 13 "
                                             r"vectors, its rows\.parquet 14 rows.*"
                                             r"aisle index build --force")):
        update_version(data, root, base_model)
    assert not counting.texts  # refused before anything was embedded
    assert sorted(p.name for p in (root / "versions").iterdir()) == [first.name]
    assert current_id(root) == first.name


def test_an_update_to_an_empty_csv_catalog_names_the_catalog_given(
    root_of_40: tuple[Path, Path], base_model: TwoTowerModel, tmp_path: Path
) -> None:
    from aisle.errors import DataError

    root, first = root_of_40
    empty = tmp_path / "empty-csv"
    empty.mkdir()
    (empty / "products.csv").write_text("product_id,title,description,brand,category\n")
    with pytest.raises(DataError, match=f"^{re.escape(str(empty))}: the catalog has no products"):
        update_version(empty, root, base_model)
    assert [p.name for p in (root / "versions").iterdir()] == [first.name]


@pytest.mark.parametrize("kind", ["hnsw", "flat"])
def test_an_update_over_a_vector_file_of_its_runtime_encodes_only_new_and_changed_products(
    kind: str,
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    """The vectors of unchanged products are the current version's, whether the index is
    changed in place (flat) or rebuilt (hnsw): none is encoded again, none replaced."""
    import pyarrow.parquet as pq

    from aisle.indexing.vectors import FINGERPRINT_KEY, export_vectors, write_vectors

    day1, day2 = prepare_catalog(catalog, "day1"), prepare_catalog(edited(catalog), "day2")
    table = pq.read_table(export_vectors(
        build_version(day1, base_model, tmp_path / "embedded", IndexConfig(kind="flat")),
        tmp_path / "v.parquet"))
    ids = table.column("product_id").to_pylist()
    # Made elsewhere (each product's vector is its neighbour's), by this model and runtime.
    x = np.roll(np.stack(table.column("vector").to_numpy(zero_copy_only=False)), 1, axis=0)
    vectors = write_vectors(tmp_path / "file.parquet", np.asarray(ids), x,
                            table.schema.metadata[FINGERPRINT_KEY].decode(),
                            runtime=base_model.runtime)
    root = tmp_path / "root"
    build_version(day1, base_model, root, IndexConfig(kind=kind), vectors=vectors)
    counting.texts.clear()
    updated = update_version(day2, root, base_model)
    assert len(counting.texts) == 11  # 5 changed + 6 new
    got = pq.read_table(export_vectors(updated, tmp_path / "after.parquet"))
    after = dict(zip(got.column("product_id").to_pylist(),
                     np.stack(got.column("vector").to_numpy(zero_copy_only=False)), strict=True))
    unchanged = str(catalog["product_id"].iloc[0])
    np.testing.assert_allclose(after[unchanged], x[ids.index(unchanged)], atol=1e-6)


def test_an_update_keeps_the_tuned_fusion_and_its_record_so_a_rebuild_keeps_it_too(
    catalog: pd.DataFrame, prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel, tmp_path: Path,
) -> None:
    day1, day2 = prepare_catalog(catalog, "day1"), prepare_catalog(edited(catalog), "day2")
    root = tmp_path / "root"
    config = IndexConfig(kind="flat")
    tune(build_version(day1, base_model, root, config), 0.6)
    updated = update_version(day2, root, base_model)
    assert load_index(updated).fusion().weight == 0.6
    assert load_index(updated).manifest["fusion_tuning"]["split"] == "dev"
    rebuilt = build_version(day2, base_model, root, config, force=True)
    assert rebuilt != updated and load_index(root).fusion().weight == 0.6
