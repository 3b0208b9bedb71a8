from __future__ import annotations

from pathlib import Path

import pytest

from aisle.errors import DataError
from aisle.evaluation.trec import qrels_scale, read_qrels, read_run, write_qrels, write_run


def test_a_run_round_trips_in_aisle_order_even_with_tied_scores(tmp_path: Path) -> None:
    # Ties and a score above its predecessor: trec_eval would re-sort these by docid.
    run = {"q1": [("b", 0.5), ("a", 0.5), ("c", 0.7), ("d", 0.1)], "q2": [("x", -0.2)]}
    path = tmp_path / "run.trec"
    write_run(run, path, "hybrid.model")
    lines = [ln.split() for ln in path.read_text().splitlines()]
    assert lines[0][:4] == ["q1", "Q0", "b", "1"] and lines[0][5] == "hybrid.model"
    scores = [float(ln[4]) for ln in lines[:4]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    assert scores[0] == 0.5 and scores[3] == 0.1  # only the out-of-order ones move
    assert abs(scores[1] - 0.5) < 1e-5 and abs(scores[2] - 0.5) < 1e-5
    back = read_run(path)
    assert back.tag == "hybrid.model"
    assert back.ranked_ids() == {"q1": ["b", "a", "c", "d"], "q2": ["x"]}


def test_reading_orders_by_score_then_docid_descending_like_trec_eval(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q Q0 a 1 1.0 t\nq Q0 c 2 3.0 t\nq Q0 b 3 1.0 t\n")
    assert read_run(path).ranked_ids() == {"q": ["c", "b", "a"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("q1\tp1\t1\n", "older aisle versions wrote"),
        ("q Q0 a 1 high t\n", "is not a number"),
        ("q Q0 a 1 1.0 t\nq Q0 a 2 0.5 t\n", "listed twice"),
        ("q Q0 a 1 1.0 t1\nq Q0 b 2 0.5 t2\n", "mixes run tags"),
        ("\n", "holds no run lines"),
        # nan parses as a float and would sort nowhere in particular
        ("q Q0 a 1 0.9 t\nq Q0 b 2 nan t\n", r":2: the score 'nan' is not a finite number"),
    ],
)
def test_a_malformed_run_is_refused_saying_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.trec"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_run(path)


def test_a_field_with_spaces_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run tag is one word"):
        write_run({"q": [("a", 1.0)]}, tmp_path / "r", "two words")
    with pytest.raises(DataError, match="product id is one word"):
        write_run({"q": [("a", 1.0), ("p 1", 0.5)]}, tmp_path / "r", "t")
    with pytest.raises(DataError, match="query id is one word"):
        write_qrels({"q 1": {"a": 1.0}}, tmp_path / "q")
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_would_not_read_back_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="query q's ranking lists product a twice"):
        write_run({"q": [("a", 1.0), ("b", 0.5), ("a", 0.2)]}, tmp_path / "r", "t")
    assert list(tmp_path.iterdir()) == []


def test_a_byte_order_mark_is_not_part_of_the_first_query_id(tmp_path: Path) -> None:
    run, qrels = tmp_path / "run.trec", tmp_path / "test.qrels"
    run.write_text("\ufeffq1 Q0 a 1 1.0 t\n", encoding="utf-8")
    qrels.write_text("\ufeffq1 0 a 2\n", encoding="utf-8")
    assert read_run(run).ranked_ids() == {"q1": ["a"]}
    assert read_qrels(qrels) == {"q1": {"a": 2}}


def test_a_run_file_given_twice_is_refused(tmp_path: Path) -> None:
    from aisle.errors import AisleError
    from aisle.evaluation.runs import load_runs

    path = tmp_path / "bm25.trec"
    write_run({"q": [("a", 1.0)]}, path, "bm25")
    with pytest.raises(AisleError, match="given twice"):
        load_runs([path, tmp_path / "." / "bm25.trec"])


def test_qrels_scale_grades_to_integers_by_a_power_of_ten(tmp_path: Path) -> None:
    assert qrels_scale([0.0, 1.0, 2.0]) == 1
    assert qrels_scale([0.33, 1.67, 2.0, 1.5]) == 100
    with pytest.raises(DataError, match="decimals"):  # a clear CLI error, not a traceback
        qrels_scale([1 / 3])
    # A positive grade within the rounding tolerance of 0 is not written as 0 (irrelevant).
    assert qrels_scale([2.0, 0.05]) == 100
    with pytest.raises(DataError, match="decimals"):
        qrels_scale([2.0, 4e-7])
    path = tmp_path / "test.qrels"
    assert write_qrels({"q1": {"a": 1.67, "b": 0.0}, "q2": {"c": 2.0}}, path) == 100
    assert path.read_text().splitlines() == ["q1 0 a 167", "q1 0 b 0", "q2 0 c 200"]
    assert read_qrels(path) == {"q1": {"a": 167, "b": 0}, "q2": {"c": 200}}


def test_a_pair_graded_twice_is_read_once_or_refused_when_the_grades_differ(
    tmp_path: Path,
) -> None:
    path = tmp_path / "test.qrels"
    path.write_text("q1 0 a 2\nq1 0 b 0\nq1 0 a 2\n")
    assert read_qrels(path) == {"q1": {"a": 2, "b": 0}}
    path.write_text("q1 0 a 2\nq1 0 b 0\nq2 0 a 1\nq1 0 a 0\n")
    with pytest.raises(DataError, match=r"qrels:4: product a of query q1 is graded 0 here and "
                                        r"2 on line 1"):
        read_qrels(path)


def test_written_scores_stay_apart_when_read_as_float32(tmp_path: Path) -> None:
    import numpy as np

    # Distinct float64 scores closer than float32's resolution collapse there (pytrec_eval).
    run = {"q": [(f"p{i}", 8.0 + 1e-9 * (5 - i)) for i in range(5)]}
    path = tmp_path / "run.trec"
    write_run(run, path, "t")
    scores = np.array([float(ln.split()[4]) for ln in path.read_text().splitlines()])
    assert (np.diff(scores.astype(np.float32)) < 0).all()
