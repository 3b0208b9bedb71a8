"""Hybrid takes each side's candidates to that side's own depth (FusionConfig)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from aisle.errors import AisleError
from aisle.retrieval.config import FusionConfig
from aisle.retrieval.query import QueryPreparer
from aisle.retrieval.retriever import Retriever
from aisle.retrieval.store import load_index
from aisle.towers.model import TwoTowerModel


def test_each_side_is_searched_to_its_own_depth(sample_index: Path,
                                                base_model: TwoTowerModel) -> None:
    index = load_index(sample_index)
    fusion = FusionConfig(dense_depth=7, lexical_depth=12)
    retriever = Retriever(base_model, index, QueryPreparer(None, fold_case=True), fusion)
    queries = retriever.prepare(["drill", "paint"])
    dense, lexical = retriever.candidates(queries, 5)
    assert [len(d) for d in dense] == [7, 7]
    assert all(len(lx) <= 12 for lx in lexical) and max(len(lx) for lx in lexical) > 7
    # k past a side's depth takes that side to k
    dense, _ = retriever.candidates(queries, 9)
    assert [len(d) for d in dense] == [9, 9]
    # hybrid fuses exactly those pools: at k = 5, dense 7 and lexical 12
    dense, lexical = retriever.candidates(queries[:1], 5)
    fused = retriever.search(queries[:1], 5, "hybrid")[0]
    assert {h.product_id for h in fused.hits} <= {p for p, _ in [*dense[0], *lexical[0]]}


@pytest.mark.parametrize("field", ["dense_depth", "lexical_depth"])
def test_a_depth_below_one_is_refused(field: str) -> None:
    with pytest.raises(AisleError, match=f"{field} must be >= 1"):
        dataclasses.replace(FusionConfig(), **{field: 0})


def test_an_index_written_with_one_depth_keeps_it_for_both_sides(
    sample_index: Path, tmp_path: Path
) -> None:
    old = tmp_path / "index"
    shutil.copytree(sample_index, old)
    manifest = json.loads((old / "manifest.json").read_text())
    fusion = manifest["fusion"]
    fusion.pop("dense_depth"), fusion.pop("lexical_depth")
    fusion["depth"] = 150  # as manifests before per-side depths wrote it
    (old / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_index(old).fusion()
    assert (loaded.dense_depth, loaded.lexical_depth) == (150, 150)
    assert load_index(sample_index).fusion() == FusionConfig()


QUERIES = ["drill", "paint", "cordless drill bits", "garden hose", "zzqx", "the", "wood"]


@pytest.mark.parametrize("fusion", [FusionConfig(weight=0.35), FusionConfig(weight=0.8),
                                    FusionConfig(dense_depth=7, lexical_depth=12)])
def test_hybrid_search_on_arrays_is_fuse_over_the_candidate_lists(
    sample_index: Path, base_model: TwoTowerModel, fusion: FusionConfig
) -> None:
    """The search's array fusion (the service's, the CLI's, evaluation's) returns what
    ``fuse`` over ``candidates`` returns: the same products, order and scores, at a k inside
    and past each side's depth; and a filtered search keeps to its filter."""
    from aisle.retrieval.filters import parse_filters
    from aisle.retrieval.fusion import fuse

    index = load_index(sample_index)
    retriever = Retriever(base_model, index, QueryPreparer(None, fold_case=True), fusion)
    assert retriever.fusion_ids is not None
    queries = retriever.prepare(QUERIES)
    for k in (1, 10, 30):
        dense, lexical = retriever.candidates(queries, k)
        expected = [fuse(d, lx, k, fusion) for d, lx in zip(dense, lexical, strict=True)]
        assert retriever.hybrid_ranked(queries, k) == expected
        assert [[(h.product_id, h.score) for h in f.hits]
                for f in retriever.search(queries, k, "hybrid")] == expected
    where = index.select(parse_filters(["brand=Dewalt"]))
    dense, lexical = retriever.candidates(queries, 10, where=where)
    assert any(lexical) and retriever.hybrid_ranked(queries, 10, where=where) == [
        fuse(d, lx, 10, fusion) for d, lx in zip(dense, lexical, strict=True)]


def test_a_bm25_index_that_repeats_a_product_fuses_on_lists(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    """A product id held by two BM25 documents: the array fusion would count it twice, so
    the search fuses the lists, which count it once at its first position."""
    from aisle.retrieval.fusion import fuse
    from aisle.retrieval.lexical import BM25Index

    index = load_index(sample_index)
    lexical = index.lexical
    names = lexical.product_names.copy()
    names[1] = names[0]
    twin = BM25Index(lexical._retriever, names.tolist(), lexical.analyzer_name)
    retriever = Retriever(base_model, index, QueryPreparer(None, fold_case=True),
                          lexical=twin)
    assert retriever.fusion_ids is None
    rrf = Retriever(base_model, index, QueryPreparer(None, fold_case=True),
                    FusionConfig(method="rrf"))
    assert rrf.fusion_ids is None  # RRF fuses lists
    with pytest.raises(AttributeError):  # fusion_ids was built for this fusion: it stays
        rrf.fusion = FusionConfig()  # type: ignore[misc]
    queries = retriever.prepare(QUERIES)
    dense, lists = retriever.candidates(queries, 10)
    assert retriever.hybrid_ranked(queries, 10) == [
        fuse(d, lx, 10, retriever.fusion) for d, lx in zip(dense, lists, strict=True)]


def test_a_row_no_product_holds_is_left_out_of_the_arrays_as_of_the_lists(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    from aisle.retrieval.fusion import fuse

    queries_text = ["drill", "paint"]
    vectors = base_model.encode_query(queries_text).numpy()
    probe = load_index(sample_index)
    gone = probe.ranked(vectors, 5)[0][0][0]
    index = load_index(sample_index)
    index.product_ids[probe.id_of[gone]] = None  # before any lookup table is built
    lists = index.ranked(vectors, 5)
    assert gone not in {p for row in lists for p, _ in row}
    assert [[(str(index.product_ids[r]), s) for r, s in zip(rows.tolist(), scores.tolist(),
                                                            strict=True)]
            for rows, scores in index.ranked_rows(vectors, 5)] == lists
    retriever = Retriever(base_model, index, QueryPreparer(None, fold_case=True))
    assert retriever.fusion_ids is not None
    queries = retriever.prepare(queries_text)
    dense, lexical = retriever.candidates(queries, 10)
    # BM25 still holds the product the vectors lost: it is numbered past the rows
    assert gone in {p for row in lexical for p, _ in row}
    assert retriever.hybrid_ranked(queries, 10) == [
        fuse(d, lx, 10, retriever.fusion) for d, lx in zip(dense, lexical, strict=True)]
