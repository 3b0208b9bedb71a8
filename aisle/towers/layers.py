"""Cutting a transformer encoder to its first layers: a shallower, cheaper model to train from.

A BERT-style model (``BertModel``, ``...ForSequenceClassification``, RoBERTa, MPNet, DistilBERT)
holds its transformer layers as one ``ModuleList`` named ``layer``; keeping the first ``n``
and recording ``num_hidden_layers`` in its config makes a model that Hugging Face and
sentence-transformers save and load as it is. Compute is linear in the layers kept.
"""

from __future__ import annotations

from typing import Any

from aisle.errors import AisleError


def layer_stack(model: Any) -> Any:
    """The one ``ModuleList`` of transformer layers in ``model``."""
    import torch

    stacks = [m.layer for m in model.modules()
              if isinstance(getattr(m, "layer", None), torch.nn.ModuleList)]
    if len(stacks) != 1:
        raise AisleError(f"{type(model).__name__}: found {len(stacks)} transformer layer stacks "
                         "where one was expected; cutting layers needs a BERT-style encoder")
    return stacks[0]


def keep_first_layers(model: Any, n: int) -> int:
    """Keep ``model``'s first ``n`` transformer layers, in place; returns how many it had."""
    stack = layer_stack(model)
    had = len(stack)
    if not 1 <= n <= had:
        raise AisleError(f"layers = {n}, but the encoder has {had}: use 1 to {had} "
                         "(0 keeps them all)")
    del stack[n:]
    model.config.num_hidden_layers = n
    return had
