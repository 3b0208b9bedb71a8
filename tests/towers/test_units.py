from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model
from aisle.towers.units import normalise_units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dewalt 20v drill", "dewalt 20 volt drill"),
        ("DEWALT 20-Volt Max XR", "DEWALT 20 volt Max XR"),
        ("12 inch 150 lb hinge strap", "12 inch 150 pound hinge strap"),
        ('3/4" pvc', "3/4 inch pvc"),
        ("8' ladder", "8 feet ladder"),
        ("8 ft.x 12 ft wood shed", "8 feet x 12 feet wood shed"),
        ("GE 23.2 cu. ft. Bottom Freezer", "GE 23.2 cubic feet Bottom Freezer"),
        ("2x4x8", "2 x 4 x 8"),
        ("Philips 100W (E*)", "Philips 100 watt (E*)"),
        ("BEHR 1-gal. #SC-141", "BEHR 1 gallon #SC-141"),
        ("1/2in. pipe", "1/2 inch pipe"),
        ("6-1/2 in. Track Saw", "6-1/2 inch Track Saw"),
        ("Leviton 15-Amp Switch", "Leviton 15 amp Switch"),
        ("container 90'' x 12''", "container 90 inch x 12 inch"),
        ("18v-20v", "18 volt -20 volt"),
    ],
)
def test_sizes_take_one_spelling(text: str, expected: str) -> None:
    assert normalise_units(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "wall oven in stainless steel",
        "r20 bulbs",
        "model 4V2",
        "2-in-1 tool",
        "2 in 1 toilet seat",
        "Set of 4 w/ Hardware",
        "10/3 cord",
        "",
    ],
)
def test_words_that_are_not_sizes_stay(text: str) -> None:
    # "in" the preposition, a model number, a unit glued inside one, "2 in 1", "with", a wire
    # gauge.
    assert normalise_units(text) == text


def test_both_towers_read_sizes_in_one_spelling(base_model: TwoTowerModel, tmp_path: Path) -> None:
    model = load_model(None, TowerConfig(normalise_units=True))
    assert model.fingerprint != base_model.fingerprint
    torch.testing.assert_close(
        model.encode_query(["dewalt 20v drill", "1/2in. pvc"]),
        base_model.encode_query(["dewalt 20 volt drill", "1/2 inch pvc"]),
    )
    # The base model alone tells the spellings apart.
    a, b = base_model.encode_query(["dewalt 20v drill", "dewalt 20 volt drill"])
    assert float((a - b).norm()) > 0.05
    # Training goes through forward, and the untied product tower reads the same way.
    untied = model.untie()
    assert not untied.shared
    with torch.no_grad():
        trained_view = untied.product.forward(["Ryobi 40-Volt Chainsaw"])
    torch.testing.assert_close(
        trained_view.cpu(), base_model.product.encode(["Ryobi 40 volt Chainsaw"]), atol=1e-5, rtol=0
    )
    out = untied.save(tmp_path / "model")
    assert json.loads((out / "manifest.json").read_text())["tower_config"]["normalise_units"]
    loaded = load_model(out)
    assert loaded.config.normalise_units and loaded.fingerprint == untied.fingerprint
    torch.testing.assert_close(
        loaded.encode_query(["12in shelf"]), base_model.encode_query(["12 inch shelf"])
    )


def test_new_unit_rules_give_the_model_a_new_fingerprint(
    base_model: TwoTowerModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedding cache and an index key their vectors by the model's fingerprint: vectors
    embedded under older rules (a release that reads "v" otherwise) must not be taken for
    vectors of the new ones."""
    import re

    from aisle.towers import units

    model = load_model(None, TowerConfig(normalise_units=True))
    before = model.fingerprint
    monkeypatch.setattr(units, "_SPELLINGS", {**units._SPELLINGS, "volt": ("volts", "volt")})
    units.rules_digest.cache_clear()
    assert model.fingerprint != before
    monkeypatch.undo()
    units.rules_digest.cache_clear()
    assert model.fingerprint == before
    # So does a changed pattern.
    monkeypatch.setattr(units, "_TIMES", re.compile(r"(?!)"))
    units.rules_digest.cache_clear()
    assert model.fingerprint != before
    monkeypatch.undo()
    units.rules_digest.cache_clear()
    # Off, the fingerprint never held the rules: models from before them keep theirs.
    monkeypatch.setattr(units, "_TIMES", re.compile(r"(?!)"))
    units.rules_digest.cache_clear()
    assert load_model(None).fingerprint == base_model.fingerprint
    monkeypatch.undo()
    units.rules_digest.cache_clear()


def test_a_copied_tower_still_reads_sizes_in_one_spelling(base_model: TwoTowerModel) -> None:
    tower = load_model(None, TowerConfig(normalise_units=True)).query
    copied = copy.copy(tower)
    assert type(copied) is type(tower) and copied.model is tower.model
    torch.testing.assert_close(copied.encode(["20v"]), base_model.encode_query(["20 volt"]))


def test_a_long_run_of_spaces_is_not_slow() -> None:
    # Serving caps a query's length, but no regex here may backtrack quadratically.
    text = "1" + " " * 200_000 + "q"
    assert normalise_units(text) == "1 q"
