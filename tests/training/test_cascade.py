"""A real cascade on a few hundred real homedepot pairs (synthetic pairs when it is absent)."""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import replace
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from aisle.artifacts import tree_fingerprint
from aisle.configs import load_config
from aisle.data.dataset import Dataset, load_dataset
from aisle.errors import AisleError, DataError
from aisle.retrieval.spelling import QuerySpeller
from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, base_model_path, load_model
from aisle.towers.static import StaticTower
from aisle.training import cascade, trainer
from aisle.training.cascade import (
    BUILTIN_WEIGHTS,
    _base_record,
    _checked_steps,
    _step_record,
    _tower_record,
    train_cascade,
)
from aisle.training.config import StepConfig, TrainConfig
from aisle.training.dev_eval import evaluate_dev
from aisle.training.loss import accidental_hit_mask, in_batch_softmax_loss
from aisle.training.pairs import (
    Pairs,
    batch_order,
    catalog_pseudo_queries,
    iter_batches,
    lexical_near_misses,
    positive_pairs,
    pseudo_query,
)

SMOKE = Path(str(resources.files("aisle") / "configs" / "smoke.toml"))


@pytest.fixture(scope="module")
def small_real_data(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> Path:
    """200 train and 40 dev homedepot queries with their judged products, as a CSV dir."""
    from tests.conftest import SHARED_DATA

    src = SHARED_DATA / "homedepot"
    if not (src / "products.csv").is_file():
        return sample_data
    ds = load_dataset(src)
    queries = pd.concat(
        [ds.queries[ds.queries["split"] == s].head(n) for s, n in (("train", 200), ("dev", 40))]
    )
    judgments = ds.judgments[ds.judgments["query_id"].isin(queries["query_id"])]
    products = ds.products[ds.products["product_id"].isin(judgments["product_id"])]
    out = tmp_path_factory.mktemp("hd-small")
    for name, df in (("queries", queries), ("judgments", judgments), ("products", products)):
        df.to_csv(out / f"{name}.csv", index=False)
    return out


@torch.no_grad()
def _mean_loss(model: TwoTowerModel, pairs: Pairs) -> float:
    losses = []
    for batch in iter_batches(pairs, batch_order(len(pairs), 32, seed=0, epoch=0)):
        q = model.query.forward(batch.queries)
        p = model.product.forward(batch.products)
        mask = accidental_hit_mask(batch.product_keys, batch.query_keys)
        losses.append(float(in_batch_softmax_loss(q, p, mask, 0.05, 0.0)))
    return sum(losses) / len(losses)


def test_smoke_cascade_trains_evaluates_and_reloads(
    small_real_data: Path, sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisle.training import static

    config = load_config(TrainConfig, SMOKE, ["dev_catalog_size=0"])
    # The smoke data is too small for the static tower's default agreement check (0.67 here
    # against 0.85; the refusal is tested below): its gate is opened, its path run whole.
    monkeypatch.setattr(static, "StaticConfig",
                        functools.partial(static.StaticConfig, min_mean_cosine=0.0))
    # As the default config does: the published model is exported to ONNX int8, and its
    # static query tower learnt from that.
    summary = train_cascade(small_real_data, tmp_path / "model",
                            replace(config, export_int8=True, static_query=True))
    steps = summary["steps"]
    for name in ("step1", "step2"):
        assert steps[name]["train"]["optimizer_steps"] > 0
        dev = steps[name]["dev"]
        assert 0.0 < dev["ndcg@10"] <= 1.0 and dev["ndcg@10_queries"] > 0
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["selected_step"] == summary["selected_step"]
    selected_dev = steps[summary["selected_step"]]["dev"]["ndcg@10"]
    assert manifest["beats_base_on_dev"] == (selected_dev > steps["base"]["dev"]["ndcg@10"])
    assert manifest["train_config"]["step2"]["shared"] is False
    ds = load_dataset(small_real_data)
    # The smoke config's fractions of the top grade (2 here, real or generated) resolve to
    # homedepot's 1.0 and 1.67, and each step trained and reports that grade.
    assert ds.top_grade == 2.0
    assert steps["step1"]["min_grade"] == 1.0 and steps["step2"]["min_grade"] == 1.67
    # Step 1 trained on its judged pairs plus the config's catalog pairs.
    judged = positive_pairs(ds, 1.0, config.tower, config.step1.max_pairs, config.seed)
    catalog = catalog_pseudo_queries(ds, config.step1.catalog_pairs, config.seed)
    assert config.step1.catalog_pairs == 64 and 0 < len(catalog) <= 64
    assert steps["step1"]["train"]["pairs"] == len(judged) + len(catalog)
    assert set(manifest["data"]["fingerprints"]) == {"products", "queries", "judgments"}
    assert manifest["base_model"].startswith("builtin:")
    # The model card carries the same record: the published step's dev score, the data.
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"{selected_dev:.4f}" in card and manifest["data"]["fingerprints"]["products"] in card
    # The selected model reloads to identical embeddings, and a step that untied the towers
    # publishes untied towers.
    model = load_model(tmp_path / "model")
    transformer = load_model(tmp_path / "model", query_tower="transformer")
    assert transformer.shared == (summary["selected_step"] == "step1")
    # ...on its int8 export by default (backend auto), its fingerprint the torch towers'.
    assert model.backend == "onnx-int8" and "onnx" in manifest_of(tmp_path / "model")
    on_torch = load_model(tmp_path / "model", backend="torch")
    assert on_torch.fingerprint == model.fingerprint
    # ...with its static query tower (auto on ONNX), learnt from the int8 one; torch runs the
    # transformer, as training does.
    assert summary["static_query"] is True
    static = manifest["static_query"]
    assert static["teacher_runtime"] == model.runtime and static["config"]["seed"] == config.seed
    assert isinstance(model.query, StaticTower) and not isinstance(on_torch.query, StaticTower)
    # On real judgments, the loss over the high-grade pairs, measured the same way before and
    # after, has fallen. The generated fallback makes no such promise: its queries share
    # products ("lawn mower" and "dewalt lawn mower"), so in-batch negatives there are often
    # positives, and this short cascade raised that loss (0.158 -> 0.269, 2026-11-27). The
    # trainer's own fit is tested on it below (test_a_step_lowers_the_loss_...).
    if small_real_data != sample_data:
        pairs = positive_pairs(ds, 1.67, config.tower, 256, config.seed)
        assert _mean_loss(on_torch, pairs) < 0.9 * _mean_loss(load_model(None), pairs)
    again = load_model(tmp_path / "model")
    texts = ["cordless drill", "angle bracket"]
    assert torch.equal(model.encode_query(texts), again.encode_query(texts))
    # A second run with the same work dir reuses both finished steps instead of retraining.
    rerun = train_cascade(
        small_real_data, tmp_path / "model2", config, work=tmp_path / "model.work"
    )
    assert rerun["steps"] == steps
    assert "onnx" not in manifest_of(tmp_path / "model2")  # the smoke config does not export
    assert "static_query" not in manifest_of(tmp_path / "model2") and not rerun["static_query"]


def test_a_refused_static_query_tower_leaves_the_model_on_its_transformer(
    sample_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The sample is far too small for the default agreement check: refused, with a warning,
    and nothing of it written; a tower config that asks training for it is refused first."""
    load_model(None).save(tmp_path / "model")  # not the shared fixture: save() re-points it
    assert cascade.export_static_query(tmp_path / "model", sample_data, 13) is False
    assert "queries stay on the transformer" in caplog.text and "min_mean_cosine" in caplog.text
    assert "static_query" not in manifest_of(tmp_path / "model")
    assert not list((tmp_path / "model").glob("static_query*"))
    config = load_config(TrainConfig, SMOKE, ["tower.query_tower=static"])
    with pytest.raises(AisleError, match="query_tower = auto"):
        train_cascade(sample_data, tmp_path / "out", config)


def manifest_of(model_dir: Path) -> dict[str, Any]:
    return dict(json.loads((model_dir / "manifest.json").read_text()))


def test_a_step_lowers_the_loss_on_the_pairs_it_trains_on(
    sample_data: Path, tmp_path: Path
) -> None:
    ds = load_dataset(sample_data)
    pairs = positive_pairs(ds, 1.0, TowerConfig(), max_pairs=64, seed=0)
    before = _mean_loss(load_model(None), pairs)
    cfg = StepConfig(batch_size=32, lr=1e-4, epochs=4)
    model, stats = trainer.run_step(load_model(None), pairs, cfg, 0, tmp_path, 100, False, "fit")
    assert stats["optimizer_steps"] == 8
    assert _mean_loss(model, pairs) < 0.7 * before  # 1.10 -> 0.45 on CPU (2026-11-27)


def test_an_interrupted_step_resumes_to_the_same_weights(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = load_dataset(sample_data)
    pairs = positive_pairs(ds, 1.0, TowerConfig(), max_pairs=96, seed=0)
    cfg = StepConfig(batch_size=16, lr=1e-4)

    def fresh():  # type: ignore[no-untyped-def]
        return load_model(None)

    reference, _ = trainer.run_step(fresh(), pairs, cfg, 0, tmp_path / "a", 2, False, "ref")

    real_save = trainer.save_checkpoint

    def save_then_die(ckpt, model, state):  # type: ignore[no-untyped-def]
        real_save(ckpt, model, state)
        raise KeyboardInterrupt  # the process is killed right after a checkpoint

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.run_step(fresh(), pairs, cfg, 0, tmp_path / "b", 2, False, "killed")
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    resumed, stats = trainer.run_step(fresh(), pairs, cfg, 0, tmp_path / "b", 2, True, "resumed")
    assert stats["optimizer_steps"] == 6
    # Exact on the CPU. On CUDA (an H200, 2026-11-28) the resumed weights came out up to 3e-4
    # from the uninterrupted ones, although the checkpoint's weights and RNG states match
    # theirs: a known gap whose cause is not found (docs/results.md), bounded here.
    atol = 1e-3 if reference.query.device.type == "cuda" else 1e-6
    for a, b in zip(
        reference.query.model.parameters(), resumed.query.model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)
    # on CUDA the step runs with deterministic kernels, and gives the setting back afterwards
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_checkpoint_made_on_cuda_resumes_on_the_cpu_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saved = torch.get_rng_state()
    torch.rand(5)  # move on, as the interrupted run did
    state = {"torch_rng": saved, "cuda_rng": torch.zeros(16, dtype=torch.uint8)}
    with caplog.at_level("WARNING", logger="aisle.training.trainer"):
        trainer._restore_rng(state, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), saved)
    assert "made on a CUDA device and resumes on cpu" in caplog.text


def test_a_cuda_step_runs_deterministically_and_gives_the_settings_back() -> None:
    # _deterministic reads only the towers' device, so a stand-in model exercises it here.
    on_cuda = SimpleNamespace(query=SimpleNamespace(device=torch.device("cuda")))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()
    with pytest.raises(KeyboardInterrupt), trainer._deterministic(on_cuda):  # type: ignore[arg-type]
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert not torch.backends.cuda.mem_efficient_sdp_enabled()
        raise KeyboardInterrupt  # killed mid-step
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.mem_efficient_sdp_enabled()
    on_cpu = SimpleNamespace(query=SimpleNamespace(device=torch.device("cpu")))
    with trainer._deterministic(on_cpu):  # type: ignore[arg-type]
        assert not torch.are_deterministic_algorithms_enabled()


def test_hard_negatives_come_from_poorly_judged_products_of_the_same_query(
    small_real_data: Path,
) -> None:
    ds = load_dataset(small_real_data)
    pairs = positive_pairs(ds, 1.67, TowerConfig(), hard_negative_max_grade=0.67)
    assert len(pairs.hard_texts) == len(pairs) and any(pairs.hard_texts)
    titles = dict(zip(ds.products["product_id"], ds.products["title"], strict=True))
    judged = ds.judgments.merge(ds.queries, on="query_id")
    poor = judged[judged["grade"] <= 0.67 + 1e-9].groupby("query")["product_id"].agg(set)
    for query, hard in zip(pairs.queries, pairs.hard_texts, strict=True):
        allowed = {titles[p] for p in poor.get(query, set())}
        assert {h.split(" | ")[0] for h in hard} <= allowed
    # Batches append one hard negative per pair that has any, after the positives, with
    # their product keys; the draw is the same for the same (seed, epoch, batch).
    order = batch_order(len(pairs), 16, seed=0, epoch=0)
    first = next(iter_batches(pairs, order, 0, seed=3, epoch=0))
    again = next(iter_batches(pairs, order, 0, seed=3, epoch=0))
    with_hard = sum(1 for i in order[0] if pairs.hard_texts[i])
    assert first.hard_count == with_hard == len(first.products) - 16
    assert first.products == again.products
    assert len(first.product_keys) == len(first.products)
    with pytest.raises(ValueError, match="must be below the positive grade"):
        positive_pairs(ds, 1.0, TowerConfig(), hard_negative_max_grade=1.0)


def _tiny_catalog() -> Dataset:
    products = pd.DataFrame(
        {
            "product_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
            "title": [
                "cordless drill 18v",
                "cordless drill kit with two batteries",
                "drill bit set",
                "garden hose 50 ft",
                "hammer drill",
                "paint roller",
            ],
        }
    )
    for col in ("description", "brand", "category"):
        products[col] = ""
    queries = pd.DataFrame(
        {
            "query_id": ["q1", "q2", "q3"],
            "query": ["cordless drill", "hose", "the of"],
            "split": ["train", "train", "train"],
        }
    )
    judgments = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q2", "q3"],
            "product_id": ["p1", "p3", "p4", "p6"],
            "grade": [2.0, 0.33, 2.0, 1.0],
            "raw_label": ["", "", "", ""],
        }
    )
    return Dataset(products, queries, judgments, name="tiny")


def test_lexical_near_misses_are_unjudged_bm25_hits_below_the_skip() -> None:
    ds = _tiny_catalog()
    tower = TowerConfig()
    positives = ds.judgments[ds.judgments["grade"] >= 1.0].merge(ds.queries, on="query_id")
    # "cordless drill": BM25 ranks p1, p2 (both words) above p3, p5 ("drill" only); p1 and p3
    # are judged for q1, so whatever their grade they are never its near misses.
    assert lexical_near_misses(ds, positives, tower, 0, 10) == {"q1": ["p2", "p5"]}
    # Skipping rank 0 (p1, judged anyway) and rank 1 (p2) leaves only the weaker hits.
    assert lexical_near_misses(ds, positives, tower, 2, 10) == {"q1": ["p5"]}
    # q2's only hit is its own positive; q3 is all stop words: neither gets near misses.
    assert "q2" not in lexical_near_misses(ds, positives, tower, 0, 10)
    with pytest.raises(DataError, match="skip < depth"):
        lexical_near_misses(ds, positives, tower, 5, 5)
    pairs = positive_pairs(ds, 1.0, tower, lexical_negatives=(0, 10))
    by_query = dict(zip(pairs.queries, pairs.hard_texts, strict=True))
    assert set(by_query["cordless drill"]) == {
        "cordless drill kit with two batteries",
        "hammer drill",
    }
    assert by_query["hose"] == () and by_query["the of"] == ()


def test_lexical_positives_are_a_judged_querys_top_unjudged_bm25_hits() -> None:
    ds = _tiny_catalog()
    titles = dict(zip(ds.products["product_id"], ds.products["title"], strict=True))
    # "cordless drill" ranks p1, p2, p3, p5; p1 and p3 are judged, so of its top 2 only p2 is
    # new, of its top 4 p2 and p5. "hose" has nothing unjudged; "the of" has no terms.
    top2 = positive_pairs(ds, 1.0, TowerConfig(), lexical_positives=2)
    assert len(top2) == 3 + 1
    assert (top2.queries[3], top2.products[3]) == ("cordless drill", titles["p2"])
    # it shares its query's key, so the two never act as each other's negatives
    assert top2.query_keys[3] == top2.query_keys[0]
    top4 = positive_pairs(ds, 1.0, TowerConfig(), lexical_positives=4)
    assert top4.products[3:] == [titles["p2"], titles["p5"]]
    with pytest.raises(DataError, match="must not exceed lexical_negative_skip"):
        positive_pairs(ds, 1.0, TowerConfig(), lexical_negatives=(1, 10), lexical_positives=2)


def test_pseudo_queries_are_two_to_four_content_words_of_the_title_in_order() -> None:
    rng = np.random.default_rng(0)
    title = "GE 23.2 cu. ft. Bottom Freezer Refrigerator in Stainless Steel (2-Pack)"
    content = ["ge", "cu.", "bottom", "freezer", "refrigerator", "stainless", "steel", "2-pack"]
    for _ in range(200):
        words = pseudo_query(title, rng).split()
        assert 2 <= len(words) <= 4
        positions = [content.index(w) for w in words]  # content words only ("in", "23.2" out)
        assert positions == sorted(set(positions))
    assert pseudo_query("Drill", rng) == "drill"
    assert pseudo_query("12 in. x 3 ft.", rng) == ""


def test_catalog_pairs_reach_every_product_once_and_join_the_judged_pairs() -> None:
    ds = _tiny_catalog()
    cat = catalog_pseudo_queries(ds, 100, seed=1)
    assert sorted(cat["product_id"]) == ["p1", "p2", "p3", "p4", "p5", "p6"]  # capped, distinct
    titles = dict(zip(ds.products["product_id"], ds.products["title"], strict=True))
    for query, pid in zip(cat["query"], cat["product_id"], strict=True):
        assert set(query.split()) <= set(titles[pid].split())
    assert cat.equals(catalog_pseudo_queries(ds, 100, seed=1))
    assert len(catalog_pseudo_queries(ds, 2, seed=1)) == 2
    pairs = positive_pairs(ds, 1.0, TowerConfig(), catalog_pairs=6)
    assert len(pairs) == 3 + 6
    assert pairs.queries[:3] == ["cordless drill", "hose", "the of"]
    # The same product keeps one key across judged and catalog pairs, so a batch holding both
    # masks it as an accidental hit rather than counting it a negative.
    p1 = [k for k, t in zip(pairs.product_keys, pairs.products, strict=True) if t == titles["p1"]]
    assert len(p1) == 2 and p1[0] == p1[1]
    # Lexical near misses are mined for judged queries only, never for catalog pairs.
    both = positive_pairs(ds, 1.0, TowerConfig(), lexical_negatives=(0, 10), catalog_pairs=6)
    assert both.hard_texts[0] and all(h == () for h in both.hard_texts[3:])


def test_bucketed_forward_equals_one_padded_forward() -> None:
    model = load_model(None)
    texts = ["drill", "a much longer product title with many words in it " * 2, "bolt", "x y"]
    torch.testing.assert_close(
        trainer.forward_bucketed(model.query, texts, chunk=2),
        model.query.forward(texts),
        atol=1e-5,
        rtol=0,
    )


def _misspelt(ds: Dataset, split: str) -> Dataset:
    """``ds`` plus a query "cordles drill" of ``split`` judged like "cordless drill" (q1)."""
    extra = pd.DataFrame({"query_id": ["q4"], "query": ["Cordles drill"], "split": [split]})
    queries = pd.concat([ds.queries, extra], ignore_index=True)
    q1 = ds.judgments[ds.judgments["query_id"] == "q1"]
    judgments = pd.concat([ds.judgments, q1.assign(query_id="q4")], ignore_index=True)
    return Dataset(ds.products, queries, judgments, name="tiny-misspelt")


def test_the_speller_corrects_train_queries_before_they_become_pairs() -> None:
    ds = _misspelt(_tiny_catalog(), "train")
    speller = QuerySpeller.from_texts(ds.products["title"], 1)
    typed = positive_pairs(ds, 1.0, TowerConfig())
    assert "Cordles drill" in typed.queries
    pairs = positive_pairs(ds, 1.0, TowerConfig(), speller=speller)
    # Only the misspelt word changes (the rest keeps its case); the corrected query is the
    # same query as "cordless drill", so the two never count as each other's negatives.
    assert pairs.queries == ["cordless drill", "hose", "the of", "Cordless drill"]
    assert pairs.query_keys[3] == pairs.query_keys[0]
    assert typed.query_keys[3] != typed.query_keys[0]


def test_dev_evaluation_embeds_queries_as_the_speller_corrects_them(
    base_model: TwoTowerModel,
) -> None:
    tiny = _tiny_catalog()
    dev = tiny.queries.assign(split="dev")
    right = Dataset(tiny.products, dev, tiny.judgments, name="tiny-dev")
    others = dev[dev["query_id"] != "q1"]
    wrong = _misspelt(Dataset(tiny.products, others, tiny.judgments, name="tiny"), "dev")
    speller = QuerySpeller.from_texts(tiny.products["title"], 1)
    spelled = evaluate_dev(base_model, wrong, 0, 0, speller)
    assert spelled == evaluate_dev(base_model, right, 0, 0)
    assert spelled != evaluate_dev(base_model, wrong, 0, 0)


def test_pseudo_queries_with_sizes_keep_a_number_with_its_units() -> None:
    rng = np.random.default_rng(0)
    title = "House of Fara 3/4 in. x 3 in. x 8 ft. MDF Fluted Casing"
    terms = ["house", "fara", "3/4 in.", "3 in.", "8 ft.", "mdf", "fluted", "casing"]
    seen: set[str] = set()
    for _ in range(200):
        query = pseudo_query(title, rng, sizes=True)
        picked = [t for t in terms if f" {t} " in f" {query} "]
        assert " ".join(picked) == query  # whole terms, in title order
        assert 2 <= len(picked) <= 4
        seen.update(picked)
    assert seen == set(terms)
    assert pseudo_query("12 in. x 3 ft.", rng, sizes=True) == "12 in. 3 ft."
    # Off (the default), the draw is the words-only one it always was: these are the
    # pseudo-queries of 8a03937, before the option existed.
    rng = np.random.default_rng(5)
    assert [pseudo_query(title, rng) for _ in range(6)] == [
        "fara mdf fluted casing",
        "fara mdf",
        "house fara",
        "fluted casing",
        "house fara",
        "fara mdf fluted casing",
    ]
    assert all(not any(c.isdigit() for c in pseudo_query(title, rng)) for _ in range(50))


def test_catalog_sizes_reach_the_catalog_pairs() -> None:
    ds = _tiny_catalog()
    plain = catalog_pseudo_queries(ds, 100, seed=1)
    sized = catalog_pseudo_queries(ds, 100, seed=1, sizes=True)
    assert sized["product_id"].tolist() == plain["product_id"].tolist()
    hose = {catalog_pseudo_queries(ds, 100, seed=s, sizes=True)["query"].iloc[3] for s in range(20)}
    assert "hose 50 ft" in hose or "garden 50 ft" in hose
    assert all(
        "50" not in catalog_pseudo_queries(ds, 100, seed=s)["query"].iloc[3] for s in range(20)
    )
    pairs = positive_pairs(ds, 1.0, TowerConfig(), catalog_pairs=6, catalog_sizes=True)
    assert pairs.queries[3:] == catalog_pseudo_queries(ds, 6, seed=0, sizes=True)["query"].tolist()


def test_options_added_later_join_the_step_keys_only_when_on() -> None:
    # Work directories from before an option keep their keys, so their steps are reused.
    assert "catalog_sizes" not in _step_record(StepConfig())
    with_pairs = StepConfig(catalog_pairs=100, catalog_sizes=True)
    assert _step_record(with_pairs)["catalog_sizes"] is True
    # Without catalog pairs the option changes nothing, and neither does the key.
    assert _step_record(StepConfig(catalog_sizes=True)) == _step_record(StepConfig())
    assert "normalise_units" not in _tower_record(TowerConfig())
    assert _tower_record(TowerConfig(normalise_units=True))["normalise_units"] is True
    # query_tower only picks the query tower at inference: no step key holds it.
    assert "query_tower" not in _tower_record(TowerConfig())
    assert _tower_record(TowerConfig(query_tower="transformer")) == _tower_record(TowerConfig())


def test_how_fast_the_towers_run_keeps_the_step_keys() -> None:
    """Serving the towers on more ONNX threads, or encoding in other batch sizes, changed
    every step key: a resumed cascade trained its finished steps again."""
    default = _tower_record(TowerConfig())
    # The default's record is the one keys always held (work directories keep their steps).
    assert (default["onnx_query_threads"], default["onnx_product_threads"],
            default["batch_size"]) == (1, 0, 64)
    for runtime in ({"onnx_query_threads": 4}, {"onnx_product_threads": 2},
                    {"batch_size": 16}):
        assert _tower_record(TowerConfig(**runtime)) == default, runtime
    # What the towers compute still keys them.
    assert _tower_record(TowerConfig(max_query_length=16)) != default
    assert _tower_record(TowerConfig(pooling="cls")) != default


class _Stubbed:
    """train_cascade with run_step and evaluate_dev stubbed: which steps trained, which
    models were evaluated on dev."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trained: list[str] = []
        self.evaluated = 0

        def run_step(model, pairs, cfg, *rest):  # type: ignore[no-untyped-def]
            self.trained.append(rest[-1])
            return model, {"stub": True}

        def evaluate_dev(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.evaluated += 1
            return {"ndcg@10": 0.5}

        monkeypatch.setattr(cascade, "run_step", run_step)
        monkeypatch.setattr(cascade, "evaluate_dev", evaluate_dev)

    def run(self, data: Path, out: Path, config: TrainConfig, work: Path) -> None:
        self.trained.clear()
        self.evaluated = 0
        train_cascade(data, out, config, work=work)


def test_a_run_stopped_during_a_steps_dev_evaluation_keeps_its_trained_weights(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = _Stubbed(monkeypatch)
    config = load_config(TrainConfig, SMOKE, ["tower.device=cpu"])
    evaluate = cascade.evaluate_dev

    def stopped_at_step2(*args, **kwargs):  # type: ignore[no-untyped-def]
        if stub.evaluated == 2:  # base and step1 done: step2's evaluation is killed
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(cascade, "evaluate_dev", stopped_at_step2)
    with pytest.raises(KeyboardInterrupt):
        stub.run(sample_data, tmp_path / "a", config, tmp_path / "work")
    assert stub.trained == ["step1", "step2"] and not (tmp_path / "a").exists()
    monkeypatch.setattr(cascade, "evaluate_dev", evaluate)
    stub.run(sample_data, tmp_path / "a", config, tmp_path / "work")
    # step2 is evaluated from the weights it trained, not trained again from a checkpoint.
    assert stub.trained == [] and stub.evaluated == 1
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["steps"]["step2"]["train"] == {"stub": True}


def test_new_base_weights_at_the_same_path_train_afresh(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = _Stubbed(monkeypatch)
    base, work = tmp_path / "base", tmp_path / "work"
    shutil.copytree(base_model_path(), base)
    config = load_config(TrainConfig, SMOKE, [f"base_model={base}", "tower.device=cpu"])
    stub.run(sample_data, tmp_path / "a", config, work)
    assert stub.trained == ["step1", "step2"] and stub.evaluated == 3  # base + 2 steps
    stub.run(sample_data, tmp_path / "b", config, work)
    assert stub.trained == [] and stub.evaluated == 0  # the same weights: all reused
    # Other weights at the same path: its dev metrics and both steps are new.
    model = load_model(base, TowerConfig(device="cpu", backend="torch"))
    with torch.no_grad():
        for p in model.query.model.parameters():
            p.add_(0.01)
    shutil.rmtree(base)
    model.query.model.save(str(base))
    stub.run(sample_data, tmp_path / "c", config, work)
    assert stub.trained == ["step1", "step2"] and stub.evaluated == 3
    # The published models record the weights they started from, not only the path, so a
    # soup can tell that "a" and "c" started from different bases at one path.
    started = {run: json.loads((tmp_path / run / "manifest.json").read_text())
               for run in ("a", "c")}
    assert started["a"]["base_model"] == started["c"]["base_model"] == str(base)
    assert started["c"]["base_weights_fingerprint"] == load_model(base).weights_fingerprint
    assert started["a"]["base_weights_fingerprint"] != started["c"]["base_weights_fingerprint"]


def test_a_cls_pooled_base_trains_and_publishes_with_its_own_pooling(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BGE-style base (CLS pooling) is trained as it pools unless the config names another
    pooling; the step keys name the pooling it resolved to."""
    from aisle.towers.encoder import load_sentence_transformer

    stub = _Stubbed(monkeypatch)
    base, work = tmp_path / "cls-base", tmp_path / "work"
    load_sentence_transformer(base_model_path(), "cls", "cpu").save(str(base))
    config = load_config(TrainConfig, SMOKE, [f"base_model={base}", "tower.device=cpu"])
    assert config.tower.pooling == "auto"
    stub.run(sample_data, tmp_path / "a", config, work)
    assert stub.trained == ["step1", "step2"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["tower_config"]["pooling"] == "cls"
    assert load_model(tmp_path / "a").config.pooling == "cls"
    named = load_config(TrainConfig, SMOKE, [f"base_model={base}", "tower.device=cpu",
                                             "tower.pooling=cls"])
    stub.run(sample_data, tmp_path / "b", named, work)
    assert stub.trained == []  # "auto" on this base is "cls": the same steps
    mean = load_config(TrainConfig, SMOKE, [f"base_model={base}", "tower.device=cpu",
                                            "tower.pooling=mean"])
    stub.run(sample_data, tmp_path / "c", mean, work)
    assert stub.trained == ["step1", "step2"]  # asked for mean: other steps
    assert load_model(tmp_path / "c").config.pooling == "mean"


def test_the_built_in_base_model_keeps_the_step_keys_it_had(base_model: TwoTowerModel) -> None:
    # Work directories of earlier runs (docs/results.md names step2-d25a7ef2eaa1) hold
    # steps keyed without the base model's weights: the built-in's stay out of the keys.
    assert tree_fingerprint(base_model_path()) == BUILTIN_WEIGHTS
    assert base_model.weights_fingerprint == BUILTIN_WEIGHTS
    assert _base_record(base_model.weights_fingerprint) == []
    assert _base_record("f00") == [{"base_weights": "f00"}]


def test_an_onnx_tower_backend_is_refused_before_anything_trains(
    sample_data: Path, tmp_path: Path
) -> None:
    for backend in ("onnx-fp32", "onnx-int8"):
        config = load_config(TrainConfig, SMOKE, [f"tower.backend={backend}"])
        with pytest.raises(AisleError, match=f"tower.backend = '{backend}': training runs"):
            train_cascade(sample_data, tmp_path / "model", config)
        assert not (tmp_path / "model.work").exists()
    for backend in ("auto", "torch"):
        config = load_config(TrainConfig, SMOKE, [f"tower.backend={backend}"])
        assert [name for name, _ in _checked_steps(_tiny_catalog(), config)] == ["step1", "step2"]


def test_a_work_directory_in_the_output_is_refused_before_anything_trains(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = _Stubbed(monkeypatch)
    config = load_config(TrainConfig, SMOKE, [])
    for out, work in ((tmp_path / "m", tmp_path / "m" / "work"), (tmp_path / "m", tmp_path / "m"),
                      (tmp_path / "w" / "m", tmp_path / "w")):
        with pytest.raises(AisleError, match="must not hold one another"):
            stub.run(sample_data, out, config, work)
        assert stub.evaluated == 0 and not work.exists()


def test_a_config_with_every_step_disabled_is_refused_before_anything_loads(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing would train: said before the base model loads and is evaluated on dev (minutes
    over a real catalog), not after."""
    stub = _Stubbed(monkeypatch)
    config = load_config(TrainConfig, SMOKE, ["step1.enabled=false", "step2.enabled=false"])
    with pytest.raises(AisleError, match="every step is disabled"):
        stub.run(sample_data, tmp_path / "model", config, tmp_path / "work")
    assert stub.evaluated == 0 and not (tmp_path / "work").exists()
    with pytest.raises(AisleError, match="every step is disabled"):
        _checked_steps(_tiny_catalog(), config)


def test_the_distillation_inputs_of_a_step_that_does_not_distil_are_not_read(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distill_candidates = 0 turns distillation off: a distill_index left in the config (since
    moved) must not fail the step once step 1 has trained."""
    stub = _Stubbed(monkeypatch)
    config = load_config(TrainConfig, SMOKE, [f"step2.distill_index={tmp_path / 'moved'}"])
    assert config.step2.distill_candidates == 0
    stub.run(sample_data, tmp_path / "model", config, tmp_path / "work")
    assert stub.trained == ["step1", "step2"]


def test_a_dev_split_without_relevant_judgments_is_refused_before_anything_trains(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dev nDCG@10 picks the step to publish: without it both steps would train for
    nothing."""
    data = tmp_path / "data"
    shutil.copytree(sample_data, data)
    ds = load_dataset(data)
    dev = set(ds.split_queries("dev")["query_id"])
    judgments = ds.judgments.copy()
    judgments.loc[judgments["query_id"].isin(dev), "grade"] = 0.0
    for name in ("judgments.csv", "judgments.parquet"):
        (data / name).unlink(missing_ok=True)
    judgments.to_csv(data / "judgments.csv", index=False)
    stub = _Stubbed(monkeypatch)
    with pytest.raises(DataError, match="no dev-split judgment with a grade above 0"):
        stub.run(data, tmp_path / "model", load_config(TrainConfig, SMOKE, []), tmp_path / "w")
    assert stub.evaluated == 0 and stub.trained == []


def test_a_dataset_without_dev_queries_is_refused_saying_what_to_fix(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No dev query at all (a user's train/test-only data): the refusal says how to add one,
    as the dev check just after it does, not only that the split is empty."""
    data = tmp_path / "data"
    shutil.copytree(sample_data, data)
    queries = load_dataset(data).queries.copy()
    queries.loc[queries["split"] == "dev", "split"] = "train"
    for name in ("queries.csv", "queries.parquet"):
        (data / name).unlink(missing_ok=True)
    queries.to_csv(data / "queries.csv", index=False)
    stub = _Stubbed(monkeypatch)
    with pytest.raises(DataError, match=r"no queries in split 'dev' \(it has \d+ train, \d+ "
                       r"test\); set split = dev for some judged queries in queries.csv"):
        stub.run(data, tmp_path / "model", load_config(TrainConfig, SMOKE, []), tmp_path / "w")
    assert stub.evaluated == 0 and stub.trained == []


def test_a_step_that_would_re_tie_untied_towers_is_refused_before_anything_trains() -> None:
    retie = load_config(TrainConfig, SMOKE, ["step1.shared=false", "step2.shared=true"])
    with pytest.raises(AisleError, match=r"step2.shared = true would re-tie .* step1.shared"):
        _checked_steps(_tiny_catalog(), retie)
    # Untied in both, or tied in a step 2 that follows no untying step: fine.
    both = load_config(TrainConfig, SMOKE, ["step1.shared=false"])
    assert [cfg.shared for _, cfg in _checked_steps(_tiny_catalog(), both)] == [False, False]
    alone = load_config(TrainConfig, SMOKE, ["step1.enabled=false", "step2.shared=true"])
    assert [name for name, _ in _checked_steps(_tiny_catalog(), alone)] == ["step2"]


def test_a_shared_step_on_an_untied_base_model_is_refused_before_dev_evaluation(
    base_model: TwoTowerModel,
    sample_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stub = _Stubbed(monkeypatch)
    base_model.untie().save(tmp_path / "untied")
    config = load_config(TrainConfig, SMOKE, [f"base_model={tmp_path / 'untied'}"])
    with pytest.raises(AisleError, match=r"has untied towers.*set step1\.shared = false"):
        stub.run(sample_data, tmp_path / "model", config, tmp_path / "work")
    assert stub.trained == [] and stub.evaluated == 0


@pytest.mark.parametrize("failure", [AisleError("int8 disagrees with fp32"),
                                     RuntimeError("the exporter cannot trace this model")])
def test_an_export_that_fails_leaves_the_published_model_on_torch(
    failure: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After an hour of training the model is published; a failed export (refused by its
    check, or the exporter itself failing) is a warning, never a failed `aisle train`."""
    from aisle.towers import export

    def fail(*args: Any, **kwargs: Any) -> Path:
        raise failure

    monkeypatch.setattr(export, "export_model", fail)
    assert cascade.export_int8(tmp_path / "model", tmp_path / "data") is False
    assert "stays on torch" in caplog.text
