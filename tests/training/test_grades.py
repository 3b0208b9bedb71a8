"""Positive thresholds: a fraction of the dataset's top grade, so one config fits any scale."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from aisle.data.dataset import Dataset
from aisle.errors import AisleError, DataError
from aisle.training.cascade import _checked_steps, _resolved, _step_record, train_cascade
from aisle.training.config import StepConfig, TrainConfig
from aisle.training.pairs import count_positives


def _graded(grades: list[float], splits: list[str] | None = None) -> Dataset:
    """One query per grade, each judging its own product with that grade."""
    n = len(grades)
    ids = [str(i) for i in range(n)]
    products = pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in ids],
            "title": [f"product number {i}" for i in ids],
            "description": "",
            "brand": "",
            "category": "",
        }
    )
    queries = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in ids],
            "query": [f"query {i}" for i in ids],
            "split": splits or ["train"] * n,
        }
    )
    judgments = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in ids],
            "product_id": [f"p{i}" for i in ids],
            "grade": grades,
            "raw_label": [str(g) for g in grades],
        }
    )
    return Dataset(products, queries, judgments, name="graded")


def _thresholds(ds: Dataset, config: TrainConfig) -> dict[str, float]:
    return {name: step.min_grade for name, step in _checked_steps(ds, config)}


HOMEDEPOT = [0.0, 0.33, 0.67, 1.0, 1.33, 1.67, 2.0]


def test_the_default_thresholds_are_homedepots_grades_on_its_scale() -> None:
    assert _thresholds(_graded(HOMEDEPOT), TrainConfig()) == {"step1": 1.0, "step2": 1.67}
    ds = _graded(HOMEDEPOT)
    assert count_positives(ds, 1.0) == 4 and count_positives(ds, 1.67) == 2


@pytest.mark.parametrize(
    ("grades", "step1", "step2"),
    [
        ([0.0, 1.0, 2.0], 1.0, 1.67),  # WANDS: Irrelevant, Partial, Exact
        ([0.0, 1.0, 2.0, 3.0], 1.5, 2.505),  # ESCI: I, C, S, E
        ([0.0, 1.0], 0.5, 0.835),  # binary
    ],
)
def test_the_default_config_trains_on_other_grade_scales(
    grades: list[float], step1: float, step2: float
) -> None:
    ds = _graded(grades)
    got = _thresholds(ds, TrainConfig())
    assert got == pytest.approx({"step1": step1, "step2": step2})
    # Step 2 keeps the top grade only ("exact"); step 1 the upper half of the scale.
    assert count_positives(ds, got["step2"]) == 1
    assert count_positives(ds, got["step1"]) == sum(g >= step1 for g in grades)


def test_an_absolute_min_grade_overrides_the_fraction() -> None:
    cfg = StepConfig(min_grade=1.33, min_grade_fraction=0.9)
    assert cfg.positive_grade(2.0) == 1.33
    assert StepConfig(min_grade_fraction=0.9).positive_grade(3.0) == pytest.approx(2.7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_grade_fraction": 0.0}, r"min_grade_fraction must be in \(0, 1\]"),
        ({"min_grade_fraction": 1.5}, r"min_grade_fraction must be in \(0, 1\]"),
        ({"min_grade": -1.0}, "min_grade must be >= 0"),
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(AisleError, match=message):
        StepConfig(**kwargs)  # type: ignore[arg-type]


# The step-2 key record of the default config before min_grade_fraction existed (daa9394):
# work directories of earlier runs hold steps under keys hashed from it.
OLD_STEP2_RECORD = {
    "min_grade": 1.67, "shared": False, "epochs": 1, "batch_size": 128, "lr": 3e-5,
    "warmup_ratio": 0.1, "weight_decay": 0.01, "temperature": 0.05, "alpha": 5.0,
    "hard_negative_max_grade": -1.0, "lexical_negative_depth": 0, "lexical_negative_skip": 0,
    "catalog_pairs": 0, "lexical_positives": 0, "symmetric": False, "max_pairs": 0,
    "enabled": True,
}  # fmt: skip


def test_the_default_step_keeps_the_key_record_it_had_before_fractions() -> None:
    assert _step_record(_resolved(TrainConfig().step2, 2.0)) == OLD_STEP2_RECORD


def test_steps_are_keyed_by_the_grade_they_use_however_it_was_given() -> None:
    # A fraction giving 1.67 keys the same step as min_grade = 1.67, as every earlier
    # work directory has it, so those steps stay reusable.
    by_fraction = _step_record(_resolved(TrainConfig().step2, 2.0))
    by_grade = _step_record(_resolved(replace(TrainConfig().step2, min_grade=1.67), 2.0))
    assert by_fraction == by_grade
    assert by_fraction["min_grade"] == 1.67 and "min_grade_fraction" not in by_fraction
    # The same fraction on another scale is another grade, and another step.
    assert _step_record(_resolved(TrainConfig().step2, 3.0)) != by_fraction


def test_a_step_without_positives_fails_before_anything_trains(tmp_path: Path) -> None:
    ds = _graded([0.0, 1.0, 2.0], splits=["train", "train", "dev"])  # top grade 2 only in dev
    with pytest.raises(DataError, match=r"step2\.min_grade_fraction 0\.835 of the top grade 2"):
        _checked_steps(ds, TrainConfig())
    step2_only = TrainConfig(step1=replace(TrainConfig().step1, enabled=False))
    with pytest.raises(DataError, match=r"grade >= 1\.67"):
        _checked_steps(ds, step2_only)
    # An absolute grade the train judgments reach passes.
    assert _thresholds(ds, replace(step2_only, step2=StepConfig(min_grade=1.0))) == {
        "step2": 1.0
    }
    # Through `aisle train`: refused before the model loads or the work directory appears.
    data = tmp_path / "data"
    data.mkdir()
    ds.products.to_csv(data / "products.csv", index=False)
    ds.queries.to_csv(data / "queries.csv", index=False)
    ds.judgments.to_csv(data / "judgments.csv", index=False)
    work = tmp_path / "work"
    fix = r"lower step2\.min_grade_fraction to at most 0\.5, or set step2\.min_grade to at most 1$"
    with pytest.raises(DataError, match=fix):
        train_cascade(data, tmp_path / "model", TrainConfig(), work=work)
    assert not work.exists() and not (tmp_path / "model").exists()


def test_an_absolute_grade_past_the_train_judgments_says_how_far_they_reach() -> None:
    ds = _graded([0.0, 1.0, 1.33, 2.0], splits=["train", "train", "train", "dev"])
    step2 = StepConfig(min_grade=1.67)
    with pytest.raises(DataError, match=r"reach 1\.33: set step2\.min_grade to at most 1\.33$"):
        _checked_steps(ds, TrainConfig(step2=step2))
    with pytest.raises(DataError, match=r"min_grade_fraction to at most 0\.665"):
        _checked_steps(ds, TrainConfig())


def test_a_dataset_with_no_positive_grade_is_refused() -> None:
    with pytest.raises(DataError, match="no judgment with a grade above 0"):
        _checked_steps(_graded([0.0, 0.0]), TrainConfig())


def test_hard_negatives_at_or_above_a_steps_positive_grade_are_refused_before_training() -> None:
    ds = _graded(HOMEDEPOT)
    step2 = replace(TrainConfig().step2, hard_negative_max_grade=1.67)
    with pytest.raises(AisleError, match=r"step2\.hard_negative_max_grade \(1\.67\) must be below"):
        _checked_steps(ds, TrainConfig(step2=step2))
    ok = replace(step2, hard_negative_max_grade=1.33)
    assert _thresholds(ds, TrainConfig(step2=ok)) == {"step1": 1.0, "step2": 1.67}
