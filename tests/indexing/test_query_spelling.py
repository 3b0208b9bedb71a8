"""Dense queries are spell-corrected against the index's titles before the query tower."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from aisle.indexing import load_index
from aisle.indexing.retrieve import DenseRetriever, dense_retriever, query_speller
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
    assert index.config.query_spelling  # the default for a new index
    speller = query_speller(index, base_model)
    assert speller.rewrite("Cordles drill, celing fan") == "cordless drill, ceiling fan"
    spelled = dense_retriever(index, base_model)
    typed = DenseRetriever(base_model, index)
    misspelt, right = spelled.hits(["cordles drill"], 10)[0], typed.hits(["cordless drill"], 10)[0]
    assert [h.product_id for h in misspelt] == [h.product_id for h in right]
    np.testing.assert_allclose([h.score for h in misspelt], [h.score for h in right], rtol=1e-5)
    # Spelling off (the override), the typo is embedded as typed: other scores.
    raw = dense_retriever(index, base_model, query_spelling=False)
    assert raw.speller is None
    assert raw.hits(["cordles drill"], 10)[0] != misspelt


def test_an_index_from_before_query_spelling_keeps_queries_as_typed(
    sample_index: Path, base_model: TwoTowerModel, tmp_path: Path
) -> None:
    old = tmp_path / "old-index"
    shutil.copytree(sample_index, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["index_config"]["query_spelling"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    index = load_index(old)
    assert not index.config.query_spelling
    assert dense_retriever(index, base_model).speller is None
    assert dense_retriever(index, base_model, query_spelling=True).speller is not None
