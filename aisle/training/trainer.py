"""One cascade step: in-batch softmax training of a two-tower model, resumable."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from aisle.artifacts import atomic_dir
from aisle.errors import AisleError
from aisle.towers.model import AnyTower, TwoTowerModel, load_model
from aisle.training.config import SEED_LIMIT, StepConfig
from aisle.training.loss import (
    accidental_hit_mask,
    distillation_loss,
    in_batch_softmax_loss,
    symmetric_in_batch_softmax_loss,
)
from aisle.training.pairs import Pairs, batch_order, iter_batches

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
# Texts per forward chunk: small enough that a length-sorted chunk pads little, large enough
# to keep matrix products efficient.
FORWARD_CHUNK = 32


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _parameters(model: TwoTowerModel) -> list[torch.nn.Parameter]:
    params = list(model.query.model.parameters())
    if not model.shared:
        params += list(model.product.model.parameters())
    return params


def _schedule(total: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, int(total * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def forward_bucketed(tower: AnyTower, texts: list[str], chunk: int) -> torch.Tensor:
    """``tower.forward`` over length-sorted chunks, rows back in input order: ``(N, D)``.

    A batch pads every text to its longest one; titles here average 19 tokens with a
    longest of 40+, so most of a padded batch's compute is padding. Chunks of similar length
    pad little, and the gradient is the same (padding is masked out of attention and pooling).
    """
    if len(texts) <= chunk:
        return tower.forward(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [
        tower.forward([texts[i] for i in order[s : s + chunk]]) for s in range(0, len(order), chunk)
    ]
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(parts)[inverse.to(parts[0].device)]


@contextlib.contextmanager
def _deterministic(model: TwoTowerModel) -> Iterator[None]:
    """On CUDA, run the step with deterministic kernels, so a seeded run (and a resumed one)
    gives the same weights; the process's previous setting is restored afterwards.

    Atomic-add kernels (index_put with accumulate, attention backward) otherwise sum in a
    different order each run. ``warn_only``: an op with no deterministic kernel warns rather
    than failing the step. That leaves the fused attention kernels (cuDNN, flash,
    memory-efficient) on their non-deterministic backward, so attention runs on the plain
    ``math`` kernel here: matrix products and a softmax, at sequence lengths of 32-128 tokens.
    cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``) is chosen when ``aisle.training``
    is imported, before cuBLAS first runs.
    """
    if model.query.device.type != "cuda":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)  # dropout on the GPU draws from it
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" not in state:
        return
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    else:
        log.warning(
            "the checkpoint was made on a CUDA device and resumes on %s: the resumed step's "
            "dropout will not repeat the interrupted run's",
            device,
        )


def _autocast(model: TwoTowerModel) -> contextlib.AbstractContextManager[Any]:
    if model.query.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_checkpoint(ckpt: Path, model: TwoTowerModel, state: dict[str, Any]) -> None:
    """Model weights + optimiser/scheduler/RNG state, published atomically as one directory."""
    with atomic_dir(ckpt, None) as tmp:
        model.save(tmp / "model")
        torch.save(state, tmp / STATE_FILE)


def run_step(
    model: TwoTowerModel,
    pairs: Pairs,
    cfg: StepConfig,
    seed: int,
    ckpt: Path,
    checkpoint_every: int,
    resume: bool,
    name: str,
) -> tuple[TwoTowerModel, dict[str, Any]]:
    """Train ``model`` on ``pairs`` for ``cfg.epochs``; checkpoint to ``ckpt`` as it goes."""
    with _deterministic(model):
        return _run_step(model, pairs, cfg, seed, ckpt, checkpoint_every, resume, name)


def _run_step(
    model: TwoTowerModel,
    pairs: Pairs,
    cfg: StepConfig,
    seed: int,
    ckpt: Path,
    checkpoint_every: int,
    resume: bool,
    name: str,
) -> tuple[TwoTowerModel, dict[str, Any]]:
    orders = [batch_order(len(pairs), cfg.batch_size, seed, e) for e in range(cfg.epochs)]
    total = sum(len(o) for o in orders)
    # The counts and seconds run over the whole step, an interrupted run's part included.
    counts = {"seen": 0, "hard_seen": 0, "distill_seen": 0, "unopposed": 0, "seconds": 0.0}
    state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "losses": [], **counts}
    if resume and (ckpt / STATE_FILE).is_file():
        model = load_model(ckpt / "model", model.config)
        # Onto the CPU whatever device saved it: a checkpoint made on CUDA resumes on a machine
        # without one. load_state_dict moves the optimiser's state to its parameters' device.
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
        state = {**counts, **state}  # checkpoints from before the counts were kept: from 0
        log.info("%s: resuming at optimiser step %d/%d", name, state["step"], total)
    elif (ckpt / STATE_FILE).is_file():
        log.warning("%s: %s holds a checkpoint of this step, which this run trains over from "
                    "the first batch (pass --resume to go on from it)", name, ckpt)
    elif resume:
        others = sorted(p.name for p in ckpt.parent.glob(f"{name}-*{ckpt.suffix}")
                        if p != ckpt and (p / STATE_FILE).is_file())
        if others:
            log.warning("%s: --resume found no checkpoint of this step in %s; %s hold the "
                        "step under other settings (data, base model or config), which this "
                        "run cannot go on from: training from the first batch", name,
                        ckpt.parent, ", ".join(others))
    seed_everything((seed + state["step"]) % SEED_LIMIT)
    for m in {
        id(model.query.model): model.query.model,
        id(model.product.model): model.product.model,
    }.values():
        m.train()
    optimizer = torch.optim.AdamW(_parameters(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, cfg.warmup_ratio))
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state, model.query.device)

    started = time.perf_counter()
    seen_here = 0  # pairs seen by this process, for its rate

    def seconds() -> float:
        return float(state["seconds"]) + time.perf_counter() - started

    bar = tqdm(total=total, initial=state["step"], desc=f"training {name}", unit="step")
    for epoch in range(state["epoch"], cfg.epochs):
        start = state["batch"] if epoch == state["epoch"] else 0
        batches = iter_batches(
            pairs,
            orders[epoch],
            start,
            seed,
            epoch,
            cfg.distill_queries if cfg.distill_candidates else 0,
        )
        for i, batch in enumerate(batches, start=start):
            with _autocast(model):
                q = forward_bucketed(model.query, batch.queries, FORWARD_CHUNK)  # (B, D)
                p = forward_bucketed(model.product, batch.products, FORWARD_CHUNK)  # (B + H, D)
            negatives = accidental_hit_mask(batch.product_keys, batch.query_keys)
            # A row with no negative in its batch (every product in it is a positive of its
            # query text) adds nothing to the softmax loss.
            state["unopposed"] += int((~negatives.any(dim=1)).sum())
            loss_fn = symmetric_in_batch_softmax_loss if cfg.symmetric else in_batch_softmax_loss
            loss = loss_fn(q.float(), p.float(), negatives, cfg.temperature, cfg.alpha)
            if batch.teacher_scores is not None:
                with _autocast(model):
                    c = forward_bucketed(model.product, list(batch.teacher_texts), FORWARD_CHUNK)
                scores = batch.teacher_scores.to(q.device)  # (R, M)
                rows = torch.tensor(batch.teacher_rows, device=q.device)
                distilled = distillation_loss(
                    q.float()[rows],
                    c.float().view(*scores.shape, -1),
                    scores,
                    cfg.temperature,
                    cfg.distill_temperature,
                )
                loss = loss + cfg.distill_weight * distilled
                state["distill_seen"] += len(batch.teacher_rows)
            if not torch.isfinite(loss):  # a diverged step would publish garbage weights
                raise AisleError(
                    f"{name}: the loss is {loss.item()} at optimiser step {state['step'] + 1} "
                    f"of {total}; training stopped before it reached the weights. Lower lr "
                    f"(now {cfg.lr:g}) or raise temperature (now {cfg.temperature:g}) and "
                    "train again"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(_parameters(model), 1.0)
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            state["losses"].append(float(loss.item()))
            state["seen"] += len(batch.queries)
            state["hard_seen"] += batch.hard_count
            seen_here += len(batch.queries)
            rate = seen_here / max(1e-9, time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss.item():.3f}", pairs_s=f"{rate:.0f}")
            bar.update(1)
            if state["step"] % checkpoint_every == 0 and state["step"] < total:
                state.update(
                    epoch=epoch,
                    batch=i + 1,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    **_rng_state(model.query.device),
                )
                save_checkpoint(ckpt, model, {**state, "seconds": seconds()})
        state["batch"] = 0
    bar.close()
    for m in (model.query.model, model.product.model):
        m.eval()
    losses = state["losses"]
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10) :]
    stats = {
        "pairs": len(pairs),
        "hard_negatives_seen": state["hard_seen"],
        "teacher_lists_seen": state["distill_seen"],
        "rows_without_negatives": state["unopposed"],
        "optimizer_steps": state["step"],
        "loss_first_10pct": round(float(np.mean(head)), 4) if losses else None,
        "loss_last_10pct": round(float(np.mean(tail)), 4) if losses else None,
        "seconds": round(seconds(), 1),
    }
    if state["seen"] and state["unopposed"] == state["seen"] and not state["distill_seen"]:
        log.warning("%s: no pair had a negative in its batch (every batch held one query text's "
                    "positives alone), so this step learned nothing from them; train on more "
                    "query texts, or on smaller batches", name)
    log.info("%s done: %s", name, stats)
    return model, stats
