from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aisle.autocomplete.config import PairsConfig
from aisle.autocomplete.pairs import build_pairs, choose_threshold, sweep
from aisle.data.dataset import Dataset
from aisle.errors import AisleError, DataError

QUERIES = [
    ("q1", "glacier bay toilets", "train"), ("q2", "glaciar bay toiled", "train"),
    ("q3", "glacier bay vanity", "train"), ("q4", "glacier bay faucet", "dev"),
    ("q5", "moen faucet", "train"), ("q6", "moen sink faucet", "test"),
    ("q7", "moen drain", "test"),
]
JUDGED = [
    ("q1", "p1", 2.0), ("q1", "p2", 2.0), ("q1", "p3", 1.67),
    ("q2", "p1", 2.0), ("q2", "p2", 1.67), ("q2", "p4", 2.0),  # 2 shared of 4: Jaccard .5
    ("q3", "p7", 2.0), ("q3", "p8", 2.0),  # nothing shared with q1/q2: a non-duplicate
    ("q4", "p1", 0.33), ("q4", "p9", 2.0),  # shares a judged (irrelevant) product: neither
    ("q5", "p5", 2.0), ("q5", "p6", 2.0), ("q6", "p5", 2.0), ("q6", "p6", 1.67),
    ("q7", "p10", 2.0),
]


def dataset() -> Dataset:
    queries = pd.DataFrame(QUERIES, columns=["query_id", "query", "split"])
    judgments = pd.DataFrame(JUDGED, columns=["query_id", "product_id", "grade"])
    products = pd.DataFrame({"product_id": sorted(set(judgments["product_id"]))})
    return Dataset(products, queries, judgments.assign(raw_label=""), name="toy")


def test_labelled_pairs() -> None:
    pairs = build_pairs(dataset(), PairsConfig())
    got = {(a, b, label, split) for a, b, label, split in pairs.itertuples(index=False)}
    assert got == {
        ("glacier bay toilets", "glaciar bay toiled", 1, "train"),
        ("moen faucet", "moen sink faucet", 1, "heldout"),
        ("glacier bay toilets", "glacier bay vanity", 0, "train"),
        ("glaciar bay toiled", "glacier bay vanity", 0, "train"),  # same first 3 characters
        ("moen faucet", "moen drain", 0, "heldout"),
        ("moen sink faucet", "moen drain", 0, "heldout"),
    }
    strict = build_pairs(dataset(), PairsConfig(min_jaccard=0.6))
    assert strict["label"].sum() == 1  # q5/q6 (Jaccard 1) only


def test_top_products_are_a_fraction_of_the_top_grade_on_any_scale() -> None:
    # The same judgments on ESCI's 0-3 scale (x1.5): the pairs stay the same.
    ds = dataset()
    scaled = ds.judgments.assign(grade=ds.judgments["grade"] * 1.5)
    esci = Dataset(ds.products, ds.queries, scaled, name="toy-0-3")
    assert build_pairs(esci, PairsConfig()).equals(build_pairs(ds, PairsConfig()))
    # An absolute grade of 2.0 drops the 1.67 products: q1 and q2 then share p1 only, and q6
    # keeps one top product, so no duplicate (two shared top products) is left.
    assert build_pairs(ds, PairsConfig(top_grade=2.0)).empty
    assert build_pairs(ds, PairsConfig(top_grade=1.67)).equals(build_pairs(ds, PairsConfig()))
    with pytest.raises(AisleError, match=r"top_grade_fraction must be in \(0, 1\]"):
        PairsConfig(top_grade_fraction=0.0)


def test_no_judgments_is_an_error() -> None:
    ds = dataset()
    empty = Dataset(ds.products, ds.queries, ds.judgments.iloc[:0], name="toy")
    with pytest.raises(DataError, match="no judgments"):
        build_pairs(empty, PairsConfig())


def test_sweep_precision_and_recall() -> None:
    table = sweep(np.array([1, 1, 0, 0]), np.array([0.9, 0.6, 0.7, 0.2]),
                  np.array([0.5, 0.65, 0.8, 0.95]))
    assert table["precision"].tolist()[:3] == pytest.approx([2 / 3, 0.5, 1.0])
    assert table["recall"].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert np.isnan(table["precision"].iloc[3]) and table["predicted"].iloc[3] == 0


def test_choose_threshold_is_the_lowest_reaching_the_target_on_train() -> None:
    pairs = pd.DataFrame(
        [("a", "b", 1, "train"), ("c", "d", 1, "train"), ("e", "f", 0, "train"),
         ("g", "h", 1, "heldout"), ("i", "j", 0, "heldout")],
        columns=["query_a", "query_b", "label", "split"],
    )
    cos = {"a": 0.95, "c": 0.75, "e": 0.8, "g": 0.9, "i": 0.85}

    def cosine(a: list[str], b: list[str]) -> np.ndarray:
        return np.array([cos[x] for x in a])

    cfg = PairsConfig(target_precision=0.9, min_tuning_pairs=1)
    summary = choose_threshold(pairs, cosine, cfg)["summary"]
    assert isinstance(summary, dict)
    assert summary["threshold"] == pytest.approx(0.81)  # above the negative at .80
    assert summary["train_recall"] == pytest.approx(0.5)
    assert summary["heldout_precision"] == pytest.approx(0.5)  # .85 negative slips through
    with pytest.raises(DataError, match="no threshold reaches"):
        choose_threshold(pairs.assign(label=0, split="train"), cosine,
                         PairsConfig(min_tuning_pairs=0))
    # No train non-duplicate: every threshold has precision 1; tuning would pick 0.5.
    with pytest.raises(DataError, match=r"too few train pairs to tune the threshold \(2 dup"):
        choose_threshold(pairs.assign(label=1).iloc[:2], cosine, cfg)
    with pytest.raises(DataError, match=r"pairs\.min_tuning_pairs is 20"):
        choose_threshold(pairs, cosine, PairsConfig())


def test_pairs_stating_different_numbers_are_never_predicted_duplicates() -> None:
    """De-duplication never merges "24 inch vanity" and "36 inch vanity", at any cosine; the
    sweep scores the rule as it runs, so such a pair neither costs precision nor adds recall."""
    pairs = pd.DataFrame(
        [("vanity 24 in", "24 inch vanity", 1, "train"), ("drill bit", "drill bits", 1, "train"),
         ("24 inch vanity", "36 inch vanity", 0, "train"),
         ("2x4x8 stud", "2x4 stud 8 ft", 1, "train"),  # the same numbers, reordered
         ("1 gang box", "2 gang box", 1, "train")],  # labelled so, yet never merged
        columns=["query_a", "query_b", "label", "split"],
    )
    cos = dict(zip(pairs["query_a"], [0.9, 0.95, 0.93, 0.85, 0.97], strict=True))

    def cosine(a: list[str], b: list[str]) -> np.ndarray:
        return np.array([cos[x] for x in a])

    result = choose_threshold(pairs, cosine, PairsConfig(target_precision=1.0,
                                                         min_tuning_pairs=1))
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert summary["threshold"] == pytest.approx(0.5)  # the 0.93 negative is never merged
    assert summary["train_precision"] == 1.0
    assert summary["train_recall"] == pytest.approx(3 / 4)  # "1 gang" / "2 gang" never merges
