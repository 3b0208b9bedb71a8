"""Cascade training configuration: one ``StepConfig`` per step, frozen, loaded from TOML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aisle.data.schema import check_grade_threshold, grade_threshold
from aisle.errors import AisleError
from aisle.towers.config import TowerConfig


@dataclass(frozen=True)
class StepConfig:
    # Positives are judged pairs of the train split with grade >= this fraction of the
    # dataset's top grade (the highest grade of any judgment, in any split), so one config fits
    # any grade scale (homedepot and WANDS 0-2, ESCI 0-3, binary 0/1). On homedepot 0.5 is
    # grade >= 1.0 and 0.835 is grade >= 1.67.
    min_grade_fraction: float = 0.5
    # An absolute grade threshold instead: > 0 overrides min_grade_fraction.
    min_grade: float = 0.0
    # Keep query and product on one encoder (True) or give each its own copy (False).
    shared: bool = True
    epochs: int = 1
    # Larger batches give every query more in-batch negatives.
    batch_size: int = 128
    lr: float = 5e-5
    # Fraction of the step's optimiser steps spent warming the learning rate up linearly;
    # it then decays linearly to 0.
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # ITEMS / sentence-transformers MNRL default: scale = 1 / 0.05 = 20.
    temperature: float = 0.05
    # Self-adversarial re-weighting strength on cosine scores; 0 = plain in-batch softmax.
    alpha: float = 5.0
    # Add, per pair, one product judged for the same query with grade <= this (an absolute
    # grade: a near miss raters turned down) as an extra negative for the whole batch; < 0 =
    # no hard negatives.
    hard_negative_max_grade: float = -1.0
    # Add, per pair, one product drawn from its query's BM25 ranks [skip, depth) over the whole
    # catalog that raters did not judge for that query: a lexical near miss, the kind of
    # negative random in-batch products rarely are (Karpukhin et al., "DPR", 2020).
    # 0 = off. Skipping the top ranks keeps likely-relevant unjudged products out.
    lexical_negative_depth: int = 0
    lexical_negative_skip: int = 0
    # Add this many self-supervised pairs cut from catalog titles (a pseudo-query of 2-4
    # content words of a title -> its product): broad positives over products no judged
    # query reaches. 0 = off.
    catalog_pairs: int = 0
    # Let those pseudo-queries keep a title's sizes: a number with its unit words ("19/32
    # in.") counts as one content term. Off: title words with a letter only. On homedepot it
    # gave whole-catalog dev 0.3828 / 0.8857 against the default's 0.3793 / 0.8815 (nDCG@10 /
    # recall@100), the gain in queries with a digit; inside one-seed noise, so off
    # (docs/results.md, 2026-11-28, 05e3e4b..f8d0831).
    catalog_sizes: bool = False
    # Add, for each query with a positive, its top-N BM25 hits over the whole catalog that
    # raters did not judge for it, as positives (BM25 pseudo-labels). 0 = off. Must not
    # exceed lexical_negative_skip when both are on.
    lexical_positives: int = 0
    # Listwise distillation of a hybrid teacher. Before the step, the model the step starts
    # from and BM25 (the index's default analyzer) each rank the whole catalog for every
    # training query to depth ``distill_depth``; convex fusion with dense weight
    # ``distill_fusion_weight`` (`aisle tune-fusion`'s dev pick) makes the teacher. Its top
    # ``distill_candidates`` products and fused scores (in [0, 1]) are each query's target
    # list: up to ``distill_queries`` distinct queries of a batch add
    # ``distill_weight * distillation_loss`` at teacher temperature ``distill_temperature``.
    # It aims to teach the towers what BM25 knows (sizes, model numbers, exact terms) over
    # products no rater judged. 0 = off: in step 2 on homedepot (8 candidates, 16 queries a
    # batch) it left whole-catalog dev nDCG@10 unchanged (docs/results.md, 2026-11-27).
    distill_candidates: int = 0
    distill_queries: int = 16
    distill_weight: float = 1.0
    distill_temperature: float = 0.1
    distill_fusion_weight: float = 0.45
    distill_depth: int = 100
    # The teacher's scores: "" = the hybrid's fused scores (above); a cross-encoder directory
    # (`aisle rerank train`'s output) = that cross-encoder's judgement of each hybrid
    # candidate, read together with the query, as a probability (the sigmoid of its logit,
    # in [0, 1] like the fused scores, so ``distill_temperature`` means the same). The
    # candidates stay the hybrid's top ``distill_candidates``: judged and unjudged alike.
    # Not a default: the demo's short cascade with its step 2 distilled from the demo's short
    # cross-encoder (8 candidates from the demo's index) gained ~0.006 test nDCG@10 dense alone
    # on two seeds (intervals excluding 0), less on dev, condensed within noise, and nothing
    # through hybrid (docs/results.md, 2026-12-05, 50a41c0; ac5c9a9's first try tied).
    distill_teacher: str = ""
    # Where the candidates come from: "" = the hybrid above (the model the step starts from
    # embeds the whole catalog: 18 minutes for homedepot's on two CPU cores); an index
    # directory (`aisle index build`, over this catalog) = its default search (hybrid, with its
    # own tuned fusion; ``distill_depth`` and ``distill_fusion_weight`` then do not apply),
    # whose vectors are already built. Its fused scores are the targets unless
    # ``distill_teacher`` rescores them. Keyed by the index's manifest, not only its path.
    distill_index: str = ""
    # Also train product -> query (each positive product ranks the batch's queries). Off: in
    # both steps on homedepot it tied the default on dev (0.5182 against 0.5179, 2026-11-28).
    symmetric: bool = False
    # Cap on the judged training pairs (0 = all); the catalog and BM25-positive pairs are added
    # after it. For smoke runs and tests.
    max_pairs: int = 0
    # Run the step at all (false: skip it, e.g. a step-1-only ablation).
    enabled: bool = True

    def __post_init__(self) -> None:
        check_grade_threshold(
            "min_grade", self.min_grade, "min_grade_fraction", self.min_grade_fraction
        )
        # NaN passes check_grade_threshold's comparisons (and then means "use the fraction"),
        # and makes hard_negative_max_grade read as "off".
        if math.isnan(self.min_grade):
            raise AisleError(f"min_grade must be a number >= 0 (0 = use min_grade_fraction), "
                             f"got {self.min_grade}")
        if math.isnan(self.hard_negative_max_grade):
            raise AisleError(f"hard_negative_max_grade must be a number (< 0: no hard "
                             f"negatives), got {self.hard_negative_max_grade}")
        # Values that would divide by zero, give a NaN loss or train nothing without a word.
        if self.epochs < 1:
            raise AisleError(
                f"epochs must be >= 1, got {self.epochs} (to skip the step, set enabled = false)"
            )
        if not 0 < self.lr < math.inf:
            raise AisleError(f"lr must be a finite number > 0, got {self.lr} (e.g. 5e-5)")
        if not 0 < self.temperature < math.inf:
            raise AisleError(
                f"temperature must be a finite number > 0, got {self.temperature}: the loss "
                "divides the cosine scores by it (0.05 = scale 20)"
            )
        # NaN fails each of these (every comparison with it is false).
        if not 0 <= self.alpha < math.inf:
            raise AisleError(f"alpha must be a finite number >= 0 (0: plain in-batch softmax), "
                             f"got {self.alpha}")
        if not 0 <= self.weight_decay < math.inf:
            raise AisleError(f"weight_decay must be a finite number >= 0, got "
                             f"{self.weight_decay}")
        if not 0 <= self.warmup_ratio <= 1:
            raise AisleError(f"warmup_ratio must be in [0, 1] (the share of the step's "
                             f"optimiser steps spent warming up), got {self.warmup_ratio}")
        if not 0 <= self.distill_weight < math.inf:
            raise AisleError(f"distill_weight must be a finite number >= 0, got "
                             f"{self.distill_weight}")
        for name in ("max_pairs", "catalog_pairs", "lexical_negative_depth",
                     "lexical_negative_skip", "lexical_positives", "distill_candidates"):
            if getattr(self, name) < 0:
                raise AisleError(f"{name} must be >= 0 (0: off), got {getattr(self, name)}")
        if self.lexical_negative_depth > 0:
            if self.lexical_negative_skip >= self.lexical_negative_depth:
                raise AisleError(
                    f"lexical_negative_skip ({self.lexical_negative_skip}) must be below "
                    f"lexical_negative_depth ({self.lexical_negative_depth}): negatives are "
                    "drawn from the BM25 ranks [skip, depth)")
            if self.lexical_positives > self.lexical_negative_skip:
                raise AisleError(
                    f"lexical_positives ({self.lexical_positives}) must not exceed "
                    f"lexical_negative_skip ({self.lexical_negative_skip}): BM25's top ranks "
                    "cannot be both positives and negatives of one query")
        if self.hard_negative_max_grade >= 0 or self.lexical_negative_depth > 0:
            if self.batch_size < 1:
                raise AisleError(f"batch_size must be >= 1, got {self.batch_size}")
        elif self.batch_size < 2:
            raise AisleError(
                f"batch_size must be >= 2, got {self.batch_size}: a batch of one has no "
                "in-batch negatives, so its loss is 0 and nothing trains (or turn on hard "
                "negatives)"
            )

    def positive_grade(self, top_grade: float) -> float:
        """The lowest grade that counts as a positive, on a dataset whose top grade is this."""
        return grade_threshold(self.min_grade, self.min_grade_fraction, top_grade)


# numpy, pandas and torch take seeds below 2**32 (a resumed step seeds with seed + its
# optimiser step, modulo this).
SEED_LIMIT = 2**32


@dataclass(frozen=True)
class TrainConfig:
    # Step 1: broad, noisy positives (half the top grade: homedepot grade >= 1.0, "partial or
    # better") plus 25,000 self-supervised catalog pairs, shared tower.
    step1: StepConfig = StepConfig(
        min_grade_fraction=0.5, shared=True, lr=1e-4, catalog_pairs=25000
    )
    # Step 2: high-quality positives only (homedepot grade >= 1.67: two raters said "exact"
    # and the third at least "partial"; WANDS "Exact", ESCI "E"), towers untied.
    step2: StepConfig = StepConfig(min_grade_fraction=0.835, shared=False, epochs=1, lr=3e-5)
    tower: TowerConfig = field(default_factory=TowerConfig)
    # Base model directory; "" = the built-in all-MiniLM-L6-v2.
    base_model: str = ""
    seed: int = 13
    # Dev evaluation after each step: 0 = over the whole catalog (as `aisle evaluate` does);
    # N > 0 = over the dev split's judged products plus N random other products (faster).
    dev_catalog_size: int = 10000
    # Optimiser steps between resumable checkpoints.
    checkpoint_every: int = 100
    # Correct misspelt train and dev queries with the query speller built from the catalog's
    # titles (aisle.retrieval.spelling), as `aisle evaluate` and `aisle serve` do before the query
    # tower: the towers then train on the text they will be served. Off: with the symmetric
    # loss on homedepot it tied the default on whole-catalog dev (0.3809 against 0.3793,
    # docs/results.md, 2026-11-28).
    query_spelling: bool = False
    # After publishing, export the towers to ONNX with dynamic int8 weights (`aisle export
    # --int8`, checked against fp32 on the data's queries and products; a refused export
    # leaves the model on torch), so that `aisle index` and `aisle serve` run them by default
    # (backend auto): int8 encodes a query in 1.0-1.3 ms of CPU against torch's 23 ms here
    # (bench/cold_path.py), at the same relevance within noise (docs/results.md, 2026-12-04).
    export_int8: bool = True
    # After the int8 export, learn a static query tower from the int8 query tower (`aisle
    # static-query`: a mean of word-piece vectors, no judgment seen); search and the service
    # then run it (query_tower auto). It encodes a query in about 0.03 ms of CPU against
    # int8's 1.2 ms: a cold hybrid request costs 45% less CPU and its p99 at 8 clients 40%
    # less, for 0.002-0.003 less hybrid nDCG@10 on homedepot (dense alone 0.007). Off: that
    # put p99 at #24's 20 ms here, not clearly under it (docs/results.md, 2026-12-06), and a
    # bag of word pieces may lose more on worded queries.
    static_query: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.seed < SEED_LIMIT:
            raise AisleError(f"seed must be in [0, {SEED_LIMIT}), got {self.seed}")
        if self.dev_catalog_size < 0:
            raise AisleError(f"dev_catalog_size must be >= 0 (0: the whole catalog), got "
                             f"{self.dev_catalog_size}")
        if self.checkpoint_every < 1:
            raise AisleError(
                f"checkpoint_every must be >= 1 (optimiser steps between checkpoints), got "
                f"{self.checkpoint_every}"
            )
