"""Model soups: real towers of all-MiniLM-L6-v2, perturbed to stand in for trained runs."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from aisle.cli import main
from aisle.errors import AisleError
from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model
from aisle.towers.units import UnitTower
from aisle.training import soup as soup_module
from aisle.training.soup import soup

TEXTS = ["cordless drill", "3/4 in. plywood sheet"]


@pytest.fixture(scope="module")
def base() -> TwoTowerModel:
    return load_model(None)


def _perturbed(base: TwoTowerModel, seed: int, untied: bool = False) -> TwoTowerModel:
    """A copy of ``base`` with seeded noise on every weight of each of its encoders."""
    model = copy.deepcopy(base)
    if untied:
        model = model.untie()
    g = torch.Generator().manual_seed(seed)
    encoders = {id(t.model): t.model for t in (model.query, model.product)}
    with torch.no_grad():
        for encoder in encoders.values():
            for p in encoder.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=g).to(p.device))
    return model


def _params(model: TwoTowerModel, side: str) -> list[torch.Tensor]:
    return [p.detach().cpu() for p in getattr(model, side).model.parameters()]


def _assert_mean(mixed: TwoTowerModel, parts: list[tuple[TwoTowerModel, float]]) -> None:
    for side in ("query", "product"):
        expected = [
            sum(w * p for w, p in zip([w for _, w in parts], ps, strict=True))
            for ps in zip(*[_params(m, side) for m, _ in parts], strict=True)
        ]
        for got, want in zip(_params(mixed, side), expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_a_soup_is_the_weighted_mean_of_each_tower(base: TwoTowerModel) -> None:
    a, b = _perturbed(base, 1, untied=True), _perturbed(base, 2, untied=True)
    assert not torch.equal(_params(a, "query")[0], _params(b, "query")[0])
    before = _params(a, "product")[0].clone()
    mixed = soup([a, b], weights=[3, 1])
    assert not mixed.shared
    _assert_mean(mixed, [(a, 0.75), (b, 0.25)])
    # The inputs are left as they were.
    assert torch.equal(_params(a, "product")[0], before)


def test_a_shared_and_an_untied_model_give_the_mean_of_each_side(base: TwoTowerModel) -> None:
    shared, untied = _perturbed(base, 1), _perturbed(base, 2, untied=True)
    mixed = soup([shared, untied])
    assert not mixed.shared
    _assert_mean(mixed, [(shared, 0.5), (untied, 0.5)])


def test_shared_models_give_a_shared_soup_that_saves_and_reloads(
    base: TwoTowerModel, tmp_path: Path
) -> None:
    a, b = _perturbed(base, 1), _perturbed(base, 2)
    assert a.shared and b.shared
    mixed = soup([a, b])
    assert mixed.shared
    _assert_mean(mixed, [(a, 0.5), (b, 0.5)])
    # An unsaved soup already has its own fingerprint, set by its recipe.
    assert mixed.fingerprint != soup([a, b], weights=[1, 2]).fingerprint
    # Its encodings differ from both halves, and survive a save and reload exactly.
    out = mixed.save(tmp_path / "soup")
    again = load_model(out)
    assert again.shared
    torch.testing.assert_close(again.encode_query(TEXTS), mixed.encode_query(TEXTS))
    assert not torch.allclose(mixed.encode_query(TEXTS), a.encode_query(TEXTS), atol=1e-4)


def test_a_model_souped_with_itself_encodes_as_it_did(base: TwoTowerModel) -> None:
    a = _perturbed(base, 1, untied=True)
    mixed = soup([a, a, a])
    torch.testing.assert_close(mixed.encode_query(TEXTS), a.encode_query(TEXTS))
    frame = pd.DataFrame(
        {"product_id": ["1"], "title": ["DEWALT 20V MAX drill"], "description": [""],
         "brand": [""], "category": [""]}
    )
    torch.testing.assert_close(mixed.encode_product(frame), a.encode_product(frame))


def test_non_weight_entries_are_copied_when_they_agree_and_refused_when_not() -> None:
    ids = torch.arange(4)
    a = {"w": torch.tensor([1.0, 2.0]), "ids": ids}
    b = {"w": torch.tensor([3.0, 6.0]), "ids": ids.clone()}
    mean = soup_module._mean_state([a, b], [0.25, 0.75], ["a", "b"])
    torch.testing.assert_close(mean["w"], torch.tensor([2.5, 5.0]))
    assert mean["ids"].dtype == torch.int64 and torch.equal(mean["ids"], ids)
    with pytest.raises(AisleError, match="ids differs"):
        soup_module._mean_state([a, {**b, "ids": ids + 1}], [0.5, 0.5], ["a", "b"])
    with pytest.raises(AisleError, match="shape"):
        soup_module._mean_state([a, {**b, "w": torch.zeros(3)}], [0.5, 0.5], ["a", "b"])
    with pytest.raises(AisleError, match="architectures"):
        soup_module._mean_state([a, {"w": b["w"]}], [0.5, 0.5], ["a", "b"])


def test_a_soup_of_unit_normalising_models_reads_sizes_the_same_way(tmp_path: Path) -> None:
    model = load_model(None, TowerConfig(normalise_units=True))
    mixed = soup([model, model])
    assert isinstance(mixed.query, UnitTower)
    again = load_model(mixed.save(tmp_path / "soup"))
    assert again.config.normalise_units
    torch.testing.assert_close(
        again.encode_query(["20v drill"]), model.encode_query(["20 volt drill"])
    )


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "2 models"), ([1.0, -1.0], ">= 0"), ([0.0, 0.0], "positive sum"),
     ([math.nan, 1.0], ">= 0")],
)
def test_bad_weights_are_refused(
    base: TwoTowerModel, weights: list[float], message: str
) -> None:
    with pytest.raises(AisleError, match=message):
        soup([base, base], weights=weights)


def test_one_model_is_not_a_soup(base: TwoTowerModel) -> None:
    with pytest.raises(AisleError, match="at least two models"):
        soup([base])


def test_models_whose_tower_configs_differ_in_what_they_compute_are_refused(
    base: TwoTowerModel,
) -> None:
    cls = load_model(None, TowerConfig(pooling="cls"))
    with pytest.raises(AisleError, match="pooling"):
        soup([base, cls])
    # How a tower runs (batch size, device) is not what it computes: those may differ.
    soup([base, load_model(None, TowerConfig(batch_size=8))])


def test_models_from_different_bases_are_refused(base: TwoTowerModel) -> None:
    other = copy.deepcopy(base)
    other.extra["base_model"] = "some/other-model"
    with pytest.raises(AisleError, match="different base models"):
        soup([base, other])
    # A model that records no base (a plain sentence-transformers dir) is averaged, with a
    # warning, as long as its architecture matches.
    plain = copy.deepcopy(base)
    plain.ref = "some/plain-dir"
    assert soup([base, plain]).extra == {"base_model": base.ref}


def test_bases_are_compared_by_their_weights_where_every_model_records_them(
    base: TwoTowerModel,
) -> None:
    """One base typed as two paths (``base`` and ``./base/``) is one base; two bases at one
    path (re-downloaded, retrained) are two."""
    a, b = _perturbed(base, 1), _perturbed(base, 2)
    a.extra = {"base_model": "base", "base_weights_fingerprint": "w1"}
    b.extra = {"base_model": "./base/", "base_weights_fingerprint": "w1"}
    assert soup([a, b]).extra == {"base_model": "base", "base_weights_fingerprint": "w1"}
    b.extra = {"base_model": "base", "base_weights_fingerprint": "w2"}
    with pytest.raises(AisleError, match=r"different base models.*w1.*w2"):
        soup([a, b])
    # The packaged base itself, souped with a model trained from it.
    b.extra = {"base_model": base.ref, "base_weights_fingerprint": base.weights_fingerprint}
    assert soup([base, b]).extra["base_weights_fingerprint"] == base.weights_fingerprint
    # A model from before the record is compared by the path it records, as before.
    b.extra = {"base_model": "./base/"}
    with pytest.raises(AisleError, match="different base models"):
        soup([a, b])


def test_two_recorded_base_weights_differ_even_beside_a_model_without_the_record(
    base: TwoTowerModel,
) -> None:
    """A model from before the record makes the soup compare paths, but two bases known by
    their weights to differ (one path, retrained) are still two."""
    a, b, old = _perturbed(base, 1), _perturbed(base, 2), _perturbed(base, 3)
    a.extra = {"base_model": "base", "base_weights_fingerprint": "w1"}
    b.extra = {"base_model": "base", "base_weights_fingerprint": "w2"}
    old.extra = {"base_model": "base"}
    with pytest.raises(AisleError, match=r"different base models.*w1.*w2"):
        soup([a, b, old])
    b.extra = {"base_model": "base", "base_weights_fingerprint": "w1"}
    assert soup([a, b, old]).extra == {"base_model": "base"}


def test_the_soup_command_publishes_a_model_dir_that_records_its_sources(
    base: TwoTowerModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _perturbed(base, 1).save(tmp_path / "a")
    _perturbed(base, 2, untied=True).save(tmp_path / "b")
    rc = main(
        ["soup", "--models", str(tmp_path / "a"), str(tmp_path / "b"),
         "--out", str(tmp_path / "soup"), "--weights", "1", "3"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["towers"] == "untied"
    manifest = json.loads((tmp_path / "soup" / "manifest.json").read_text())
    assert [s["weight"] for s in manifest["soup"]] == [0.25, 0.75]
    assert manifest["soup"][0]["ref"] == str((tmp_path / "a").resolve())
    assert manifest["fingerprint"] == summary["fingerprint"]
    assert manifest["tower_config"]["backend"] == "auto"
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    _assert_mean(load_model(tmp_path / "soup"), [(a, 0.25), (b, 0.75)])


@pytest.mark.parametrize("case", ["twice", "out-is-input", "config"])
def test_the_soup_command_refuses_bad_requests_and_writes_nothing(
    base: TwoTowerModel, tmp_path: Path, case: str
) -> None:
    _perturbed(base, 1).save(tmp_path / "a")
    load_model(None, TowerConfig(max_query_length=16)).save(tmp_path / "b")
    models = {"twice": ["a", "a"], "out-is-input": ["a", "soup"], "config": ["a", "b"]}[case]
    if case == "out-is-input":
        _perturbed(base, 2).save(tmp_path / "soup")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["soup", "--models", *(str(tmp_path / m) for m in models)]
    assert main([*args, "--out", str(tmp_path / "soup")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_soup_that_fails_while_saving_leaves_the_old_output_whole(
    base: TwoTowerModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _perturbed(base, 1).save(tmp_path / "a")
    _perturbed(base, 2).save(tmp_path / "b")
    _perturbed(base, 3).save(tmp_path / "soup")  # the previous soup
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "soup").rglob("*"))
    manifest = (tmp_path / "soup" / "manifest.json").read_text()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("aisle.towers.model.write_manifest", broken)
    with pytest.raises(OSError, match="disk full"):
        soup_module.soup_command([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "soup")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "soup"]
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "soup").rglob("*")) == before
    assert (tmp_path / "soup" / "manifest.json").read_text() == manifest
