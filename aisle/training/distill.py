"""Teacher lists for listwise distillation: a hybrid (dense + BM25) ranking of each training
query over the whole catalog, made once before a step from the model the step starts with
or read from a built index's search (``distill_index``: no catalog to embed), scored by the
hybrid itself or by a cross-encoder (``distill_teacher``).

The hybrid beats either side alone on homedepot (docs/results.md): BM25 holds what the towers
miss (sizes, model numbers, exact terms), the towers what BM25 misses (synonyms, typos). The
teacher's fused scores over its top products become soft targets for the towers alone, over
products no rater judged, so the single dense index learns from both.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from aisle.artifacts import (
    atomic_write_text,
    manifest_fingerprint,
    read_manifest,
    tree_fingerprint,
)
from aisle.data.dataset import Dataset
from aisle.errors import AisleError
from aisle.retrieval.config import FusionConfig, IndexConfig
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.retriever import index_query_runtime, searched_rankings
from aisle.towers.model import TwoTowerModel
from aisle.training.config import StepConfig
from aisle.training.dev_eval import catalog_retriever
from aisle.training.pairs import Pairs

log = logging.getLogger(__name__)

Ranking = list[tuple[str, float]]


def validate(cfg: StepConfig, ds: Dataset | None = None) -> None:
    """Refuse a distillation config that could only fail after the step before it trained;
    with ``ds``, a ``distill_index`` built over another catalog too."""
    if cfg.distill_candidates == 0:
        return
    problems = []
    if cfg.distill_candidates < 2:
        problems.append("distill_candidates must be 0 (off) or >= 2: a list of one teaches nothing")
    if cfg.distill_teacher:
        from aisle.rerank.model import KIND as RERANKER

        try:
            read_manifest(Path(cfg.distill_teacher), RERANKER)
        except AisleError as e:
            problems.append(f"distill_teacher must be a cross-encoder directory (aisle rerank "
                            f"train writes one): {e}")
    if cfg.distill_index:
        problems.extend(_index_problems(cfg, ds))
    if ds is not None and len(ds.products) < cfg.distill_candidates:
        problems.append(f"the catalog has {len(ds.products)} products, fewer than "
                        f"distill_candidates ({cfg.distill_candidates})")
    if cfg.distill_depth < cfg.distill_candidates:
        problems.append("distill_depth must be >= distill_candidates")
    if cfg.distill_queries < 1:
        problems.append("distill_queries must be >= 1")
    if not 0.0 <= cfg.distill_fusion_weight <= 1.0:
        problems.append("distill_fusion_weight must be in [0, 1]")
    if not 0 < cfg.distill_temperature < math.inf:
        problems.append("distill_temperature must be a finite number > 0")
    if problems:
        raise AisleError("bad distillation config: " + "; ".join(problems))


def _index_problems(cfg: StepConfig, ds: Dataset | None) -> list[str]:
    from aisle.evaluation.run import built_over
    from aisle.retrieval.store import read_index_manifest

    index = cfg.distill_index
    try:
        manifest = read_index_manifest(Path(index))
    except AisleError as e:
        return [f"distill_index must be an index directory (aisle index build writes one): {e}"]
    problems = []
    if ds is not None and not built_over(manifest, ds):
        problems.append(f"distill_index {index} was built over another catalog than "
                        f"{ds.name!r}'s products; build one over it")
    method = manifest.get("fusion", {}).get("method", FusionConfig.method)
    if not cfg.distill_teacher and ("lexical" not in manifest or method != "convex"):
        # Its scores would be the targets: a dense index's cosines, or RRF's 1/(k + rank),
        # whose top products differ by ~0.004, are not the [0, 1] fused scores the
        # temperature is set for.
        what = "dense only" if "lexical" not in manifest else f"fused by {method}"
        problems.append(f"distill_index {index} is {what}: its scores cannot be the targets; "
                        "set distill_teacher (a cross-encoder scores its candidates) or use a "
                        "hybrid index fused by convex combination")
    return problems


def teacher_rankings(
    model: TwoTowerModel, ds: Dataset, queries: Sequence[str], cfg: StepConfig
) -> list[Ranking]:
    """Per query, the top ``cfg.distill_candidates`` of the convex fusion of ``model``'s exact
    dense ranking and BM25's (the index's default BM25), each to depth ``cfg.distill_depth``,
    over ``ds``'s whole catalog; or, with ``cfg.distill_index``, of that index's own search
    (nothing embedded). Rescored by ``cfg.distill_teacher`` when it names a cross-encoder."""
    catalog = ds.products
    if len(catalog) < cfg.distill_candidates:
        raise AisleError(
            f"the catalog has {len(catalog)} products, fewer than distill_candidates "
            f"({cfg.distill_candidates})"
        )
    if cfg.distill_index:
        searched, rankings = index_rankings(Path(cfg.distill_index), ds, queries,
                                            cfg.distill_candidates)
        if cfg.distill_teacher:  # it reads the text the index searched, as it was trained to
            return cross_encoder_rankings(Path(cfg.distill_teacher), ds, searched, rankings)
        return rankings
    ids = catalog["product_id"].astype(str).tolist()
    lexical = BM25Index.from_config(model.product_texts(catalog), ids, IndexConfig())
    log.info("teacher: embedding %d products and %d queries", len(ids), len(queries))
    fusion = FusionConfig("convex", cfg.distill_fusion_weight, dense_depth=cfg.distill_depth,
                          lexical_depth=cfg.distill_depth)
    teacher = catalog_retriever(model, ds, catalog, lexical=lexical, fusion=fusion)
    searched, rankings = searched_rankings(teacher, queries, cfg.distill_candidates, "hybrid",
                                           "teacher: first stage")
    if cfg.distill_teacher:  # the text searched (normalised, spell-corrected), as it trained on
        return cross_encoder_rankings(Path(cfg.distill_teacher), ds, searched, rankings)
    return rankings


def index_rankings(
    index: Path, ds: Dataset, queries: Sequence[str], candidates: int
) -> tuple[list[str], list[Ranking]]:
    """Per query, the text ``index``'s default search read (the one query path: normalised,
    spell-corrected) and its top ``candidates`` (its mode and fusion) with the scores it ranks
    by. The index must be built over ``ds``'s catalog (refused otherwise: the step reads its
    products' texts from ``ds``)."""
    from aisle.evaluation.run import open_index_retriever

    # The transformer query tower: a teacher is never the model's cheaper static stand-in.
    retriever = open_index_retriever(index, None, ds, query_tower="transformer")
    log.info("teacher: %d queries' top %d from index %s (%s)", len(queries), candidates, index,
             retriever.default_mode)
    searched, out = searched_rankings(retriever, queries, candidates,
                                      desc="teacher: first stage")
    short = sum(len(r) < candidates for r in out)
    if short:
        log.warning("%d of %d queries found fewer than %d products in %s", short, len(out),
                    candidates, index)
    return searched, out


def candidates_fingerprint(cfg: StepConfig) -> str:
    """What identifies ``cfg``'s candidate index ("" for none): its manifest (model, data,
    fusion, version), so an index rebuilt at the same path makes other candidates, and the
    runtime of the query tower that searches it (another int8 export ranks a little
    differently)."""
    if not cfg.distill_candidates or not cfg.distill_index:  # a step that does not distil
        return ""
    from aisle.retrieval.store import read_index_manifest

    manifest = read_index_manifest(Path(cfg.distill_index))
    queries = index_query_runtime(manifest, query_tower="transformer")  # as index_rankings
    return manifest_fingerprint({"index": manifest, "queries": queries})


# How a cross-encoder teacher's int8 export scores, named in the step key beside its weights:
# a pair a call since 2026-12-05 (``aisle.rerank.model.OnnxCrossScorer``), a query's
# candidates a call before, which gave other scores.
TEACHER_INT8_SCORING = "pair-per-call"

# What a cross-encoder teacher reads of each query over the catalog's own hybrid (no candidate
# index), named in its step key: the text searched (normalised, spell-corrected) since
# 2026-12-06, the text as typed before. Over an index it always read the text searched.
TEACHER_CATALOG_QUERY = "searched"


def teacher_fingerprint(cfg: StepConfig) -> str:
    """The weights fingerprint of ``cfg``'s cross-encoder teacher ("" for the hybrid one): a
    teacher retrained at the same path teaches something else."""
    if not cfg.distill_candidates or not cfg.distill_teacher:  # a step that does not distil
        return ""
    return tree_fingerprint(Path(cfg.distill_teacher))


def cross_encoder_rankings(
    path: Path, ds: Dataset, queries: Sequence[str], rankings: Sequence[Ranking]
) -> list[Ranking]:
    """``rankings``' products, each query's rescored by the cross-encoder at ``path`` (the
    sigmoid of its logit) and sorted best first. Scored as re-ranking scores them
    (``aisle.rerank.train.cross_scores``); an int8 scorer scores a pair a call, so a pair gets
    the score it gets at query time, whatever was scored beside it."""
    from aisle.rerank.model import load_reranker
    from aisle.rerank.train import catalog_texts, cross_scores

    keys = [str(i) for i in range(len(rankings))]
    logits = cross_scores(
        load_reranker(path).scorer,
        dict(zip(keys, queries, strict=True)),
        dict(zip(keys, rankings, strict=True)),
        catalog_texts(ds),
        depth=max(map(len, rankings), default=0),
        desc="teacher: cross-encoder",
    )
    out: list[Ranking] = []
    for key, ranking in zip(keys, rankings, strict=True):
        probs = 1.0 / (1.0 + np.exp(-logits[key].astype(np.float64)))
        scored = [(p, float(s)) for (p, _), s in zip(ranking, probs, strict=True)]
        out.append(sorted(scored, key=lambda x: -x[1]))
    return out


def load_or_make_teacher(
    path: Path,
    model: TwoTowerModel,
    ds: Dataset,
    queries: Sequence[str],
    cfg: StepConfig,
) -> list[Ranking]:
    """``teacher_rankings``, kept at ``path`` so a resumed step reuses the teacher of the
    model it started from (the resumed model is mid-step and would teach something else)."""
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved["queries"] == list(queries):
                log.info("reusing the teacher lists in %s", path)
                return [[(p, float(s)) for p, s in r] for r in saved["rankings"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            # Written atomically, so only outside damage gets here; the teacher is derived
            # data, so it is made again rather than trusted or fatal.
            log.warning("teacher lists in %s are unreadable (%s); making them again", path, err)
    rankings = teacher_rankings(model, ds, queries, cfg)
    atomic_write_text(path, json.dumps({"queries": list(queries), "rankings": rankings}))
    return rankings


def attach_teacher(
    pairs: Pairs, ds: Dataset, model: TwoTowerModel, path: Path, cfg: StepConfig
) -> Pairs:
    """``pairs`` with each pair's teacher list (texts and scores) for its query."""
    first: dict[int, int] = {}
    for i, key in enumerate(pairs.query_keys.tolist()):
        first.setdefault(key, i)
    keys = list(first)
    queries = [pairs.queries[first[k]] for k in keys]
    rankings = load_or_make_teacher(path, model, ds, queries, cfg)
    needed = {pid for r in rankings for pid, _ in r}
    catalog = ds.products[ds.products["product_id"].astype(str).isin(needed)]
    text = dict(zip(catalog["product_id"].astype(str), model.product_texts(catalog), strict=True))
    by_key = {
        k: (tuple(text[p] for p, _ in r), tuple(s for _, s in r))
        for k, r in zip(keys, rankings, strict=True)
    }
    lists = [by_key[k] for k in pairs.query_keys.tolist()]
    spread = [max(s) - min(s) for _, s in by_key.values() if s]
    log.info(
        "teacher lists for %d queries, %d products each; %s score spread median %.3f",
        len(by_key),
        cfg.distill_candidates,
        "cross-encoder" if cfg.distill_teacher else "fused",
        float(np.median(spread)) if spread else 0.0,
    )
    return replace(
        pairs,
        teacher_texts=tuple(t for t, _ in lists),
        teacher_scores=tuple(s for _, s in lists),
    )
