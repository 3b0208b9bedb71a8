"""Training configs refuse values that would crash a run, give a NaN loss or train nothing."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from aisle.configs import load_config
from aisle.errors import AisleError
from aisle.training.config import StepConfig, TrainConfig

SMOKE = Path(str(resources.files("aisle") / "configs" / "smoke.toml"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, r"epochs must be >= 1, got 0 \(to skip the step, set enabled = false\)"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"lr": -1e-4}, "lr must be a finite number > 0"),
        ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0: the loss"),
        ({"temperature": -0.05}, "temperature must be a finite number > 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number > 0, got nan"),
        ({"alpha": float("nan")}, "alpha must be a finite number >= 0"),
        ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
        ({"warmup_ratio": 3.0}, r"warmup_ratio must be in \[0, 1\]"),
        ({"warmup_ratio": float("nan")}, r"warmup_ratio must be in \[0, 1\]"),
        ({"distill_weight": float("nan")}, "distill_weight must be a finite number >= 0"),
        # NaN passed every check and quietly meant "use min_grade_fraction" / "no hard
        # negatives".
        ({"min_grade": float("nan")}, "min_grade must be a number >= 0"),
        ({"hard_negative_max_grade": float("nan")}, "hard_negative_max_grade must be a number"),
        ({"max_pairs": -5}, r"max_pairs must be >= 0 \(0: off\), got -5"),
        ({"catalog_pairs": -5}, "catalog_pairs must be >= 0"),
        ({"lexical_negative_skip": 5, "lexical_negative_depth": 3},
         r"lexical_negative_skip \(5\) must be below lexical_negative_depth \(3\)"),
        ({"lexical_positives": 4, "lexical_negative_skip": 2, "lexical_negative_depth": 50},
         r"lexical_positives \(4\) must not exceed lexical_negative_skip \(2\)"),
        ({"batch_size": 1}, "batch_size must be >= 2, got 1: a batch of one has no in-batch"),
        ({"batch_size": 0, "hard_negative_max_grade": 0.5}, "batch_size must be >= 1, got 0"),
    ],
)
def test_bad_step_values_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(AisleError, match=message):
        StepConfig(**kwargs)  # type: ignore[arg-type]


def test_a_batch_of_one_is_allowed_when_hard_negatives_give_it_negatives() -> None:
    assert StepConfig(batch_size=1, hard_negative_max_grade=0.5).batch_size == 1
    assert StepConfig(batch_size=1, lexical_negative_depth=50).batch_size == 1


def test_checkpoint_every_below_one_is_refused() -> None:
    with pytest.raises(AisleError, match="checkpoint_every must be >= 1"):
        TrainConfig(checkpoint_every=0)
    assert TrainConfig(checkpoint_every=1).checkpoint_every == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("step2.temperature=0", "config table 'step2': temperature must be a finite number > 0"),
        ("step1.batch_size=1", "config table 'step1': batch_size must be >= 2"),
        ("step1.epochs=0", "config table 'step1': epochs must be >= 1"),
        ("step2.lr=0", "config table 'step2': lr must be a finite number > 0"),
        ("step2.catalog_pairs=-1", "config table 'step2': catalog_pairs must be >= 0"),
        ("seed=-1", r"^seed must be in \[0, 4294967296\), got -1"),
        ("dev_catalog_size=-1", "^dev_catalog_size must be >= 0"),
        ("checkpoint_every=0", "^checkpoint_every must be >= 1"),
    ],
)
def test_the_config_loader_names_the_table_of_a_bad_value(override: str, message: str) -> None:
    with pytest.raises(AisleError, match=message):
        load_config(TrainConfig, SMOKE, [override])


def test_the_shipped_configs_pass_the_checks() -> None:
    for name in ("smoke", "demo", "cascade"):
        path = Path(str(resources.files("aisle") / "configs" / f"{name}.toml"))
        load_config(TrainConfig, path, [])
