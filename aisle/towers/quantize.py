"""Dynamic int8 quantisation of an exported tower, and the check that it still agrees.

Per-channel int8 weights (one scale per output column), activations quantised per call:
per-tensor scales lose too much for MiniLM (mean cosine to fp32 0.956 against 0.992 per
channel on homedepot). Only MatMuls with constant weights are quantised (onnxruntime's dynamic
default): the attention products of two activations stay fp32.

One weight MatMul stays fp32: the first layer's feed-forward output projection
(``KEEP_FP32``). bench/rerank_int8.py leaves each MatMul of a cross-encoder out of int8 in
turn; on the demo's (2026-12-05, the gate's 2,432 judged homedepot pairs) that one moved
Pearson's r to fp32 from 0.9929 to 0.9940 for 1.05-1.06x the time, no other single one helped,
and all six feed-forward outputs gave 0.9964 for 1.31-1.33x. On the demo's towers (a
throwaway check, docs/results.md) it lifted the mean cosine to fp32 from 0.9929 to 0.9943 at
the same query latency.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aisle.errors import AisleError

if TYPE_CHECKING:
    import onnx

    from aisle.towers.export import Agreement
    from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)


# The first encoder layer's feed-forward output projection, named by torch.onnx after its
# module: "layer.0/output/dense" in BERT-style encoders (MiniLM, MPNet, RoBERTa), and
# "layer.0/ffn/lin2" in DistilBERT.
KEEP_FP32 = re.compile(r"(^|/)layer\.0/(output/dense|ffn/lin2)/MatMul$")


# How the quantiser is set. Each int8 export of the towers records it (the manifest's
# ``int8_options``), and ``aisle.towers.onnx.int8_recipe`` hashes it: a change here makes
# another export, whose vectors an index of the old one must not mix with.
QUANTISER: dict[str, Any] = {
    "weight_type": "QInt8",
    "per_channel": True,
    "activations": "dynamic",  # quantised per call (quantize_dynamic)
    # Fused contrib ops (Attention, SkipLayerNormalization) defeat shape inference; their
    # outputs are float.
    "default_tensor_type": "FLOAT",
}


def fp32_nodes(graph: onnx.GraphProto) -> list[str]:
    """The MatMul nodes of an ONNX ``graph`` that ``quantize`` leaves in fp32."""
    return [n.name for n in graph.node if n.op_type == "MatMul" and KEEP_FP32.search(n.name)]


def quantize(fp32: Path, out: Path, keep: Sequence[str] | None = None) -> list[str]:
    """``fp32`` -> ``out``, its weight MatMuls in int8 but the nodes named in ``keep``
    (default: the graph's ``fp32_nodes``); returns the names left in fp32 (by default none
    for an architecture whose graph names no such node)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if keep is None:
        kept = fp32_nodes(onnx.load(str(fp32), load_external_data=False).graph)
        if not kept:
            log.info("%s: no first-layer feed-forward output found; every weight MatMul goes "
                     "int8", fp32)
    else:
        kept = list(keep)
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs each tensor to the root
    try:
        quantize_dynamic(
            str(fp32),
            str(out),
            weight_type=QuantType[QUANTISER["weight_type"]],
            per_channel=QUANTISER["per_channel"],
            nodes_to_exclude=kept,
            extra_options={"DefaultTensorType": getattr(onnx.TensorProto,
                                                        QUANTISER["default_tensor_type"])},
        )
    finally:
        root.setLevel(level)
    return kept


def sample_texts(
    data: Path, model: TwoTowerModel, agreement: Agreement
) -> tuple[list[str], list[str]]:
    """Seeded samples of the data's real query texts and product texts (as the tower sees them)."""
    from aisle.data.dataset import load_dataset

    ds = load_dataset(Path(data))
    rng = np.random.default_rng(agreement.seed)
    queries = ds.queries["query"].astype(str).tolist()
    picked_q = rng.choice(len(queries), min(agreement.queries, len(queries)), replace=False)
    n_products = min(agreement.products, len(ds.products))
    picked_p = rng.choice(len(ds.products), n_products, replace=False)
    products = model.product_texts(ds.products.iloc[np.sort(picked_p)])
    if not queries or not products:
        raise AisleError(f"{data} has no queries or no products to check int8 agreement on")
    return [queries[i] for i in np.sort(picked_q)], products


def _cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(axis=1)  # rows are unit vectors
    return {
        "mean": round(float(cos.mean()), 5),
        "p1": round(float(np.percentile(cos, 1)), 5),
        "min": round(float(cos.min()), 5),
    }


def top_k_overlap(q_a: np.ndarray, p_a: np.ndarray, q_b: np.ndarray, p_b: np.ndarray,
                  k: int = 10) -> float:
    """Mean share of each query's top ``k`` products (within the sample) that both keep."""
    k = min(k, len(p_a))
    top_a = np.argsort(-(q_a @ p_a.T), axis=1)[:, :k]  # (Q, k)
    top_b = np.argsort(-(q_b @ p_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b, strict=True)]))


def measure_agreement(
    fp32: TwoTowerModel, int8: TwoTowerModel, data: Path, agreement: Agreement
) -> dict[str, Any]:
    """Cosine of int8 to fp32 per text on real queries and products; refuse below threshold.

    The top-10 overlap is recorded, not gated: within a sample of a thousand products many
    neighbours are near-ties, so its level says more about the catalog than about int8.
    """
    queries, products = sample_texts(data, fp32, agreement)
    log.info("checking int8 against fp32 on %d queries and %d products of %s",
             len(queries), len(products), data)
    q32, p32 = fp32.query.encode(queries).numpy(), fp32.product.encode(products).numpy()
    q8, p8 = int8.query.encode(queries).numpy(), int8.product.encode(products).numpy()
    result: dict[str, Any] = {
        "data": Path(data).name,
        "queries": _cosine_stats(q32, q8),
        "products": _cosine_stats(p32, p8),
        "top10_overlap": round(top_k_overlap(q32, p32, q8, p8), 4),
        "min_mean_cosine": agreement.min_mean_cosine,
        "min_p1_cosine": agreement.min_p1_cosine,
    }
    log.info("int8 agreement: %s", result)
    failed = [
        f"{side} {stat} cosine {result[side][stat]:.4f} < {limit}"
        for side in ("queries", "products")
        for stat, limit in (("mean", agreement.min_mean_cosine), ("p1", agreement.min_p1_cosine))
        if not result[side][stat] >= limit  # a NaN score (or limit) fails, never passes
    ]
    if failed:
        raise AisleError(
            "int8 towers disagree with fp32: " + "; ".join(failed) + ". Nothing was written; "
            "export without --int8 (fp32 ONNX is exact), or lower the thresholds "
            "(--min-mean-cosine / --min-p1-cosine) if you have measured that nDCG holds"
        )
    return result


__all__ = ["KEEP_FP32", "fp32_nodes", "measure_agreement", "quantize", "sample_texts",
           "top_k_overlap"]
