"""``aisle soup``: average the weights of several trained models into one (a model soup).

Wortsman et al. (ICML 2022, "Model soups"): models fine-tuned from the same base model often
sit in one basin of the loss, so the mean of their weights scores about as well as their
ensemble, at the cost of one model. Here each tower is averaged with its counterpart:

    theta_side = sum_i w_i * theta_side^(i),   w_i >= 0, sum_i w_i = 1,

for side in (query, product); a shared model gives its one encoder to both sides. Integer
buffers (token-type and position ids) are not weights: they must agree and are copied.

On homedepot, three cascades of the default config that differ only in their seed (one H200,
bf16) averaged to 0.3889 whole-catalog dev nDCG@10 against 0.3777-0.3852 alone, and to 0.3821
test against 0.3754-0.3798 (docs/results.md, session 11).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from aisle.errors import AisleError
from aisle.towers.config import TowerConfig
from aisle.towers.encoder import Tower
from aisle.towers.model import BASE_MODEL, TwoTowerModel, load_model

log = logging.getLogger(__name__)

# Tower config fields that decide what a tower outputs for a text: models that differ in one
# of them do not compute the same function of their weights, and their mean means nothing.
# The rest (device, backend, batch size, ONNX threads) only say how the towers run.
_RUNTIME_FIELDS = {"device", "backend", "batch_size", "onnx_query_threads", "onnx_product_threads"}
_SIDES = ("query", "product")


def _check_configs(models: Sequence[TwoTowerModel]) -> TowerConfig:
    first = models[0].config
    for m in models[1:]:
        for f in fields(TowerConfig):
            if f.name in _RUNTIME_FIELDS:
                continue
            a, b = getattr(first, f.name), getattr(m.config, f.name)
            if a != b:
                raise AisleError(
                    f"cannot average {models[0].ref} and {m.ref}: their tower configs differ in "
                    f"{f.name} ({a!r} against {b!r}), so the same weights would compute "
                    "different things; soup only models trained with the same tower config"
                )
    return first


def _base_of(model: TwoTowerModel) -> str | None:
    """The base model ``model`` was fine-tuned from, where known (aisle train records it)."""
    base = model.extra.get("base_model")
    if base:
        return str(base)
    return BASE_MODEL if model.ref == BASE_MODEL else None


def _check_bases(models: Sequence[TwoTowerModel]) -> str | None:
    bases = {_base_of(m) for m in models}
    known = sorted(b for b in bases if b is not None)
    if len(known) > 1:
        raise AisleError(
            f"cannot average models fine-tuned from different base models ({known}): "
            "a soup needs one starting point for all of its models"
        )
    if None in bases:
        log.warning(
            "some models do not record their base model (%s); averaging them anyway, since "
            "their architectures match. A soup only makes sense for models fine-tuned from the "
            "same base",
            ", ".join(m.ref for m in models if _base_of(m) is None),
        )
    return known[0] if known else None


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
        if tensor.is_floating_point():
            total = sum(w * s[key].double() for w, s in zip(weights, states, strict=True))
            mean[key] = torch.as_tensor(total).to(tensor.dtype)
        elif all(torch.equal(tensor, s[key]) for s in states[1:]):
            mean[key] = tensor.clone()
        else:
            raise AisleError(f"cannot average: the non-weight buffer {key} differs between models")
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


def soup(models: Sequence[TwoTowerModel], weights: Sequence[float] | None = None) -> TwoTowerModel:
    """The weighted mean of ``models``' towers (uniform by default), as a new model.

    All models must be torch models with the same architecture, the same output-deciding
    tower config and the same base model. The soup is shared only if every model is."""
    if len(models) < 2:
        raise AisleError(f"a soup needs at least two models, got {len(models)}")
    for m in models:
        if m.backend != "torch":
            raise AisleError(f"{m.ref} runs on {m.backend}; load it with backend=torch to soup it")
    config = _check_configs(models)
    base = _check_bases(models)
    w = _normalised(weights, len(models))
    refs = [m.ref for m in models]
    towers: list[Tower] = []
    for side in _SIDES:
        encoders = [getattr(m, side).model for m in models]
        mean = _mean_state([e.state_dict() for e in encoders], w, refs)
        encoder = copy.deepcopy(encoders[0])
        encoder.load_state_dict(mean)
        length = config.max_query_length if side == "query" else config.max_product_length
        towers.append(Tower(encoder, length, config.batch_size))
        if side == "query" and all(m.shared for m in models):
            towers.append(Tower(encoder, config.max_product_length, config.batch_size))
            break
    extra = {"base_model": base} if base else {}
    return TwoTowerModel(towers[0], towers[1], config, "soup", "", extra)


def soup_command(
    refs: Sequence[str], out: Path, weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Load ``refs`` (model dirs), average them and publish the soup at ``out``."""
    models = [load_model(ref, backend="torch") for ref in refs]
    # The soup runs the way the first model would; backend "auto" lets an ONNX export of
    # the soup (aisle export) be picked up later.
    result = soup(models, weights)
    result.config = replace(result.config, backend="auto")
    w = _normalised(weights, len(models))
    sources = [
        {"ref": m.ref, "fingerprint": m.fingerprint, "weight": round(x, 6)}
        for m, x in zip(models, w, strict=True)
    ]
    result.save(out, extra={"soup": sources})
    log.info("averaged %d models -> %s (%s towers)", len(models), out, "shared" if result.shared
             else "untied")
    return {
        "out": str(out),
        "towers": "shared" if result.shared else "untied",
        "fingerprint": result.fingerprint,
        "soup": sources,
        "tower_config": asdict(result.config),
    }
