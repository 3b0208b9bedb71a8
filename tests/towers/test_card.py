"""The model card says what the manifest records, and how to measure what it does not."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aisle.towers.card import model_card
from aisle.towers.config import TowerConfig
from aisle.training.config import TrainConfig


def trained(**changes: Any) -> dict[str, Any]:
    """A manifest as ``aisle train`` publishes it (numbers made up for the test)."""
    manifest: dict[str, Any] = {
        "kind": "aisle.model",
        "layout": "sentence-transformers",
        "towers": "untied",
        "dim": 384,
        "tower_config": asdict(TowerConfig()),
        "weights_fingerprint": "ab" * 32,
        "fingerprint": "0123456789abcdef",
        "code_version": "0.1.0+abc1234",
        "base_model": "builtin:all-MiniLM-L6-v2",
        "train_config": asdict(TrainConfig()),
        "data": {"name": "homedepot", "fingerprints": {"products": "p1", "queries": "q1",
                                                       "judgments": "j1"}},
        "steps": {
            "base": {"dev": {"ndcg@10": 0.2933, "recall@100": 0.61}},
            "step1": {"train": {"pairs": 100}, "dev": {"ndcg@10": 0.35, "recall@100": 0.7},
                      "min_grade": 1.0},
            "step2": {"train": {"pairs": 50}, "dev": {"ndcg@10": 0.38111, "recall@100": 0.72},
                      "min_grade": 1.67},
        },
        "selected_step": "step2",
        "beats_base_on_dev": True,
        "train_seconds": 1234.5,
    }
    return {**manifest, **changes}


def test_a_trained_model_s_card_holds_its_record() -> None:
    card = model_card(trained())
    assert card.startswith("---\nlibrary_name: sentence-transformers\n")
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "`0123456789abcdef`" in card and "Dataset `homedepot`" in card
    assert "- judgments: `j1`" in card
    assert "| metric | base | step1 | step2 |" in card
    assert "| ndcg@10 | 0.2933 | 0.3500 | 0.3811 |" in card
    assert "`step2` is the step published here." in card
    assert "judged products plus 10000 other products" in card
    assert '"dev_catalog_size": 10000' in card  # the config as it ran
    assert "encode_query" in card and "encode_document" in card and "Router" in card


def test_test_metrics_are_not_invented_but_explained() -> None:
    card = model_card(trained())
    assert "Test metrics are not measured at training time" in card
    assert "aisle evaluate --data DATA --split test --index INDEX" in card
    assert "`homedepot`" in card.split("aisle evaluate")[1]


def test_a_step_that_did_not_beat_the_base_model_says_so() -> None:
    card = model_card(trained(beats_base_on_dev=False))
    assert "(it did not beat the base model on dev)" in card
    whole = model_card(trained(train_config={**asdict(TrainConfig()), "dev_catalog_size": 0}))
    assert "measured while training over the whole catalog" in whole


def test_an_untrained_model_s_card_records_no_metrics() -> None:
    manifest = {k: v for k, v in trained(towers="shared").items()
                if k not in ("steps", "train_config", "data", "selected_step", "base_model")}
    card = model_card(manifest)
    assert "records no metrics" in card and "aisle evaluate" in card
    assert "## Training" not in card and "base model: not recorded" in card
    assert "one encoder shared by queries and products" in card
    assert "reads a longer query whole" in card  # one max length for both sides


def test_what_only_aisle_does_to_text_is_stated() -> None:
    assert "aisle.towers.units.normalise_units" not in model_card(trained())
    on = trained(tower_config=asdict(TowerConfig(normalise_units=True)))
    assert "pass every query and product text through `aisle.towers.units.normalise_units`" in (
        model_card(on)
    )
    fields = trained(tower_config=asdict(TowerConfig(product_fields=("title", "category"))))
    assert "`<title> | category: <category>`" in model_card(fields)


def test_a_soup_and_an_onnx_export_are_described() -> None:
    card = model_card(trained(
        soup=[{"ref": "runs/a", "fingerprint": "fa", "weight": 0.5},
              {"ref": "runs/b", "fingerprint": "fb", "weight": 0.5}],
        onnx={"towers": {"query": {"dir": "query_0_Transformer/onnx",
                                   "files": {"fp32": "model.onnx", "int8": "model_qint8.onnx"}}},
              "int8_agreement": {"data": "homedepot", "queries": {"mean": 0.99}}},
    ))
    assert "| `runs/a` | `fa` | 0.5 |" in card
    assert "int8 `query_0_Transformer/onnx/model_qint8.onnx`" in card
    assert 'backend="onnx"' in card and '"mean": 0.99' in card


def test_a_static_query_tower_is_described_and_a_stale_one_says_it_is_not_run() -> None:
    section = {"dir": "static_query", "weights_fingerprint": "ab" * 32,
               "teacher_runtime": "onnx-int8.2e7aeed5",
               "agreement": {"mean_cosine": 0.93, "p1_cosine": 0.8, "texts": 1260}}
    card = model_card(trained(static_query=section))
    assert "## Static query tower" in card and "`onnx-int8.2e7aeed5`" in card
    assert 'SentenceTransformer(path + "/static_query")' in card
    assert '"mean_cosine": 0.93' in card and "aisle runs it where" in card
    stale = model_card(trained(static_query={**section, "weights_fingerprint": "cd" * 32}))
    assert "learnt from other weights" in stale and "aisle runs it where" not in stale
    assert "Static query tower" not in model_card(trained())
