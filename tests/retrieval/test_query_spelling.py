"""Queries are spell-corrected against the index's titles before the query tower and BM25."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aisle.retrieval.query import QueryPreparer
from aisle.retrieval.retriever import Retriever, open_retriever, titles_speller
from aisle.retrieval.store import load_index
from aisle.towers.model import TwoTowerModel


def test_the_query_tower_vocabulary_is_its_tokenizers_whole_words(
    base_model: TwoTowerModel,
) -> None:
    vocab = base_model.query.vocabulary()
    assert {"steak", "pound", "ceiling", "drill"} <= vocab
    assert "celing" not in vocab and "ing" in vocab and "##ing" not in vocab


def test_a_misspelt_query_gets_the_corrected_querys_hits(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    index = load_index(sample_index)
    speller = titles_speller(index.titles, base_model)
    assert speller.rewrite("Cordles drill, celing fan") == "Cordless drill, ceiling fan"
    spelled = open_retriever(index, base_model)
    typed = Retriever(base_model, index, QueryPreparer(None, fold_case=True))
    for mode in ("dense", "lexical", "hybrid"):
        misspelt = spelled.search_texts(["cordles drill"], 10, mode)[0]
        right = typed.search_texts(["cordless drill"], 10, mode)[0]
        assert misspelt.query.correction == "cordless drill" and misspelt.mode == mode
        assert [h.product_id for h in misspelt.hits] == [h.product_id for h in right.hits]
        np.testing.assert_allclose([h.score for h in misspelt.hits],
                                   [h.score for h in right.hits], rtol=1e-5)
    # Spelling off, the typo is embedded as typed: another query vector, another top score.
    raw = open_retriever(index, base_model, query_spelling=False)
    assert raw.preparer.speller is None
    top = raw.search_texts(["cordles drill"], 1, "dense")[0]
    assert top.query.correction is None
    assert abs(top.hits[0].score - typed.search_texts(["cordless drill"], 1, "dense")[0]
               .hits[0].score) > 1e-3


def test_an_index_with_bm25_searches_hybrid_by_default(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    retriever = open_retriever(load_index(sample_index), base_model)
    assert retriever.has_lexical and retriever.default_mode == "hybrid"
    found = retriever.search_texts(["garden hose"], 5)[0]
    assert found.mode == "hybrid"
    assert [h.product_id for h in found.hits] == [
        h.product_id for h in retriever.search_texts(["garden hose"], 5, "hybrid")[0].hits]
