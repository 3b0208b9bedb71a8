from __future__ import annotations

from pathlib import Path

import pytest

from aisle.data.dataset import load_dataset
from aisle.errors import AisleError, DataError
from aisle.evaluation.evaluator import score_run
from aisle.evaluation.run import evaluate_command


def test_score_run_averages_over_judged_queries() -> None:
    qrels = {"q1": {"a": 2.0, "b": 1.0}, "q2": {"c": 0.0}, "q3": {"d": 2.0}}
    run = {"q1": ["a", "x"], "q2": ["c"], "q3": ["x", "y", "d"]}
    m = score_run(run, qrels, top_grade=2.0)
    # q1: nDCG = (2/1) / (2/1 + 1/log2 3) = 0.7602; q2 has no positive grade: left out;
    # q3: nDCG = (2/log2 4) / 2 = 0.5. Mean 0.6301.
    assert m["ndcg@10"] == pytest.approx((2 / (2 + 1 / 1.5849625) + 0.5) / 2, abs=1e-6)
    assert m["ndcg@10_queries"] == 2
    assert m["recall@100"] == 1.0 and m["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)


def test_dense_and_bm25_evaluation_on_the_sample(
    sample_data: Path, sample_index: Path, tmp_path: Path
) -> None:
    run_file = tmp_path / "run.tsv"
    dense = evaluate_command(sample_data, "test", sample_index, run_out=run_file)
    bm25 = evaluate_command(sample_data, "test", None, baseline="bm25")
    assert dense["query_spelling"] is True
    as_typed = evaluate_command(sample_data, "test", sample_index, query_spelling=False)
    assert as_typed["query_spelling"] is False
    for result in (dense, bm25, as_typed):
        assert 0.3 < result["metrics"]["ndcg@10"] <= 1.0
        assert result["metrics"]["recall@100"] > 0.5
    ds = load_dataset(sample_data)
    n_test = len(set(ds.qrels("test")))
    lines = run_file.read_text().splitlines()
    assert len(lines) == n_test * 100  # 100 retrieved per judged query
    qid, pid, rank = lines[0].split("\t")
    assert rank == "1" and pid in set(ds.products["product_id"]) and qid in ds.qrels("test")
    assert [ln.split("\t")[2] for ln in lines[:3]] == ["1", "2", "3"]


def test_an_index_over_another_catalog_is_refused(sample_index: Path, tmp_path: Path) -> None:
    from aisle.data.synthetic import write_sample
    from aisle.errors import ManifestMismatch

    other = write_sample(tmp_path / "other", n_products=50, seed=1)
    with pytest.raises(ManifestMismatch, match="another catalog"):
        evaluate_command(other, "test", sample_index)


def test_evaluate_needs_a_retriever_and_judgments(sample_data: Path, tmp_path: Path) -> None:
    with pytest.raises(AisleError, match="--index"):
        evaluate_command(sample_data, "test", None)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "products.csv").write_text("product_id,title,description,brand,category\n1,a,,,\n")
    with pytest.raises(DataError, match="no queries in split"):
        evaluate_command(catalog, "test", None, baseline="bm25")


@pytest.mark.slow
def test_bm25_reference_numbers_on_real_homedepot(homedepot: Path) -> None:
    # ../shared/data/README.md: BM25 (bm25s, English stop words + stemmer, title) 0.369 / 0.795,
    # which is bm25s's own tokenizer and defaults.
    word = evaluate_command(homedepot, "test", None, baseline="bm25-word")
    assert word["metrics"]["ndcg@10"] == pytest.approx(0.369, abs=0.01)
    assert word["metrics"]["recall@100"] == pytest.approx(0.795, abs=0.01)
    # The product analyzer and speller, k1/b picked on dev (docs/results.md: 0.4195 / 0.8488).
    product = evaluate_command(homedepot, "test", None, baseline="bm25")
    assert product["metrics"]["ndcg@10"] == pytest.approx(0.4195, abs=0.01)
    assert product["metrics"]["recall@100"] == pytest.approx(0.8488, abs=0.01)


def test_lexical_and_hybrid_modes_and_fusion_tuning(sample_data: Path, sample_index: Path,
                                                    tmp_path: Path) -> None:
    import json
    import shutil

    from aisle.evaluation.tune import tune_fusion
    from aisle.indexing.config import FusionConfig

    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    lexical = evaluate_command(sample_data, "test", index, mode="lexical")
    bm25 = evaluate_command(sample_data, "test", None, baseline="bm25")
    assert lexical["metrics"] == bm25["metrics"]  # the index's BM25 reads the same text
    dense = evaluate_command(sample_data, "test", index, mode="dense")
    only_dense = evaluate_command(sample_data, "test", index, mode="hybrid",
                                  fusion=FusionConfig(weight=1.0))
    assert only_dense["metrics"]["recall@100"] >= dense["metrics"]["recall@100"]
    result = tune_fusion(sample_data, index, "dev")
    assert len(result["grid"]) == 25
    best = max(row["ndcg@10"] for row in result["grid"])
    assert result["metrics"]["ndcg@10"] == pytest.approx(best, abs=1e-4)
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["fusion"] == result["best"]
    hybrid = evaluate_command(sample_data, "test", index, mode="hybrid")
    assert hybrid["fusion"] == result["best"]
