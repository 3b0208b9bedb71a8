"""Tower configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from aisle.data.schema import PRODUCT_FIELDS
from aisle.errors import AisleError

Pooling = Literal["mean", "cls", "max"]
# What a config may ask for: a pooling, or "auto", the model directory's own (resolved when the
# model loads: ``aisle.towers.model.load_model``).
PoolingChoice = Literal["auto", "mean", "cls", "max"]
Device = Literal["auto", "cpu", "cuda"]
# How a tower runs inference. "torch": the sentence-transformers model. "onnx-fp32" /
# "onnx-int8": the ONNX Runtime export written by `aisle export` (int8 = dynamic quantisation,
# checked against fp32 at export). "auto": onnx-int8 if the model directory has that export,
# else onnx-fp32 if it has one, else torch. Training always needs torch.
Backend = Literal["auto", "torch", "onnx-fp32", "onnx-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)
# Which query tower runs: "transformer" (the trained one, on the backend), "static" (the
# model's static export, `aisle static-query`; aisle/towers/static.py), or "auto": static where
# the model has a current static export and runs on ONNX (for inference), else transformer.
# The product tower, and so an index's vectors, are the same either way.
QueryTower = Literal["auto", "transformer", "static"]
QUERY_TOWERS: tuple[str, ...] = get_args(QueryTower)


def check_choice(name: str, value: str, choices: tuple[str, ...], unset: str = "") -> None:
    """Raise ``AisleError`` unless ``value`` is one of ``choices`` (``unset``: what leaving
    ``name`` out means, said in the message)."""
    if value not in choices:
        raise AisleError(f"unknown {name} {value!r}; use one of {', '.join(choices)}"
                         + (f" ({unset})" if unset else ""))


# The TowerConfig fields that decide what a tower outputs for a text: the model fingerprint
# hashes them, and models that differ in one cannot be averaged (aisle soup). The other fields
# (device, backend, batch size, ONNX threads) only say how the towers run.
OUTPUT_FIELDS: tuple[str, ...] = (
    "pooling",
    "max_query_length",
    "max_product_length",
    "product_fields",
    "max_description_chars",
    "normalise_units",
)


@dataclass(frozen=True)
class TowerConfig:
    # Pooling of token states into one vector. "auto": the model's own, as its directory says
    # (an aisle model's saved config; a sentence-transformers directory's Pooling module, so a
    # CLS-pooled BGE or GTE base trains and serves as it was pretrained; mean for a bare
    # encoder, as sentence-transformers pools one). The default base, all-MiniLM-L6-v2, pools
    # by mean, which the SBERT paper (Reimers & Gurevych, 2019, table 7) finds best for
    # MiniLM-style bi-encoders. A model's saved config always names the pooling it ran with.
    pooling: PoolingChoice = "auto"
    # Shopper queries are short (median 3 words); 32 word pieces cover >99.9% of homedepot's.
    max_query_length: int = 32
    # Title + brand + category + a truncated description fit in 128 word pieces; longer inputs
    # cost quadratic attention time for little gain.
    max_product_length: int = 128
    # Which product fields become tower input, in this order (see towers/text.py).
    product_fields: tuple[str, ...] = PRODUCT_FIELDS
    # Descriptions can run to pages; keep the head, where the useful facts are.
    max_description_chars: int = 300
    batch_size: int = 64
    # Both towers read sizes in one spelling (towers/units.py: "20v" and "20-Volt" ->
    # "20 volt", "12 in." and '12"' -> "12 inch"), at training, indexing and serving alike.
    # Off: on homedepot it ties for the untuned base model on whole-catalog dev (0.2933
    # against 0.2927 nDCG@10; test 0.2923 against 0.2838), and trained towers learn the
    # spellings themselves (whole-catalog dev 0.3811 with it, 0.3828 without; docs/results.md,
    # 2026-11-28).
    normalise_units: bool = False
    device: Device = "auto"
    backend: Backend = "auto"
    # Threads per tower (0 = one per core): an fp32 tower's onnxruntime intra-op threads; an
    # int8 tower's workers, each running single-threaded one-text calls (towers/calls.py).
    # The query tower runs in the service at batch 1: one query is too little work to split
    # across threads (the hand-off costs more than it saves), and the service gets its
    # parallelism from concurrent requests, which extra threads per call would oversubscribe.
    # The product tower runs in batch jobs (aisle index), where every core should help.
    onnx_query_threads: int = 1
    onnx_product_threads: int = 0
    query_tower: QueryTower = "auto"

    def __post_init__(self) -> None:
        fields = tuple(self.product_fields)
        unknown = [f for f in fields if f not in PRODUCT_FIELDS]
        if unknown or "title" not in fields or len(set(fields)) < len(fields):
            # A misspelt field would make every product's tower input silently empty.
            raise AisleError(
                f"product_fields {list(fields)}: use each of {list(PRODUCT_FIELDS)} at most "
                "once, title included"
            )
        for name, low in (
            ("max_query_length", 1),
            ("max_product_length", 1),
            ("max_description_chars", 0),
            ("batch_size", 1),
            ("onnx_query_threads", 0),
            ("onnx_product_threads", 0),
        ):
            if getattr(self, name) < low:
                raise AisleError(f"{name} must be >= {low}, got {getattr(self, name)}")
        check_choice("query_tower", self.query_tower, QUERY_TOWERS)


def pooling_of(config: TowerConfig) -> Pooling:
    """``config``'s pooling, resolved: a loaded model's config never says "auto"."""
    if config.pooling == "auto":
        raise AisleError("a model's tower config names its pooling (mean, cls or max); 'auto' "
                         "is resolved when load_model loads it: pass the loaded model's config")
    return config.pooling


def runtime_name(backend: str, int8_export: str) -> str:
    """``TwoTowerModel.runtime``: the backend, and on int8 which export
    (``aisle.towers.onnx.int8_recipe``)."""
    return f"{backend}.{int8_export}" if int8_export else backend


def runtime_backend(runtime: str | None) -> str | None:
    """The backend of a runtime ``runtime_name`` makes (torch, onnx-fp32, onnx-int8 or
    ``onnx-int8.<export>``); None for any other (a vector file made elsewhere may name any)."""
    if runtime in ("torch", "onnx-fp32", "onnx-int8") or re.fullmatch(
            r"onnx-int8\.[0-9a-f]+", runtime or ""):
        return (runtime or "").split(".", 1)[0]
    return None
