"""The Python API: aisle.open_index(...).search(...) is the query path aisle search uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import aisle
from aisle.errors import AisleError
from aisle.retrieval.retriever import index_model, open_retriever
from aisle.retrieval.store import load_index
from tests.conftest import reseal


def test_search_answers_as_the_retriever_does_in_every_mode(sample_index: Path) -> None:
    idx = aisle.open_index(sample_index)
    assert idx.default_mode == "hybrid" and len(idx) == 300
    index = load_index(sample_index)
    retriever = open_retriever(index, index_model(index))
    for mode in (None, "dense", "lexical", "hybrid"):
        got = idx.search("Cordles DRILL", k=7, mode=mode)
        want = retriever.search_texts(["Cordles DRILL"], 7, mode)[0]
        assert got.mode == want.mode == (mode or "hybrid")
        assert [r.product_id for r in got] == [h.product_id for h in want.hits]
        assert [r.score for r in got] == pytest.approx([h.score for h in want.hits])
        assert len(got) == 7 and got[0].title == want.hits[0].title
        assert got.query == "Cordles DRILL"


def test_search_many_batches_queries_and_bad_input_says_what_to_fix(sample_index: Path) -> None:
    idx = aisle.open_index(sample_index)
    many = idx.search_many(["drill", "paint"], k=3, mode="dense")
    one = idx.search("drill", 3, "dense")
    assert [r.product_id for r in many[0]] == [r.product_id for r in one]
    with pytest.raises(AisleError, match="query is empty"):
        idx.search("  ")
    with pytest.raises(AisleError, match="unknown mode"):
        idx.search("drill", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(AisleError, match="k must be >= 1"):
        idx.search("drill", k=0)
    # What the service answers 422 to is refused here too, saying what to fix.
    for query, message in (("!!!", "no letters or digits"), ("\ud800 drill", "lone surrogate"),
                           (None, "NoneType, not text")):
        with pytest.raises(AisleError, match=message):
            idx.search_many(["drill", query])  # type: ignore[list-item]
    for k in ("5", 2.5, True):
        with pytest.raises(AisleError, match="k must be >= 1"):
            idx.search("drill", k=k)  # type: ignore[arg-type]
    assert len(idx.search("drill", k=np.int64(2))) == 2  # numpy's integers are whole numbers
    # A generator is read once, not spent by the checks.
    from_generator = idx.search_many((q for q in ["drill", "paint"]), k=3, mode="dense")
    assert [[r.product_id for r in r_] for r_ in from_generator] == [
        [r.product_id for r in r_] for r_ in many]
    # rerank_depth as the CLI's --rerank-depth takes it: a whole number >= 0, or None.
    for depth in ("5", 2.5, True, -1):
        with pytest.raises(AisleError, match="rerank_depth must be"):
            idx.search("drill", rerank_depth=depth)  # type: ignore[arg-type]
    assert idx.search("drill", 3, rerank_depth=np.int64(0)).reranked == 0  # type: ignore[arg-type]
    for not_a_list in ("drill", 5):
        with pytest.raises(AisleError, match="list of queries"):
            idx.search_many(not_a_list)  # type: ignore[arg-type]
    with pytest.raises(AisleError, match="autocomplete=DIR"):
        idx.suggest("dri")


def test_search_filters_and_returns_stored_fields(sample_index: Path) -> None:
    idx = aisle.open_index(sample_index)
    assert [f["name"] for f in idx.fields] == ["brand", "category", "in_stock", "price"]
    found = idx.search("drill", k=6, filters={"price": {"lte": 25}, "in_stock": True})
    assert len(found) == 6
    assert all(r.fields["price"] <= 25 and r.fields["in_stock"] is True for r in found)
    assert set(found[0].fields) == {"brand", "category", "in_stock", "price"}
    as_text = idx.search("drill", k=6, filters=["price<=25", "in_stock=true"])
    assert [r.product_id for r in as_text] == [r.product_id for r in found]
    with pytest.raises(AisleError, match="unknown field 'colour'"):
        idx.search("drill", filters={"colour": "red"})


def test_a_missing_or_emptied_bm25_index_is_an_error_not_a_dense_search(
    sample_index: Path, tmp_path: Path
) -> None:
    import shutil

    from aisle.errors import ArtifactError

    gone = shutil.copytree(sample_index, tmp_path / "gone")
    shutil.rmtree(gone / "bm25")  # the manifest still records it, and its files
    with pytest.raises(ArtifactError, match=r"bm25/\S+ is missing; rebuild"):
        aisle.open_index(gone).search("cordless drill")
    reseal(gone)  # no BM25 file recorded (an index from before the record): when first read
    with pytest.raises(ArtifactError, match="missing or corrupt"):
        aisle.open_index(gone).search("cordless drill")
    emptied = shutil.copytree(sample_index, tmp_path / "emptied")
    npy = next((emptied / "bm25").rglob("*.npy"))
    npy.write_bytes(b"")  # a full disk, or a crash before the bytes reached it
    with pytest.raises(ArtifactError, match=r"\.npy is 0 bytes, its manifest records \d+"):
        load_index(emptied)
    reseal(emptied)  # emptied before the build wrote its manifest
    with pytest.raises(ArtifactError, match="missing or corrupt"):
        load_index(emptied).lexical.search(["drill"], 1)
    retyped = shutil.copytree(sample_index, tmp_path / "retyped")
    vocab = next((retyped / "bm25").glob("vocab*.json"))
    vocab.write_text("[]", encoding="utf-8")  # valid JSON, the wrong shape (hand-edited)
    reseal(retyped)
    with pytest.raises(ArtifactError, match="missing or corrupt"):
        load_index(retyped).lexical.search(["drill"], 1)


def test_suggest_refuses_input_that_is_not_a_prefix_and_a_whole_k(
    sample_data: Path, sample_index: Path, base_model: object, tmp_path: Path
) -> None:
    """As ``search`` does: a clear AisleError, not an AttributeError or TypeError from deep
    inside the lookup, and ``k=2.5`` is refused, not cut to 2."""
    from aisle.autocomplete.build import build_autocomplete
    from aisle.autocomplete.config import AutocompleteConfig

    ac = build_autocomplete(sample_data, base_model, tmp_path / "ac",  # type: ignore[arg-type]
                            AutocompleteConfig(max_catalog=200))
    idx = aisle.open_index(sample_index, autocomplete=ac)
    assert idx.suggest("cordl", k=np.int64(2))  # type: ignore[arg-type]
    for prefix in (None, 5, b"cordl"):
        with pytest.raises(AisleError, match="prefix must be text"):
            idx.suggest(prefix)  # type: ignore[arg-type]
    for k in ("3", 2.5, True, 0, -1):
        with pytest.raises(AisleError, match="k must be >= 1"):
            idx.suggest("cordl", k=k)  # type: ignore[arg-type]


def test_an_unknown_backend_is_named_as_such(sample_index: Path) -> None:
    # Not "builtin:all-MiniLM-L6-v2 has no cuda export; run `aisle export`": there is no
    # such backend to export to.
    with pytest.raises(AisleError, match=r"unknown backend 'cuda'; use one of auto, torch"):
        aisle.open_index(sample_index, backend="cuda")  # type: ignore[arg-type]
    with pytest.raises(AisleError, match=r"unknown query_tower 'bag'; use one of auto, "
                                         r"transformer, static \(None: as the index's model"):
        aisle.open_index(sample_index, query_tower="bag")  # type: ignore[arg-type]
