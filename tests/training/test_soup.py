"""Model soups: real towers of all-MiniLM-L6-v2, perturbed to stand in for trained runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from aisle.cli import main
from aisle.errors import AisleError
from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model
from aisle.training.soup import soup

TEXTS = ["cordless drill", "3/4 in. plywood sheet"]


def _perturbed(seed: int, untied: bool = False, config: TowerConfig | None = None) -> TwoTowerModel:
    """The base model with seeded noise on every weight (on the product side only if untied)."""
    model = load_model(None, config)
    if untied:
        model = model.untie()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.product.model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g).to(p.device))
    return model


def _params(model: TwoTowerModel, side: str) -> list[torch.Tensor]:
    return [p.detach().cpu() for p in getattr(model, side).model.parameters()]


def test_a_soup_is_the_weighted_mean_of_each_tower(tmp_path: Path) -> None:
    a, b = _perturbed(1, untied=True), _perturbed(2, untied=True)
    mixed = soup([a, b], weights=[3, 1])
    assert not mixed.shared
    for side in ("query", "product"):
        triples = zip(_params(a, side), _params(b, side), _params(mixed, side), strict=True)
        for pa, pb, pm in triples:
            torch.testing.assert_close(pm, 0.75 * pa + 0.25 * pb, atol=1e-6, rtol=0)
    # The inputs are left as they were.
    assert not torch.equal(_params(a, "product")[0], _params(mixed, "product")[0])
    # Integer buffers (position and token-type ids) are copied, not averaged.
    buffers = dict(a.query.model.named_buffers())
    assert buffers
    for name, tensor in mixed.query.model.named_buffers():
        assert torch.equal(tensor.cpu(), buffers[name].cpu())


def test_shared_models_give_a_shared_soup_that_saves_and_reloads(tmp_path: Path) -> None:
    a, b = _perturbed(1), _perturbed(2)
    assert a.shared and b.shared
    mixed = soup([a, b])
    assert mixed.shared
    pa, pb, pm = _params(a, "query")[0], _params(b, "query")[0], _params(mixed, "query")[0]
    torch.testing.assert_close(pm, (pa + pb) / 2, atol=1e-6, rtol=0)
    # Its encodings differ from both halves, and survive a save and reload exactly.
    out = mixed.save(tmp_path / "soup")
    again = load_model(out)
    assert again.shared
    torch.testing.assert_close(again.encode_query(TEXTS), mixed.encode_query(TEXTS))
    assert not torch.allclose(mixed.encode_query(TEXTS), a.encode_query(TEXTS), atol=1e-4)


def test_a_model_souped_with_itself_encodes_as_it_did() -> None:
    a = _perturbed(1, untied=True)
    mixed = soup([a, a, a])
    torch.testing.assert_close(mixed.encode_query(TEXTS), a.encode_query(TEXTS))
    frame = pd.DataFrame(
        {"product_id": ["1"], "title": ["DEWALT 20V MAX drill"], "description": [""],
         "brand": [""], "category": [""]}
    )
    torch.testing.assert_close(mixed.encode_product(frame), a.encode_product(frame))


def test_a_shared_and_an_untied_model_give_an_untied_soup() -> None:
    mixed = soup([_perturbed(1), _perturbed(2, untied=True)])
    assert not mixed.shared


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "2 models"), ([1.0, -1.0], ">= 0"), ([0.0, 0.0], "positive sum")],
)
def test_bad_weights_are_refused(weights: list[float], message: str) -> None:
    a = load_model(None)
    with pytest.raises(AisleError, match=message):
        soup([a, a], weights=weights)


def test_one_model_is_not_a_soup() -> None:
    with pytest.raises(AisleError, match="at least two models"):
        soup([load_model(None)])


def test_models_whose_tower_configs_differ_in_what_they_compute_are_refused() -> None:
    a = load_model(None)
    b = load_model(None, TowerConfig(pooling="cls"))
    with pytest.raises(AisleError, match="pooling"):
        soup([a, b])
    # How a tower runs (batch size, device) is not what it computes: those may differ.
    soup([a, load_model(None, TowerConfig(batch_size=8))])


def test_models_from_different_bases_are_refused() -> None:
    a = load_model(None)
    b = load_model(None)
    b.extra["base_model"] = "some/other-model"
    with pytest.raises(AisleError, match="different base models"):
        soup([a, b])
    # A model that records no base (a plain sentence-transformers dir) is averaged, with a
    # warning, as long as its architecture matches.
    c = load_model(None)
    c.extra.pop("base_model", None)
    c.ref = "some/plain-dir"
    assert soup([a, c]).extra == {"base_model": a.ref}


def test_the_soup_command_publishes_a_model_dir_that_records_its_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _perturbed(1).save(tmp_path / "a")
    _perturbed(2, untied=True).save(tmp_path / "b")
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
    loaded = load_model(tmp_path / "soup")
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    torch.testing.assert_close(
        _params(loaded, "product")[0],
        0.25 * _params(a, "product")[0] + 0.75 * _params(b, "product")[0],
        atol=1e-6,
        rtol=0,
    )


def test_the_soup_command_fails_cleanly_and_writes_nothing(tmp_path: Path) -> None:
    _perturbed(1).save(tmp_path / "a")
    load_model(None, TowerConfig(max_query_length=16)).save(tmp_path / "b")
    rc = main(["soup", "--models", str(tmp_path / "a"), str(tmp_path / "b"),
               "--out", str(tmp_path / "soup")])
    assert rc == 2
    assert not (tmp_path / "soup").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
