"""Distillation of a hybrid or cross-encoder teacher: its lists are the real fusion of the real
rankings (or the real cross-encoder's scores of them), and a step trains on them end to end."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aisle.artifacts import read_manifest, write_manifest
from aisle.configs import load_config
from aisle.data.dataset import load_dataset
from aisle.data.synthetic import write_sample
from aisle.errors import AisleError
from aisle.evaluation.run import open_index_retriever
from aisle.indexing.build import build_index
from aisle.rerank.model import load_reranker
from aisle.rerank.train import catalog_texts
from aisle.retrieval.config import IndexConfig
from aisle.retrieval.layout import resolve_index_dir
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.store import KIND as INDEX
from aisle.towers.model import TwoTowerModel
from aisle.training import cascade, distill
from aisle.training.cascade import train_cascade
from aisle.training.config import StepConfig, TrainConfig
from aisle.training.dev_eval import catalog_retriever
from aisle.training.distill import (
    candidates_fingerprint,
    load_or_make_teacher,
    teacher_rankings,
    validate,
)
from aisle.training.pairs import batch_order, iter_batches, positive_pairs
from tests.training.test_cascade import SMOKE

QUERIES = ["cordless drill", "white paint", "led light bulb"]


def test_teacher_at_the_ends_of_the_fusion_weight_is_bm25_or_the_towers(
    sample_data: Path, base_model: TwoTowerModel
) -> None:
    ds = load_dataset(sample_data)
    ids = ds.products["product_id"].astype(str).tolist()
    texts = base_model.product_texts(ds.products)
    lexical_only = StepConfig(distill_candidates=5, distill_fusion_weight=0.0)
    teacher = teacher_rankings(base_model, ds, QUERIES, lexical_only)
    bm25 = BM25Index.from_config(texts, ids, IndexConfig()).search(QUERIES, 100)
    for got, want in zip(teacher, bm25, strict=True):
        assert len(got) == 5 and len(want) >= 5
        # BM25's top 5 in BM25's order: the same scores (equal scores break by dense rank).
        raw = dict(want)
        assert [raw[p] for p, _ in got] == [s for _, s in want[:5]]
        assert all(0.0 <= s <= 1.0 for _, s in got) and got[0][1] == pytest.approx(1.0)
    dense_only = StepConfig(distill_candidates=5, distill_fusion_weight=1.0)
    teacher = teacher_rankings(base_model, ds, QUERIES, dense_only)
    scores = base_model.encode_query(QUERIES) @ base_model.encode_product(ds.products).T
    column = {pid: j for j, pid in enumerate(ids)}
    for got, row in zip(teacher, scores, strict=True):
        # The dense top 5 in dense order: the same cosines (equal texts tie, in any order).
        torch.testing.assert_close(
            row[[column[p] for p, _ in got]], torch.topk(row, 5).values, rtol=0, atol=1e-5
        )
        assert got[0][1] == pytest.approx(1.0)  # min-max over the dense top-100


def test_bad_distillation_settings_say_what_to_fix() -> None:
    with pytest.raises(AisleError, match="distill_depth must be >= distill_candidates"):
        validate(StepConfig(distill_candidates=8, distill_depth=4))
    with pytest.raises(AisleError, match="distill_fusion_weight"):
        validate(StepConfig(distill_candidates=8, distill_fusion_weight=1.5))
    validate(StepConfig())  # off: nothing to check


def test_more_candidates_than_the_catalog_holds_are_refused_before_any_step_trains() -> None:
    from tests.training.test_cascade import _tiny_catalog

    ds = _tiny_catalog()  # 6 products
    with pytest.raises(AisleError, match="the catalog has 6 products, fewer than "
                                         r"distill_candidates \(8\)"):
        validate(StepConfig(distill_candidates=8), ds)
    validate(StepConfig(distill_candidates=6), ds)
    # Through aisle train's up-front checks: step 2's teacher would otherwise fail only after
    # step 1 trained.
    config = load_config(TrainConfig, SMOKE, ["step2.distill_candidates=8"])
    with pytest.raises(AisleError, match="fewer than distill_candidates"):
        cascade._checked_steps(ds, config)


def test_a_distilling_step_trains_on_teacher_lists_and_keeps_them_for_resume(
    sample_data: Path, tmp_path: Path
) -> None:
    config = load_config(
        TrainConfig,
        SMOKE,
        [
            "dev_catalog_size=0",
            "step1.enabled=false",
            "step2.max_pairs=96",
            "step2.distill_candidates=4",
            "step2.distill_queries=8",
        ],
    )
    summary = train_cascade(sample_data, tmp_path / "model", config)
    stats = summary["steps"]["step2"]["train"]
    # Every batch of 32 brings up to 8 teacher lists of distinct queries.
    assert 0 < stats["teacher_lists_seen"] <= 8 * stats["optimizer_steps"]
    (teacher_file,) = (tmp_path / "model.work").glob("step2-teacher-*.json")
    saved = json.loads(teacher_file.read_text())
    assert len(saved["queries"]) == len(saved["rankings"]) > 0
    assert all(len(r) == 4 for r in saved["rankings"])
    # Batches carry (R, 4) teacher scores for R distinct queries.
    pairs = positive_pairs(load_dataset(sample_data), 1.67, config.tower, 96, config.seed)
    assert not pairs.teacher_texts  # pairs carry none until a distilling step attaches them
    batch = next(iter_batches(pairs, batch_order(len(pairs), 32, 0, 0), teacher_queries=8))
    assert batch.teacher_scores is None


def test_a_damaged_teacher_file_is_made_again(
    sample_data: Path, base_model: TwoTowerModel, tmp_path: Path
) -> None:
    ds = load_dataset(sample_data)
    cfg = StepConfig(distill_candidates=3)
    path = tmp_path / "teacher.json"
    path.write_text('{"queries": ["cordless dr')  # cut off mid-write by something else
    made = load_or_make_teacher(path, base_model, ds, QUERIES, cfg)
    assert made == teacher_rankings(base_model, ds, QUERIES, cfg)
    assert json.loads(path.read_text())["queries"] == QUERIES  # replaced whole


def test_a_cross_encoder_teacher_scores_the_hybrid_candidates_it_reads(
    sample_data: Path, base_model: TwoTowerModel, reranker_dir: Path
) -> None:
    ds = load_dataset(sample_data)
    hybrid = teacher_rankings(base_model, ds, QUERIES, StepConfig(distill_candidates=6))
    cfg = StepConfig(distill_candidates=6, distill_teacher=str(reranker_dir))
    validate(cfg)
    taught = teacher_rankings(base_model, ds, QUERIES, cfg)
    scorer = load_reranker(reranker_dir).scorer
    texts = catalog_texts(ds)
    for query, got, first in zip(QUERIES, taught, hybrid, strict=True):
        # The hybrid's candidates, judged and unjudged, none added or lost ...
        assert sorted(p for p, _ in got) == sorted(p for p, _ in first)
        # ... each scored by the cross-encoder reading the query with its text, best first.
        logits = scorer.score([(query, texts[p]) for p, _ in got])
        np.testing.assert_allclose([s for _, s in got], 1 / (1 + np.exp(-logits)), atol=1e-5)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    # It reads the text the hybrid searched (normalised, spell-corrected), as it was trained
    # to, not the query as typed (full-width letters, which its tokenizer does not fold).
    typo = ["ｃｏｒｄｌｅｓ ＤＲＩＬＬ"]
    searched = catalog_retriever(base_model, ds, ds.products).prepare(typo)[0].text
    assert searched != typo[0]
    (scored,) = teacher_rankings(base_model, ds, typo, cfg)
    logits = scorer.score([(searched, texts[p]) for p, _ in scored])
    np.testing.assert_allclose([s for _, s in scored], 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_a_teacher_that_is_not_a_cross_encoder_is_refused(
    tmp_path: Path, sample_index: Path
) -> None:
    with pytest.raises(AisleError, match="distill_teacher must be a cross-encoder directory"):
        validate(StepConfig(distill_candidates=4, distill_teacher=str(tmp_path / "none")))
    with pytest.raises(AisleError, match="distill_teacher must be a cross-encoder directory"):
        validate(StepConfig(distill_candidates=4, distill_teacher=str(sample_index)))


def test_a_step_distils_a_cross_encoder_and_a_new_teacher_retrains_it(
    sample_data: Path, reranker_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = tmp_path / "ce"
    shutil.copytree(reranker_dir, teacher)
    overrides = ["dev_catalog_size=0", "step1.enabled=false", "step2.max_pairs=64",
                 "step2.distill_candidates=4", "step2.distill_queries=8",
                 f"step2.distill_teacher={teacher}"]
    config = load_config(TrainConfig, SMOKE, overrides)
    first = train_cascade(sample_data, tmp_path / "model", config)["steps"]["step2"]
    assert first["train"]["teacher_lists_seen"] > 0
    (teacher_file,) = (tmp_path / "model.work").glob("step2-teacher-*.json")
    assert all(0 < s < 1 for r in json.loads(teacher_file.read_text())["rankings"]
               for _, s in r)
    # The same teacher again: the finished step is reused, nothing retrains.
    again = train_cascade(sample_data, tmp_path / "model", config)["steps"]["step2"]
    assert again == first
    # Other files at the same path are another teacher (its fingerprint covers every file of
    # the directory): a new step with new teacher lists, not the old step reused.
    (teacher / "README.md").write_text("retrained elsewhere")
    third = train_cascade(sample_data, tmp_path / "model", config)["steps"]["step2"]
    assert third["train"]["teacher_lists_seen"] > 0
    assert len(list((tmp_path / "model.work").glob("step2-teacher-*.json"))) == 2
    assert len(list((tmp_path / "model.work").glob("step2-*.done"))) == 2
    # Teacher scores made another way (int8 one call a query, before a pair a call) are
    # another teacher too: new lists and a new step, not the old lists under a new step.
    monkeypatch.setattr(cascade, "TEACHER_INT8_SCORING", "one-call-a-query")
    train_cascade(sample_data, tmp_path / "model", config)
    assert len(list((tmp_path / "model.work").glob("step2-teacher-*.json"))) == 3
    assert len(list((tmp_path / "model.work").glob("step2-*.done"))) == 3


def test_an_index_teacher_is_that_index_s_search_with_no_catalog_embedded(
    sample_data: Path, base_model: TwoTowerModel, sample_index: Path, reranker_dir: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = load_dataset(sample_data)
    retriever = open_index_retriever(sample_index, None, ds)
    expected = [[(h.product_id, h.score) for h in f.hits]
                for f in retriever.search_texts(QUERIES, 5)]
    assert retriever.default_mode == "hybrid" and all(len(r) == 5 for r in expected)

    def embedding_the_catalog(*args: object, **kwargs: object) -> None:
        raise AssertionError("an index teacher embedded the catalog")

    monkeypatch.setattr(base_model, "encode_product", embedding_the_catalog)
    cfg = StepConfig(distill_candidates=5, distill_index=str(sample_index))
    validate(cfg, ds)
    assert teacher_rankings(base_model, ds, QUERIES, cfg) == expected
    # A cross-encoder rescores the index's candidates: the same products, its order.
    taught = teacher_rankings(base_model, ds, QUERIES,
                              replace(cfg, distill_teacher=str(reranker_dir)))
    for got, first in zip(taught, expected, strict=True):
        assert sorted(p for p, _ in got) == sorted(p for p, _ in first)
        assert all(0 < s < 1 for _, s in got)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    # It read the text the index searched (normalised, spell-corrected), as it was trained to
    # (full-width letters, which its tokenizer does not fold, tell the two apart).
    typo = ["ｃｏｒｄｌｅｓ ＤＲＩＬＬ"]
    searched = retriever.search_texts(typo, 5)[0].query.text
    assert searched != typo[0]
    (scored,) = teacher_rankings(base_model, ds, typo,
                                 replace(cfg, distill_teacher=str(reranker_dir)))
    logits = load_reranker(reranker_dir).scorer.score(
        [(searched, catalog_texts(ds)[p]) for p, _ in scored])
    np.testing.assert_allclose([s for _, s in scored], 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_an_index_whose_scores_are_not_fused_in_0_1_needs_a_cross_encoder(
    sample_data: Path, sample_index: Path, reranker_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "rrf-index"
    shutil.copytree(resolve_index_dir(sample_index), index)
    manifest = read_manifest(index, INDEX)
    manifest["fusion"]["method"] = "rrf"  # as aisle tune-fusion stores its pick
    write_manifest(index, manifest)
    ds = load_dataset(sample_data)
    with pytest.raises(AisleError, match="is fused by rrf: its scores cannot be the targets"):
        validate(StepConfig(distill_candidates=4, distill_index=str(index)), ds)
    validate(StepConfig(distill_candidates=4, distill_index=str(index),
                        distill_teacher=str(reranker_dir)), ds)


def test_an_index_over_another_catalog_is_refused_before_training(
    sample_data: Path, base_model: TwoTowerModel, tmp_path: Path
) -> None:
    other = write_sample(tmp_path / "other", n_products=120)
    index = build_index(other, base_model, tmp_path / "other-index")
    config = load_config(TrainConfig, SMOKE, [
        "dev_catalog_size=0", "step2.distill_candidates=4", f"step2.distill_index={index}"])
    with pytest.raises(AisleError, match="built over another catalog"):
        train_cascade(sample_data, tmp_path / "model", config)
    assert not (tmp_path / "model.work").exists() or not list(
        (tmp_path / "model.work").glob("step1-*.done"))  # refused before step 1 trained
    with pytest.raises(AisleError, match="distill_index must be an index directory"):
        validate(StepConfig(distill_candidates=4, distill_index=str(tmp_path / "none")))


def test_a_step_distils_from_an_index_and_a_rebuilt_index_retrains_it(
    sample_data: Path, base_model: TwoTowerModel, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    index = build_index(sample_data, base_model, tmp_path / "index")
    overrides = ["dev_catalog_size=0", "step1.enabled=false", "step2.max_pairs=64",
                 "step2.distill_candidates=4", "step2.distill_queries=8",
                 f"step2.distill_index={index}"]
    config = load_config(TrainConfig, SMOKE, overrides)

    def embedding_the_catalog(*args: object, **kwargs: object) -> None:
        raise AssertionError("the step embedded the catalog instead of searching the index")

    monkeypatch.setattr(distill, "catalog_retriever", embedding_the_catalog)
    first = train_cascade(sample_data, tmp_path / "model", config)["steps"]["step2"]
    assert first["train"]["teacher_lists_seen"] > 0
    assert train_cascade(sample_data, tmp_path / "model", config)["steps"]["step2"] == first
    # Rebuilt at the same path, the index is another one (its manifest names a new build):
    # a new step with new teacher lists, not the old step reused.
    before = candidates_fingerprint(config.step2)
    build_index(sample_data, base_model, index, force=True)
    assert candidates_fingerprint(config.step2) != before
    third = train_cascade(sample_data, tmp_path / "model", config)["steps"]["step2"]
    assert third["train"]["teacher_lists_seen"] > 0
    assert len(list((tmp_path / "model.work").glob("step2-teacher-*.json"))) == 2
    assert len(list((tmp_path / "model.work").glob("step2-*.done"))) == 2
