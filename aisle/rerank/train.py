"""``aisle rerank train``: a cross-encoder trained on graded judgments over a first stage.

1. The first stage (an index's default mode, hybrid for every index ``aisle index`` builds)
   ranks every train and dev query once; the lists are kept in the work directory.
2. Training pairs (``examples.py``): judged pairs with target grade / top grade, and per query
   unjudged first-stage products past its top ranks and random catalog products as negatives.
   Loss: binary cross-entropy on the soft targets (the MS MARCO cross-encoders' recipe).
3. After each epoch the cross-encoder re-ranks the dev queries' first-stage candidates; the
   epoch with the best dev nDCG@10 at its best fusion weight is kept (``tune.py``).
4. The kept model is published atomically with a manifest (base, data and first-stage
   fingerprints, config, the dev grid, the chosen ``RerankConfig``), then exported to int8.

Resumable: a checkpoint (weights, optimiser, schedule, position) is written every
``checkpoint_every`` steps and at each epoch's end; ``resume=True`` continues from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from aisle.artifacts import (
    MANIFEST,
    atomic_dir,
    atomic_write_text,
    check_replaceable,
    code_version,
    manifest_fingerprint,
    publish,
    read_manifest,
    sibling_temp,
    write_manifest,
)
from aisle.data.dataset import Dataset, load_dataset
from aisle.data.schema import JUDGMENTS, PRODUCTS, QUERIES
from aisle.errors import AisleError, ArtifactError, DataError
from aisle.evaluation.metrics import any_relevant
from aisle.rerank.config import RerankTrainConfig
from aisle.rerank.examples import Example, training_examples
from aisle.rerank.model import KIND, TorchCrossScorer, load_reranker
from aisle.rerank.tune import best_weight, weight_grid
from aisle.retrieval.rerank import RERANK_FIELDS, CrossScorer, RerankConfig, rerank_pairs
from aisle.towers.text import product_texts

if TYPE_CHECKING:
    from aisle.retrieval.retriever import Retriever
    from aisle.retrieval.store import ProductIndex

log = logging.getLogger(__name__)

STATE = "state.pt"
BEST = "best"
EVAL_K = 100  # the evaluator's depth: recall@100 reads it


def catalog_texts(ds: Dataset) -> dict[str, str]:
    """product id -> what the cross-encoder reads of it (``RERANK_FIELDS``)."""
    ids = ds.products["product_id"].astype(str).tolist()
    return dict(zip(ids, product_texts(ds.products, RERANK_FIELDS), strict=True))


def first_stage(retriever: Retriever, ds: Dataset, query_ids: list[str], depth: int,
                work: Path) -> dict[str, Any]:
    """Each of ``query_ids``: its text as searched and its top ``depth`` first-stage
    (product, score) pairs in the retriever's default mode. Kept in ``work`` per index,
    queries, depth and the query tower's runtime (another int8 export ranks a little
    differently over the same index)."""
    qids = sorted(query_ids)
    key = hashlib.sha256(json.dumps(
        [retriever.index.manifest, qids, depth, ds.fingerprint(QUERIES),
         retriever.model.query_runtime], sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = work / f"first-stage-{key}.json"
    if path.is_file():
        log.info("reusing the first-stage lists in %s", path)
        saved: dict[str, Any] = json.loads(path.read_text())
        return saved
    from aisle.retrieval.retriever import searched_rankings

    text_of = ds.query_texts()
    searched, ranked = searched_rankings(retriever, [str(text_of[q]) for q in qids], depth,
                                         desc="first stage")
    out: dict[str, Any] = {
        "mode": retriever.default_mode,
        "queries": dict(zip(qids, searched, strict=True)),
        "ranked": {q: [list(pair) for pair in r] for q, r in zip(qids, ranked, strict=True)},
    }
    atomic_write_text(path, json.dumps(out))
    return out


def index_fingerprint(index: ProductIndex) -> str:
    """What identifies a first stage: its index manifest (model, data, fusion, version)."""
    return manifest_fingerprint(index.manifest)


def reranker_is_current(out: Path, cfg: RerankTrainConfig, ds: Dataset,
                        index: ProductIndex) -> bool:
    """Whether ``out`` holds a finished cross-encoder of ``cfg`` over ``ds`` and ``index``'s
    first stage, searched with the query tower the index loads by default (what ``make demo``
    reuses instead of training again; a static query tower or another int8 export ranks the
    candidates it learnt from a little differently)."""
    from aisle.retrieval.retriever import index_query_runtime

    try:
        manifest = read_manifest(Path(out), KIND)
    except AisleError:
        return False
    try:
        runtime = index_query_runtime(index.manifest)
    except (AisleError, OSError):  # the index's model cannot be read: nothing to reuse for it
        return False
    config = json.loads(json.dumps(asdict(cfg)))
    data = manifest.get("data", {})
    stage = manifest.get("first_stage", {})
    return (
        "dev" in manifest
        and manifest.get("config") == config
        and manifest.get("base_fingerprint") == base_fingerprint(cfg)
        and all(data.get(f"{t}_fingerprint") == ds.fingerprint(t)
                for t in (PRODUCTS, QUERIES, JUDGMENTS))
        and stage.get("index_fingerprint") == index_fingerprint(index)
        and stage.get("query_runtime") == runtime
    )


def base_fingerprint(cfg: RerankTrainConfig) -> str:
    """The base encoder's weights (new weights at the same path are another base)."""
    from aisle.towers.model import directory_fingerprint, resolve_model_ref

    base = resolve_model_ref(cfg.base)
    if not base.is_dir():
        raise AisleError(f"{base}: no such encoder directory for the cross-encoder's base")
    return directory_fingerprint(str(base.resolve()))


def _sample(qrels: dict[str, dict[str, float]], n: int, seed: int) -> dict[str, dict[str, float]]:
    if n == 0 or n >= len(qrels):
        return qrels
    keys = sorted(qrels)
    picked = np.random.default_rng(seed).choice(len(keys), n, replace=False)
    return {keys[i]: qrels[keys[i]] for i in sorted(picked)}


def _selection_sample(qrels: dict[str, dict[str, float]], n: int, seed: int
                      ) -> dict[str, dict[str, float]]:
    """The dev queries epochs are compared on: ``n`` of those with a product graded above 0
    (0: all of them). nDCG@10 is undefined for the others, and a sample of those alone would
    compare epochs by nothing."""
    return _sample({q: grades for q, grades in qrels.items() if any_relevant({q: grades})},
                   n, seed)


def cross_scores(scorer: CrossScorer, queries: dict[str, str], first: dict[str, list[Any]],
                 text_of: dict[str, str], depth: int, desc: str = "re-ranking"
                 ) -> dict[str, np.ndarray]:
    """query_id -> the scorer's logits for the query's top ``depth`` first-stage products."""
    out = {}
    for qid, ranked in tqdm(first.items(), desc=desc, unit="query"):
        out[qid] = scorer.score(rerank_pairs(queries[qid], [p for p, _ in ranked[:depth]],
                                             text_of))
    return out


def bucketed_batches(examples: list[Example], size: int, seed: int, epoch: int
                     ) -> list[np.ndarray]:
    """One epoch's full batches: shuffled, then sorted by text length within windows of 50
    batches so a batch pads little (a CPU step costs its longest pair), then the batches
    shuffled again; the ragged tail is dropped. Seeded by (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(examples))
    length = np.array([len(e.query) + len(e.product) for e in examples])
    window = size * 50
    for start in range(0, len(order), window):
        part = order[start : start + window]
        order[start : start + window] = part[np.argsort(length[part], kind="stable")]
    usable = (len(order) // size) * size
    batches = [order[i : i + size] for i in range(0, usable, size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class _Training:
    """The torch side: a sentence-transformers CrossEncoder, its optimiser and schedule;
    ``scorer`` scores with the model as it stands, as a loaded cross-encoder scores."""

    def __init__(self, cfg: RerankTrainConfig, total_steps: int) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        from aisle.towers.model import resolve_model_ref
        from aisle.training.trainer import _schedule

        base = resolve_model_ref(cfg.base)  # a directory: train_reranker's base_fingerprint
        torch.manual_seed(cfg.seed)
        try:
            self.model = CrossEncoder(str(base), num_labels=1, max_length=cfg.max_length,
                                      activation_fn=torch.nn.Identity(), local_files_only=True)
        except (OSError, ValueError) as e:  # no weights file, a config of no known model
            raise ArtifactError(f"{base} is not a usable encoder directory for the "
                                f"cross-encoder's base ({e})") from e
        self.scorer = TorchCrossScorer(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, _schedule(total_steps, cfg.warmup_ratio))

    def step(self, batch: list[Example]) -> float:
        import torch

        self.model.train()
        features = self.model.preprocess([(e.query, e.product) for e in batch])
        device = self.model.device
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                    for k, v in features.items()}
        logits = self.model(features)["scores"].view(-1)
        targets = torch.tensor([e.target for e in batch], dtype=logits.dtype, device=device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())

    def state(self) -> dict[str, Any]:
        import torch

        # The generator too: dropout draws from it, so a resumed run repeats the masks.
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "rng": torch.get_rng_state()}

    def load(self, state: dict[str, Any]) -> None:
        import torch

        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])


def _save_state(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = sibling_temp(path, "tmp")
    torch.save(state, tmp)
    publish(tmp, path)


# Settings that do not change the weights a run trains: how often it saves, and whether the
# result is exported. A resumed run may change them.
NOT_TRAINING = ("checkpoint_every", "export_int8")


def trained_by(cfg: RerankTrainConfig) -> dict[str, Any]:
    """The settings a resumable run's weights depend on (its config less ``NOT_TRAINING``)."""
    return {k: v for k, v in asdict(cfg).items() if k not in NOT_TRAINING}


def train_reranker(data: Path, index: Path, out: Path, cfg: RerankTrainConfig,
                   resume: bool = False, work: Path | None = None) -> dict[str, Any]:
    """Train, select on dev and publish a cross-encoder at ``out``; its summary."""
    import torch

    from aisle.evaluation.run import open_index_retriever

    out = Path(out)
    check_replaceable(out, KIND)
    work = Path(work) if work is not None else out.parent / f"{out.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ds = load_dataset(data)
    top_grade = ds.top_grade
    if top_grade is None or top_grade <= 0:
        raise AisleError(f"dataset {ds.name!r} has no graded judgments to train on")
    train_qrels = _sample(ds.qrels("train"), cfg.max_train_queries, cfg.seed)
    dev_qrels = _sample(ds.qrels("dev"), cfg.max_dev_queries, cfg.seed)
    for split, qrels in (("train", train_qrels), ("dev", dev_qrels)):
        if not qrels:  # dev picks the epoch and the fusion weight: nothing to pick them by
            raise DataError(f"dataset {ds.name!r} has no judged {split} queries; the "
                            "cross-encoder trains on train and is tuned on dev")
        if not any_relevant(qrels):
            # nDCG@10 would be undefined on every query: no epoch or weight to prefer
            raise DataError(f"dataset {ds.name!r} has no {split} judgment with a grade above "
                            f"0; judge some relevant products for {split} queries")
    base_weights = base_fingerprint(cfg)  # before the first stage: a bad base fails at once
    depth = max(cfg.negatives_to, cfg.depth, EVAL_K)
    retriever = open_index_retriever(index, None, ds)
    stage = first_stage(retriever, ds, [*train_qrels, *dev_qrels], depth, work)
    stage_index = index_fingerprint(retriever.index)
    stage_runtime = retriever.model.query_runtime
    del retriever  # training needs neither the index nor its query tower
    text_of = catalog_texts(ds)
    ranked_ids = {q: [p for p, _ in r] for q, r in stage["ranked"].items()}
    examples = training_examples(stage["queries"], train_qrels, top_grade, ranked_ids,
                                 text_of, sorted(text_of), cfg)
    log.info("%d training pairs over %d train queries (%d judged); dev: %d queries",
             len(examples), len(train_qrels), sum(map(len, train_qrels.values())),
             len(dev_qrels))
    batches = len(examples) // cfg.batch_size
    if batches < 1:
        raise AisleError(f"{len(examples)} training pairs make no batch of {cfg.batch_size}")
    total = batches * cfg.epochs
    trainer = _Training(cfg, total)
    # What the saved progress was trained from: another base, data or first stage would
    # otherwise resume into (or publish) the old run's weights. The pairs themselves, not
    # the index alone: the query tower on another runtime ranks a little differently over
    # the same index, and so picks other negatives, as many of them.
    pairs = hashlib.sha256()
    for e in examples:
        pairs.update(json.dumps([e.query, e.product, e.target]).encode())
    fingerprint = hashlib.sha256(json.dumps(
        [trained_by(cfg), pairs.hexdigest(), base_weights, stage_index,
         [ds.fingerprint(t) for t in (PRODUCTS, QUERIES, JUDGMENTS)]],
        sort_keys=True, default=str).encode()).hexdigest()[:16]
    progress: dict[str, Any] = {"epoch": 0, "batch": 0, "history": [], "best": None,
                                "fingerprint": fingerprint}
    state_path = work / STATE
    saved = None
    if resume and state_path.is_file():
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        if saved["progress"].get("fingerprint") != fingerprint:
            saved = None  # another config, data, first stage or base: its own run, anew
            log.info("%s is of another config, data or base: starting over", state_path)
    if saved is not None:
        if saved["trainer"] is not None:  # None: every epoch is trained
            trainer.load(saved["trainer"])
        progress = saved["progress"]
        log.info("resuming at epoch %d, batch %d", progress["epoch"] + 1, progress["batch"])
    elif state_path.is_file():
        log.info("starting over: removing %s", state_path)
        state_path.unlink()
        shutil.rmtree(work / BEST, ignore_errors=True)  # that run's, not this one's
    dev_queries = {q: stage["queries"][q] for q in dev_qrels}
    base = RerankConfig(depth=cfg.depth)

    select = cfg.epochs > 1 and cfg.select_queries > 0
    sample = _selection_sample(dev_qrels, cfg.select_queries, cfg.seed) if select else {}
    for epoch in range(progress["epoch"], cfg.epochs):
        batches_of = bucketed_batches(examples, cfg.batch_size, cfg.seed, epoch)
        bar = tqdm(range(progress["batch"], batches), desc=f"epoch {epoch + 1}", unit="batch",
                   initial=progress["batch"], total=batches)
        losses: list[float] = []
        for b in bar:
            losses.append(trainer.step([examples[i] for i in batches_of[b]]))
            if len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if (b + 1) % cfg.checkpoint_every == 0 and b + 1 < batches:
                progress["batch"] = b + 1
                _save_state(state_path, {"trainer": trainer.state(), "progress": progress})
        score = 0.0
        if select:  # several epochs: keep the one the dev sample likes best
            first = {q: stage["ranked"][q] for q in sample}
            scores = cross_scores(trainer.scorer, dev_queries, first, text_of, cfg.depth,
                                  "dev re-ranking")
            grid = weight_grid(first, scores, sample, top_grade, cfg.weights, base, EVAL_K)
            score = max(r["ndcg@10"] for r in grid)
            log.info("epoch %d: dev-sample nDCG@10 %.4f at its best weight", epoch + 1, score)
            progress["history"].append({"epoch": epoch + 1, "ndcg@10": score})
        # Without selection every epoch replaces the last: the config keeps the last epoch.
        if not select or progress["best"] is None or score > progress["best"]["ndcg@10"]:
            tmp = sibling_temp(work / BEST, "tmp")
            trainer.model.save(str(tmp))
            shutil.rmtree(work / BEST, ignore_errors=True)
            publish(tmp, work / BEST)
            progress["best"] = {"epoch": epoch + 1, "ndcg@10": score}
        progress["epoch"], progress["batch"] = epoch + 1, 0
        # After the last epoch only the progress is kept: the weights are in BEST, and the
        # optimiser's moments (twice the model) would never be read again.
        last = epoch + 1 == cfg.epochs
        _save_state(state_path, {"trainer": None if last else trainer.state(),
                                 "progress": progress})

    manifest = {
        "kind": KIND,
        "base": str(cfg.base or "builtin:all-MiniLM-L6-v2"),
        "base_fingerprint": base_weights,
        "max_length": cfg.max_length,
        "fields": list(RERANK_FIELDS),
        "data": {"name": ds.name, **{f"{t}_fingerprint": ds.fingerprint(t)
                                     for t in (PRODUCTS, QUERIES, JUDGMENTS)}},
        "first_stage": {"index": str(index), "mode": stage["mode"], "depth": depth,
                        "index_fingerprint": stage_index, "query_runtime": stage_runtime},
        "config": asdict(cfg),
        "pairs": len(examples),
        "epoch": progress["best"]["epoch"],
        "history": progress["history"],
        "rerank": asdict(base),
        "code_version": code_version(),
    }
    summary: dict[str, Any] = {"out": str(out), "epoch": manifest["epoch"]}
    # Exported and tuned before it is published: a run stopped in between (minutes on
    # homedepot) publishes nothing, where it left a cross-encoder whose weight was never
    # chosen on dev; a resume starts here again from the saved best epoch.
    with atomic_dir(out, KIND) as tmp:
        shutil.copytree(work / BEST, tmp, dirs_exist_ok=True)
        write_manifest(tmp, manifest)
        if cfg.export_int8:
            from aisle.rerank.export import export_reranker

            try:
                export_reranker(tmp, int8=True, data=data)
                summary["int8_export"] = "done"
            except Exception as e:  # the model stays usable on torch
                log.warning("int8 export of %s failed (%s); it runs on torch", out, e)
                summary["int8_export"] = f"failed: {e}"
        # The fusion weight, chosen on dev with the backend the cross-encoder will run on.
        reranker = load_reranker(tmp)
        first = {q: stage["ranked"][q] for q in dev_qrels}
        scores = cross_scores(reranker.scorer, dev_queries, first, text_of, cfg.depth,
                              f"dev re-ranking ({reranker.backend})")
        grid = weight_grid(first, scores, dev_qrels, top_grade, cfg.weights, base, EVAL_K)
        chosen = replace(base, weight=best_weight(grid))
        alone = next((r["ndcg@10"] for r in grid if r["weight"] == 0), None)
        log.info("dev nDCG@10 %.4f at weight %.2f (the first stage alone: %s)",
                 next(r["ndcg@10"] for r in grid if r["weight"] == chosen.weight),
                 chosen.weight, "not in the grid" if alone is None else f"{alone:.4f}")
        final = {**read_manifest(tmp, KIND), "rerank": asdict(chosen), "dev": grid,
                 "dev_backend": reranker.backend}
        atomic_write_text(tmp / MANIFEST, json.dumps(final, indent=2, sort_keys=True) + "\n")
        backend = reranker.backend
        del reranker  # its sessions read files of tmp, which is published as out next
    summary.update({"rerank": asdict(chosen), "dev_backend": backend, "dev": grid})
    summary["minutes"] = round((time.perf_counter() - started) / 60, 1)
    return summary
