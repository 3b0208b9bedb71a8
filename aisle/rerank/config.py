"""``aisle rerank train`` configuration, frozen, loaded from TOML like ``aisle train``'s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from aisle.errors import AisleError

# How a loaded cross-encoder runs: auto = its int8 ONNX export when it has one (not on a GPU),
# else torch.
RerankBackend = Literal["auto", "torch", "onnx-fp32", "onnx-int8"]
RERANK_BACKENDS: tuple[str, ...] = get_args(RerankBackend)


@dataclass(frozen=True)
class RerankTrainConfig:
    # The encoder the cross-encoder starts from: None = the packaged all-MiniLM-L6-v2, or any
    # sentence-transformers / Hugging Face encoder directory (a classification head is added).
    base: str | None = None
    # Query + product text, in tokens; homedepot's pairs are ~30 tokens, 96 leaves room for a
    # brand and category.
    max_length: int = 96
    epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # Per training query, this many products the first stage ranks in [negatives_from,
    # negatives_to) that raters did not judge, as negatives (target 0). The first stage's top
    # ranks are skipped: an unjudged product there is often relevant (the judgments were
    # pooled from a lexical engine), and calling it irrelevant teaches the pool, not relevance.
    unjudged_negatives: int = 3
    negatives_from: int = 10
    negatives_to: int = 50
    # Per training query, this many products drawn from the whole catalog as negatives.
    random_negatives: int = 1
    # First-stage products re-ranked on dev to choose the fusion weight (the stored depth).
    depth: int = 50
    # Fusion weights tried on dev (the cross-encoder's share; 0 = the first stage alone).
    weights: tuple[float, ...] = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
    # 0 = every query of the split; else a seeded sample (smoke runs).
    max_train_queries: int = 0
    max_dev_queries: int = 0
    # With several epochs, the epoch kept is the best on this many dev queries (seeded; the
    # cross-encoder on torch, so a sample); 0 keeps the last epoch.
    select_queries: int = 300
    checkpoint_every: int = 500  # optimiser steps between resumable checkpoints
    seed: int = 13
    # Export the published cross-encoder to int8 ONNX (checked against torch on dev pairs);
    # a refused export leaves torch.
    export_int8: bool = True

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_length", "epochs", "batch_size", "depth", "checkpoint_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("unjudged_negatives", "random_negatives", "max_train_queries",
                     "max_dev_queries", "negatives_from", "select_queries"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.unjudged_negatives and self.negatives_to <= self.negatives_from:
            problems.append("negatives_to must be > negatives_from")
        if not self.lr > 0 or not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            problems.append("lr must be > 0, warmup_ratio in [0, 1), weight_decay >= 0")
        if not self.weights or any(not 0.0 <= w < 1.0 for w in self.weights):
            problems.append("weights must be a non-empty list of values in [0, 1)")
        if problems:
            raise AisleError("bad rerank config: " + "; ".join(problems))
