"""Dense queries are spell-corrected against the index's titles before the query tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aisle.retrieval.dense import DenseRetriever, dense_retriever, query_speller
from aisle.retrieval.store import load_index
from aisle.towers import TwoTowerModel


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
    speller = query_speller(index, base_model)
    assert speller.rewrite("Cordles drill, celing fan") == "Cordless drill, ceiling fan"
    spelled = dense_retriever(index, base_model)
    typed = DenseRetriever(base_model, index)
    misspelt, right = spelled.hits(["cordles drill"], 10)[0], typed.hits(["cordless drill"], 10)[0]
    assert [h.product_id for h in misspelt] == [h.product_id for h in right]
    np.testing.assert_allclose([h.score for h in misspelt], [h.score for h in right], rtol=1e-5)
    # Spelling off, the typo is embedded as typed: another query vector, another top score.
    raw = dense_retriever(index, base_model, query_spelling=False)
    assert raw.speller is None
    assert abs(raw.hits(["cordles drill"], 1)[0][0].score - right[0].score) > 1e-3
