from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aisle.data.dataset import load_dataset
from aisle.errors import AisleError, DataError
from aisle.evaluation.evaluator import score_run
from aisle.evaluation.run import evaluate_command
from aisle.retrieval.config import FusionConfig


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
    dense = evaluate_command(sample_data, "test", sample_index, run_out=run_file, mode="dense")
    bm25 = evaluate_command(sample_data, "test", None, baseline="bm25")
    assert dense["query_spelling"] is True and dense["mode"] == "dense"
    assert dense["runtime"] == dense["backend"] == "torch"  # what embedded the queries
    as_typed = evaluate_command(sample_data, "test", sample_index, query_spelling=False,
                                mode="dense")
    assert as_typed["query_spelling"] is False
    for result in (dense, bm25, as_typed):
        assert 0.3 < result["metrics"]["ndcg@10"] <= 1.0
        assert result["metrics"]["recall@100"] > 0.5
    ds = load_dataset(sample_data)
    n_test = len(set(ds.qrels("test")))
    lines = run_file.read_text().splitlines()
    assert len(lines) == n_test * 100  # 100 retrieved per judged query
    qid, q0, pid, rank, score, tag = lines[0].split()
    assert rank == "1" and pid in set(ds.products["product_id"]) and qid in ds.qrels("test")
    assert q0 == "Q0" and tag == "dense.all-MiniLM-L6-v2" and -1.0 <= float(score) <= 1.0
    assert [ln.split()[3] for ln in lines[:3]] == ["1", "2", "3"]


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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fusion": FusionConfig(weight=0.3), "mode": "dense"}, "search in hybrid mode"),
        ({"fusion": FusionConfig(), "baseline": "bm25"}, "search in hybrid mode"),
        ({"fusion": FusionConfig(rrf_k=0), "mode": "hybrid"}, "--rrf-k must be > 0"),
        ({"baseline": "bm99"}, "unknown baseline 'bm99'"),
        ({"run_out": "."}, "is a directory; give a file path"),
    ],
)
def test_contradictory_flags_are_refused_before_any_work(
    tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    # The data path does not exist: the flags are refused before it is read.
    with pytest.raises(AisleError, match=match):
        evaluate_command(tmp_path / "no-such-data", "test", tmp_path / "no-such-index", **kwargs)


def test_a_metric_no_query_defines_is_reported_as_null(tmp_path: Path) -> None:
    # The top grade (2) is judged only for a train query: no test query has a product that
    # recall and MRR count, so both are undefined there, not 0 and not NaN.
    data = tmp_path / "d"
    data.mkdir()
    (data / "products.csv").write_text(
        "product_id,title,description,brand,category\np1,oak table,,,\np2,sofa,,,\n"
    )
    (data / "queries.csv").write_text("query_id,query,split\nq1,table,train\nq2,sofa,test\n")
    (data / "judgments.csv").write_text(
        "query_id,product_id,grade,raw_label\nq1,p1,2,\nq2,p2,1,\n"
    )
    result = evaluate_command(data, "test", None, baseline="bm25")
    metrics = result["metrics"]
    assert metrics["ndcg@10"] == 1.0 and metrics["recall@100"] is None and metrics["mrr@10"] is None
    assert metrics["recall@100_queries"] == 0.0
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN


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
    from aisle.retrieval.config import FusionConfig

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


def test_evaluate_flags_override_only_what_they_name_of_the_indexs_fusion(
    sample_data: Path, sample_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--weight over an index whose manifest sets its own depths: those depths are kept."""
    import shutil

    from aisle.cli import main

    index = tmp_path / "index"
    shutil.copytree(sample_index, index)
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["fusion"].update(dense_depth=30, lexical_depth=40, rrf_k=20.0)
    (index / "manifest.json").write_text(json.dumps(manifest))
    assert main(["evaluate", "--data", str(sample_data), "--split", "test", "--index",
                 str(index), "--weight", "0.25"]) == 0
    fusion = json.loads(capsys.readouterr().out)["fusion"]
    assert fusion == {"method": "convex", "weight": 0.25, "rrf_k": 20.0, "dense_depth": 30,
                      "lexical_depth": 40}


def _three_products(tmp_path: Path, base_model: Any, judgments: str) -> tuple[Path, Path]:
    """Three products, a query for each split (train "table", dev "sofa", test "lamp"), the
    given judgment rows, and their index."""
    from aisle.indexing.build import build_index

    data = tmp_path / "d"
    data.mkdir()
    (data / "products.csv").write_text(
        "product_id,title,description,brand,category\np1,oak table,,,\np2,sofa,,,\n"
        "p3,lamp,,,\n"
    )
    (data / "queries.csv").write_text(
        "query_id,query,split\nq1,table,train\nq2,sofa,dev\nq3,lamp,test\n"
    )
    (data / "judgments.csv").write_text("query_id,product_id,grade,raw_label\n" + judgments)
    return data, build_index(data, base_model, tmp_path / "index")


def test_fusion_tuning_writes_strict_json_where_a_metric_is_undefined(
    tmp_path: Path, base_model: Any
) -> None:
    # As above: the top grade is judged only for a train query, so on dev recall@100 and
    # MRR@10 are undefined. The manifest and the result must say null, not NaN (not JSON).
    from aisle.evaluation.tune import tune_fusion

    data, index = _three_products(tmp_path, base_model, "q1,p1,2,\nq2,p2,1,\nq3,p3,1,\n")
    result = tune_fusion(data, index, "dev")
    json.dumps(result, allow_nan=False)
    assert result["metrics"]["recall@100"] is None
    assert all(row["recall@100"] is None for row in result["grid"])

    def no_constants(name: str) -> None:
        raise AssertionError(f"manifest.json holds {name}")

    manifest = json.loads((index / "manifest.json").read_text(), parse_constant=no_constants)
    assert manifest["fusion_tuning"]["metrics"]["mrr@10"] is None


def test_a_fusion_tie_keeps_the_indexs_fusion(tmp_path: Path, base_model: Any) -> None:
    # One dev query whose one relevant product every setting ranks first: all 25 settings tie
    # (and recall@100 is undefined: the top grade is judged only for a train query). Nothing
    # tells them apart, so the index keeps the fusion it has, not the grid's first (convex
    # weight 0: BM25 alone), and keeps it whatever it is.
    from dataclasses import asdict

    from aisle.evaluation.tune import tune_fusion
    from aisle.retrieval.config import FusionConfig

    data, index = _three_products(tmp_path, base_model, "q1,p1,2,\nq2,p2,1,\nq3,p3,1,\n")
    result = tune_fusion(data, index, "dev")
    assert {row["ndcg@10"] for row in result["grid"]} == {1.0}
    assert result["best"] == asdict(FusionConfig())
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["fusion"].update(method="rrf", rrf_k=30.0)
    (index / "manifest.json").write_text(json.dumps(manifest))
    assert tune_fusion(data, index, "dev")["best"] == manifest["fusion"]


def test_a_fusion_tie_is_broken_by_recall_then_by_grid_order() -> None:
    from aisle.evaluation.tune import pick_fusion
    from aisle.retrieval.config import FusionConfig

    nan = float("nan")
    a, b, c = (FusionConfig(weight=w) for w in (0.0, 0.1, 0.2))
    current = FusionConfig(weight=0.5)

    def row(cfg: FusionConfig, ndcg: float, recall: float) -> tuple[Any, dict[str, float]]:
        return cfg, {"ndcg@10": ndcg, "recall@100": recall}

    assert pick_fusion([row(a, 0.4, 0.8), row(b, 0.4, 0.9), row(c, 0.3, 1.0)], current)[0] == b
    assert pick_fusion([row(a, 0.4, nan), row(b, 0.4, 0.1)], current)[0] == b
    assert pick_fusion([row(a, 0.4, 0.8), row(b, 0.4, 0.8)], current)[0] == a
    assert pick_fusion([row(a, 0.4, 0.8), row(current, 0.4, 0.8)], current)[0] == current
    assert pick_fusion([row(a, 0.4, 0.8), row(current, 0.3, 0.9)], current)[0] == a


def test_fusion_tuning_refuses_a_split_with_no_relevant_judgment(
    tmp_path: Path, base_model: Any
) -> None:
    # Every dev judgment is grade 0 (dev queries judged, none with a relevant product):
    # nDCG@10 is undefined for every fusion setting, so nothing can be tuned. Writing the
    # grid's first setting (convex weight 0: BM25 alone) as the tuned default would silently
    # turn hybrid search into lexical search.
    from aisle.evaluation.tune import tune_fusion

    data, index = _three_products(tmp_path, base_model,
                                  "q1,p1,2,\nq2,p2,0,\nq2,p3,0,\nq3,p3,1,\n")
    before = json.loads((index / "manifest.json").read_text())["fusion"]
    with pytest.raises(DataError, match="no dev-split judgment with a grade above 0"):
        tune_fusion(data, index, "dev")
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["fusion"] == before and "fusion_tuning" not in manifest


def test_a_split_judged_all_irrelevant_has_no_recall_or_mrr(tmp_path: Path) -> None:
    # Every judgment is grade 0, so the top grade is 0: recall@100 and MRR@10 must be
    # undefined (null), not a score for finding the products raters turned down.
    data = tmp_path / "d"
    data.mkdir()
    (data / "products.csv").write_text(
        "product_id,title,description,brand,category\np1,oak table,,,\np2,sofa,,,\n"
    )
    (data / "queries.csv").write_text("query_id,query,split\nq1,oak table,test\n")
    (data / "judgments.csv").write_text("query_id,product_id,grade,raw_label\nq1,p1,0,I\n")
    metrics = evaluate_command(data, "test", None, baseline="bm25")["metrics"]
    assert metrics["ndcg@10"] is None
    assert metrics["recall@100"] is None and metrics["mrr@10"] is None
    assert metrics["judged@10"] == pytest.approx(0.1)
