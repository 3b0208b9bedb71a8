"""Run files as the field's tools read them, and ``aisle compare`` over them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aisle.cli import main
from aisle.data.dataset import load_dataset
from aisle.errors import DataError
from aisle.evaluation.compare import compare_runs, per_query
from aisle.evaluation.run import evaluate_command
from aisle.evaluation.trec import read_run


@pytest.fixture(scope="module")
def judged_data(sample_data: Path) -> Path:
    """homedepot where it is here (CI has it): a real run over a real catalog; else the
    generated sample."""
    from tests.conftest import SHARED_DATA

    real = SHARED_DATA / "homedepot"
    return real if (real / "products.csv").is_file() else sample_data


def test_a_library_reads_aisles_run_and_qrels_and_agrees_to_1e6(
    judged_data: Path, tmp_path: Path
) -> None:
    ir_measures = pytest.importorskip("ir_measures")
    run_file, qrels_file = tmp_path / "bm25.trec", tmp_path / "test.qrels"
    result = evaluate_command(judged_data, "test", None, baseline="bm25", run_out=run_file)
    assert main(["qrels", "--data", str(judged_data), "--split", "test",
                 "--out", str(qrels_file)]) == 0
    ds = load_dataset(judged_data)
    qrels = ds.qrels("test")
    assert ds.top_grade is not None
    scale = 100 if judged_data.name == "homedepot" else 1
    top = round(ds.top_grade * scale)
    measures = {
        "ndcg@10": ir_measures.nDCG @ 10,
        "recall@100": ir_measures.R(rel=top) @ 100,
        "mrr@10": ir_measures.RR(rel=top) @ 10,
        "judged@10": ir_measures.Judged @ 10,
    }
    theirs: dict[str, dict[str, float]] = {name: {} for name in measures}
    by_measure = {m: name for name, m in measures.items()}
    for row in ir_measures.iter_calc(
        list(measures.values()),
        ir_measures.read_trec_qrels(str(qrels_file)),
        ir_measures.read_trec_run(str(run_file)),
    ):
        theirs[by_measure[row.measure]][row.query_id] = row.value
    ranked = read_run(run_file).ranked_ids()
    ours = per_query(ranked, qrels, ds.top_grade)
    for name in measures:
        # Where aisle leaves a query out (no positive grade, no top-grade product) the library
        # scores it 0; every query aisle scores must agree. Judged@10 differs by definition on
        # a ranking shorter than 10 (the library divides by its length, aisle by 10 slots).
        assert ours[name], name
        for qid, value in ours[name].items():
            if name == "judged@10" and len(ranked.get(qid, ())) < 10:
                continue
            assert theirs[name].get(qid, 0.0) == pytest.approx(value, abs=1e-6), (name, qid)
        mean = sum(ours[name].values()) / len(ours[name])
        if name in result["metrics"]:
            assert mean == pytest.approx(result["metrics"][name], abs=1e-4)  # reported rounded


def test_compare_reads_evaluates_runs_and_tests_them_against_the_first(
    sample_data: Path, sample_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bm25, dense = tmp_path / "bm25.trec", tmp_path / "dense.trec"
    evaluate_command(sample_data, "test", None, baseline="bm25", run_out=bm25)
    evaluate_command(sample_data, "test", sample_index, mode="dense", run_out=dense)
    argv = ["compare", "--data", str(sample_data), "--split", "test", "--resamples", "500",
            str(bm25), str(dense)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "baseline: bm25" in table and "dense.all-MiniLM-L6-v2" in table
    for metric in ("ndcg@10", "condensed_ndcg@10", "judged@10", "recall@100", "mrr@10"):
        assert f"\n{metric} (" in table
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["bm25", "dense.all-MiniLM-L6-v2"]
    assert rows[0]["against_baseline"] is None
    d = rows[1]["against_baseline"]["ndcg@10"]
    m0, m1 = rows[0]["metrics"]["ndcg@10"], rows[1]["metrics"]["ndcg@10"]
    assert d["delta"] == pytest.approx(m1["mean"] - m0["mean"], abs=1e-9)
    assert d["low"] <= d["delta"] <= d["high"] and 0.0 < d["p_value"] <= 1.0
    assert d["wins"] + d["ties"] + d["losses"] == m0["queries"]
    assert m0["low"] <= m0["mean"] <= m0["high"]


def test_a_run_compared_with_itself_is_a_tie_everywhere(sample_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "bm25.trec"
    evaluate_command(sample_data, "test", None, baseline="bm25", run_out=run)
    ds = load_dataset(sample_data)
    ranked = read_run(run).ranked_ids()
    summary = compare_runs({"a": ranked, "b": ranked}, ds.qrels("test"), 2.0, resamples=200)
    for d in (summary[1].against_baseline or {}).values():
        assert d.delta == 0.0 and d.losses == d.wins == 0 and d.p_value == 1.0


def test_a_run_of_another_split_is_refused(sample_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "dev.trec"
    evaluate_command(sample_data, "dev", None, baseline="bm25", run_out=run)
    ds = load_dataset(sample_data)
    with pytest.raises(DataError, match="another split"):
        compare_runs({"dev": read_run(run).ranked_ids()}, ds.qrels("test"), 2.0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: [*lines, "nope Q0 p00001 1 1.0 bm25"], "does not have"),
        (lambda lines: [lines[0].replace(lines[0].split()[2], "no-such-product", 1)],
         "products"),
        (lambda lines: [*lines, lines[0]], "listed twice"),
        (lambda lines: [], "holds no run lines"),
    ],
)
def test_a_bad_run_is_one_clear_error_and_writes_no_report(
    sample_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, edit: Any, message: str
) -> None:
    good = tmp_path / "bm25.trec"
    evaluate_command(sample_data, "test", None, baseline="bm25", run_out=good)
    bad = tmp_path / "bad.trec"
    bad.write_text("\n".join(edit(good.read_text().splitlines())) + "\n")
    out = tmp_path / "report.html"
    argv = ["--data", str(sample_data), "--split", "test", str(good), str(bad)]
    assert main(["compare", *argv]) == 2
    assert main(["report", *argv, "--out", str(out)]) == 2
    assert message in caplog.text and not out.exists()
    assert not list(tmp_path.glob(".report.html*"))  # no temp file left behind


def test_runs_of_another_split_are_refused(sample_data: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    test, dev = tmp_path / "test.trec", tmp_path / "dev.trec"
    evaluate_command(sample_data, "test", None, baseline="bm25", run_out=test)
    evaluate_command(sample_data, "dev", None, baseline="bm25", run_out=dev, run_tag="dev")
    mixed = tmp_path / "mixed.trec"
    mixed.write_text(test.read_text() + dev.read_text().replace(" dev\n", " bm25\n"))
    for run in (dev, mixed):
        assert main(["compare", "--data", str(sample_data), "--split", "test", str(test),
                     str(run)]) == 2
    assert "holds queries of the dev split" in caplog.text
