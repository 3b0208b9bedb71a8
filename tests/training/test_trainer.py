"""Resuming a step from its checkpoint: on another device, with the step's counts intact."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.serialization

from aisle.errors import AisleError
from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model
from aisle.training import trainer
from aisle.training.config import StepConfig
from aisle.training.pairs import Pairs

# 32 pairs in 4 batches of 8, each pair with one hard negative and a teacher list of 2; up to
# 2 teacher lists a batch. A checkpoint every 2 optimiser steps.
CFG = StepConfig(batch_size=8, lr=1e-4, distill_candidates=2, distill_queries=2)
EVERY = 2
STEPS, HARD, TEACHER_LISTS = 4, 32, 8


def _pairs() -> Pairs:
    tools = ["drill", "saw", "hammer", "paint"]
    parts = ["tile", "pipe", "valve", "hose", "lamp", "fan", "door", "lock"]
    queries = [f"{a} {b}" for a in tools for b in parts]
    n = len(queries)
    return Pairs(
        queries=queries,
        products=[f"{q} product" for q in queries],
        query_keys=np.arange(n, dtype=np.int64),
        product_keys=np.arange(n, dtype=np.int64),
        hard_texts=tuple((f"{q} adapter",) for q in queries),
        hard_keys=tuple((1000 + i,) for i in range(n)),
        teacher_texts=tuple((f"{q} product", f"{q} kit") for q in queries),
        teacher_scores=tuple((1.0, 0.5) for _ in queries),
    )


def _fresh() -> TwoTowerModel:
    return load_model(None, TowerConfig(device="cpu", backend="torch"))


@pytest.fixture(scope="module")
def cuda_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint of a run killed after optimiser step 2, saved as a CUDA run saves it:
    every tensor tagged with a CUDA location, and a CUDA RNG state."""
    ckpt = tmp_path_factory.mktemp("cuda-run") / "ckpt"
    real_save, real_tag = trainer.save_checkpoint, torch.serialization.location_tag

    def save_on_cuda_then_die(path: Path, model: TwoTowerModel, state: dict[str, Any]) -> None:
        with pytest.MonkeyPatch.context() as mp:
            # What torch.save records for a tensor on the first GPU.
            mp.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
            real_save(path, model, {**state, "cuda_rng": torch.zeros(16, dtype=torch.uint8)})
        raise KeyboardInterrupt  # the process is killed right after a checkpoint

    assert real_tag is torch.serialization.location_tag
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "save_checkpoint", save_on_cuda_then_die)
        with pytest.raises(KeyboardInterrupt):
            trainer.run_step(_fresh(), _pairs(), CFG, 0, ckpt, EVERY, False, "killed")
    if not torch.cuda.is_available():  # the tags are real: a plain load refuses them here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(ckpt / trainer.STATE_FILE, weights_only=False)
    return ckpt


def test_a_checkpoint_made_on_cuda_resumes_through_the_real_load_on_the_cpu(
    cuda_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(cuda_checkpoint, ckpt)
    with caplog.at_level("WARNING", logger="aisle.training.trainer"):
        model, stats = trainer.run_step(_fresh(), _pairs(), CFG, 0, ckpt, EVERY, True, "resumed")
    assert stats["optimizer_steps"] == STEPS
    assert "made on a CUDA device and resumes on cpu" in caplog.text
    assert all(p.device.type == "cpu" for p in model.query.model.parameters())


def test_a_resumed_step_counts_the_interrupted_runs_pairs_and_seconds(
    cuda_checkpoint: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(cuda_checkpoint, ckpt)
    state = torch.load(ckpt / trainer.STATE_FILE, map_location="cpu", weights_only=False)
    # The checkpoint holds the counts of the 2 steps before it.
    assert (state["seen"], state["hard_seen"], state["distill_seen"]) == (16, 16, 4)
    assert state["seconds"] > 0
    state["seconds"] = 1000.0  # as if the interrupted run had trained for 1000 s
    torch.save(state, ckpt / trainer.STATE_FILE)
    _, stats = trainer.run_step(_fresh(), _pairs(), CFG, 0, ckpt, EVERY, True, "resumed")
    # The whole step's counts, as an uninterrupted run reports them, not the resumed half's.
    assert stats["optimizer_steps"] == STEPS
    assert stats["hard_negatives_seen"] == HARD
    assert stats["teacher_lists_seen"] == TEACHER_LISTS
    assert 1000.0 < stats["seconds"] < 1000.0 + 600


def test_a_checkpoint_from_before_the_counts_resumes_counting_from_zero(
    cuda_checkpoint: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(cuda_checkpoint, ckpt)
    state = torch.load(ckpt / trainer.STATE_FILE, map_location="cpu", weights_only=False)
    for key in ("seen", "hard_seen", "distill_seen", "seconds"):
        del state[key]
    torch.save(state, ckpt / trainer.STATE_FILE)
    _, stats = trainer.run_step(_fresh(), _pairs(), CFG, 0, ckpt, EVERY, True, "resumed")
    assert stats["optimizer_steps"] == STEPS
    assert stats["hard_negatives_seen"] == HARD // 2  # the resumed run's own two batches
    assert stats["teacher_lists_seen"] == TEACHER_LISTS // 2


def test_resume_says_when_it_cannot_go_on_and_a_fresh_run_says_what_it_trains_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint of the step under other settings (another key) is not resumed from, and
    the log says so, naming it; a run without --resume over a checkpoint says it too. (Each
    run is killed at its first checkpoint.)"""
    other, ours = tmp_path / "fit-0123abcd.ckpt", tmp_path / "fit-4567cdef.ckpt"
    real_save = trainer.save_checkpoint

    def save_then_die(path: Path, model: TwoTowerModel, state: dict[str, Any]) -> None:
        real_save(path, model, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.run_step(_fresh(), _pairs(), CFG, 0, other, EVERY, False, "fit")
    with caplog.at_level("INFO", logger="aisle.training.trainer"), \
            pytest.raises(KeyboardInterrupt):
        trainer.run_step(_fresh(), _pairs(), CFG, 0, ours, EVERY, True, "fit")
    assert "found no checkpoint of this step" in caplog.text and other.name in caplog.text
    assert "resuming" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="aisle.training.trainer"), \
            pytest.raises(KeyboardInterrupt):
        trainer.run_step(_fresh(), _pairs(), CFG, 0, other, EVERY, False, "fit")
    assert "holds a checkpoint of this step" in caplog.text and "--resume" in caplog.text


def test_a_diverged_loss_stops_the_step_before_it_reaches_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = trainer.in_batch_softmax_loss
    calls = []

    def diverging(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer, "in_batch_softmax_loss", diverging)
    model = _fresh()
    with pytest.raises(AisleError, match=r"diverge: the loss is nan at optimiser step 3 of 4; "
                                         r"training stopped .* Lower lr \(now 0.0001\)"):
        trainer.run_step(model, _pairs(), CFG, 0, tmp_path / "ckpt", EVERY, False, "diverge")
    # The checkpoint of step 2 is what a rerun can go on from; no NaN reached any weight.
    assert all(torch.isfinite(p).all() for p in model.query.model.parameters())
    assert (tmp_path / "ckpt" / trainer.STATE_FILE).is_file()


def test_a_step_whose_batches_hold_no_negative_says_it_learned_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pairs of one query text have no negative in any batch: every row's loss is 0, and the
    step used to end as trained without a word."""
    n = 6
    one_text = Pairs(
        queries=["cordless drill"] * n,
        products=[f"drill {i}" for i in range(n)],
        query_keys=np.zeros(n, dtype=np.int64),
        product_keys=np.arange(n, dtype=np.int64),
        hard_texts=tuple(() for _ in range(n)),
        hard_keys=tuple(() for _ in range(n)),
    )
    cfg = StepConfig(batch_size=3, lr=1e-4)
    with caplog.at_level("WARNING"):
        _, stats = trainer.run_step(_fresh(), one_text, cfg, 0, tmp_path / "ckpt", 10, False,
                                    "alone")
    assert stats["rows_without_negatives"] == n and stats["loss_last_10pct"] == 0.0
    assert "alone: no pair had a negative in its batch" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _, stats = trainer.run_step(_fresh(), _pairs(), CFG, 0, tmp_path / "ckpt2", EVERY,
                                    False, "mixed")
    assert stats["rows_without_negatives"] == 0 and "no pair had a negative" not in caplog.text
