"""``aisle soup``: average the weights of several trained models into one (a model soup).

Wortsman et al. (ICML 2022, "Model soups"): models fine-tuned from the same base model often
sit in one basin of the loss, so the mean of their weights scores about as well as their
ensemble, at the cost of one model. Here each tower is averaged with its counterpart:

    theta_side = sum_i w_i * theta_side^(i),   w_i >= 0, sum_i w_i = 1,

for side in (query, product); a shared model gives its one encoder to both sides. A
non-float entry of a state dict, if an encoder has one, is not a weight: it must agree across
the models and is copied.

On homedepot, three cascades of the default config that differ only in their seed (one H200,
bf16) averaged to 0.3889 whole-catalog dev nDCG@10 against 0.3777-0.3852 alone, and to 0.3821
test against 0.3754-0.3798; two seeds on the CPU to 0.3818 dev against 0.3771-0.3784, and
0.3793 test against 0.3749-0.3770 (docs/results.md, 2026-11-28).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer

from aisle.artifacts import check_replaceable, manifest_kind, read_manifest
from aisle.errors import AisleError
from aisle.towers.config import OUTPUT_FIELDS, TowerConfig
from aisle.towers.encoder import Tower
from aisle.towers.model import BASE_MODEL, KIND, TwoTowerModel, load_model
from aisle.towers.onnx import export_precisions

log = logging.getLogger(__name__)

def _check_configs(models: Sequence[TwoTowerModel]) -> TowerConfig:
    first = models[0].config
    for m in models[1:]:
        for name in OUTPUT_FIELDS:
            a, b = getattr(first, name), getattr(m.config, name)
            if a != b:
                raise AisleError(
                    f"cannot average {models[0].ref} and {m.ref}: their tower configs differ in "
                    f"{name} ({a!r} against {b!r}), so the same weights would compute "
                    "different things; soup only models trained with the same tower config"
                )
    return first


BASE_WEIGHTS = "base_weights_fingerprint"


def _base_of(model: TwoTowerModel) -> str | None:
    """The base model ``model`` was fine-tuned from, as recorded (aisle train records the
    path as typed), where known."""
    base = model.extra.get("base_model")
    if base:
        return str(base)
    return BASE_MODEL if model.ref == BASE_MODEL else None


def _base_weights_of(model: TwoTowerModel) -> str | None:
    """The weights fingerprint of the base ``model`` was fine-tuned from (recorded by aisle
    train since it was added), or its own when ``model`` is the packaged base itself."""
    if model.extra.get(BASE_WEIGHTS):
        return str(model.extra[BASE_WEIGHTS])
    if "base_model" not in model.extra and model.ref == BASE_MODEL:
        return model.weights_fingerprint
    return None  # a model trained before the record, or a plain sentence-transformers dir


def _different_bases(named: list[str]) -> AisleError:
    return AisleError(f"cannot average models fine-tuned from different base models ({named}): "
                      "a soup needs one starting point for all of its models")


def _check_bases(models: Sequence[TwoTowerModel]) -> dict[str, str]:
    """What the soup records of its base. The bases are compared by their weights where every
    model records them, so one base typed as two different paths is one base; otherwise by
    the recorded path. Two recorded weights that differ are two bases either way."""
    weights = {_base_weights_of(m) for m in models}
    if len(weights - {None}) > 1:
        raise _different_bases(sorted(f"{_base_of(m)} ({_base_weights_of(m)})" for m in models))
    if None not in weights:
        base = _base_of(models[0])
        return {**({"base_model": base} if base else {}), BASE_WEIGHTS: weights.pop() or ""}
    bases = {_base_of(m) for m in models}
    known = sorted(b for b in bases if b is not None)
    if len(known) > 1:
        raise _different_bases(known)
    if None in bases:
        log.warning(
            "some models do not record their base model (%s); averaging them anyway, since "
            "their architectures match. A soup only makes sense for models fine-tuned from the "
            "same base",
            ", ".join(m.ref for m in models if _base_of(m) is None),
        )
    return {"base_model": known[0]} if known else {}


def _mean_state(
    states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float], refs: Sequence[str]
) -> dict[str, torch.Tensor]:
    first = states[0]
    for state, ref in zip(states[1:], refs[1:], strict=True):
        if state.keys() != first.keys():
            missing = sorted(set(first) ^ set(state))[:3]
            raise AisleError(
                f"cannot average {refs[0]} and {ref}: different architectures (parameters "
                f"{missing} are in one only)"
            )
        for key, tensor in state.items():
            if tensor.shape != first[key].shape:
                raise AisleError(
                    f"cannot average {refs[0]} and {ref}: {key} has shape "
                    f"{tuple(first[key].shape)} against {tuple(tensor.shape)}"
                )
    mean: dict[str, torch.Tensor] = {}
    for key, tensor in first.items():
        others = [s[key].to(tensor.device) for s in states[1:]]
        if tensor.is_floating_point():
            total = weights[0] * tensor.double()
            for w, other in zip(weights[1:], others, strict=True):
                total = total + w * other.double()
            mean[key] = total.to(tensor.dtype)
        elif all(torch.equal(tensor, other) for other in others):
            mean[key] = tensor.clone()
        else:
            raise AisleError(
                f"cannot average {', '.join(refs)}: their non-weight entry {key} differs"
            )
    return mean


def _normalised(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise AisleError(f"got {len(weights)} weights for {n} models; give one weight per model")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise AisleError(f"soup weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def _weights_fingerprint(models: Sequence[TwoTowerModel], weights: Sequence[float]) -> str:
    """Until the soup is saved (and fingerprinted from its files): its recipe's hash."""
    recipe = [[m.fingerprint, round(w, 9)] for m, w in zip(models, weights, strict=True)]
    return "soup-" + hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


def soup(models: Sequence[TwoTowerModel], weights: Sequence[float] | None = None) -> TwoTowerModel:
    """The weighted mean of ``models``' towers (uniform by default), as a new model.

    All models must be torch models with the same architecture, the same output-deciding
    tower config and the same base model. The soup is shared only if every model is."""
    if len(models) < 2:
        raise AisleError(f"a soup needs at least two models, got {len(models)}")
    if len({id(m) for m in models}) < len(models) or len({m.fingerprint for m in models}) == 1:
        log.warning("the models given are the same model: the soup is a copy of it")
    for m in models:
        if m.backend != "torch":
            raise AisleError(f"{m.ref} runs on {m.backend}; load it with backend=torch to soup it")
    config = _check_configs(models)
    extra = _check_bases(models)
    w = _normalised(weights, len(models))
    refs = [m.ref for m in models]

    def mean_encoder(side: str) -> SentenceTransformer:
        encoders = [getattr(m, side).model for m in models]
        encoder = copy.deepcopy(encoders[0])
        encoder.load_state_dict(_mean_state([e.state_dict() for e in encoders], w, refs))
        return encoder

    query = mean_encoder("query")
    product = query if all(m.shared for m in models) else mean_encoder("product")
    return TwoTowerModel(
        Tower(query, config.max_query_length, config.batch_size),
        Tower(product, config.max_product_length, config.batch_size),
        config,
        "soup",
        _weights_fingerprint(models, w),
        extra,
    )


def soup_command(
    refs: Sequence[str], out: Path, weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Load ``refs`` (model dirs), average them and publish the soup at ``out``."""
    w = _normalised(weights, len(refs))  # before the minutes of loading
    paths = [Path(r).resolve() for r in refs]
    if len(set(paths)) < len(paths):
        raise AisleError(f"a model is given twice in {list(refs)}; give each model once")
    if Path(out).resolve() in paths:
        raise AisleError(f"--out {out} is one of the models averaged; publish the soup elsewhere")
    check_replaceable(Path(out), KIND)
    models = [load_model(ref, backend="torch") for ref in refs]
    result = soup(models, w)
    # Saved with backend "auto": an ONNX export of the soup (aisle export) is used once made.
    result.config = replace(result.config, backend="auto")
    sources = [
        {"ref": m.ref, "fingerprint": m.fingerprint, "weight": round(x, 6)}
        for m, x in zip(models, w, strict=True)
    ]
    result.save(out, extra={"soup": sources})
    towers = "shared" if result.shared else "untied"
    log.info("averaged %d models -> %s (%s towers)", len(models), out, towers)
    if any(manifest_kind(p) == KIND and export_precisions(read_manifest(p, KIND)) for p in paths):
        log.info("the soup has no ONNX towers yet: aisle export --model %s adds them", out)
    return {
        "out": str(out),
        "towers": towers,
        "fingerprint": result.fingerprint,
        "soup": sources,
        "tower_config": asdict(result.config),
    }
