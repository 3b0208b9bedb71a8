"""Which MatMul the cross-encoder's int8 export loses most on: each left in fp32 in turn.

    python bench/rerank_int8.py --reranker runs/demo/reranker --data runs/demo/data

Reads the exported fp32 graph (``aisle rerank export``, or ``aisle rerank train``'s own export)
and quantises it with the export's own ``aisle.towers.quantize.quantize``: once with nothing
left in fp32, once as the export does (``KEEP_FP32``), and once with each of the first layer's
weight MatMuls left in fp32 alone (plus the whole first layer, and every layer's feed-forward
output). Each variant is scored on the export gate's own judged pairs (``CrossAgreement``'s
seeded queries): Pearson's r and the same-query pair order against fp32, as the gate reads
them, and the mean absolute logit difference. Time: ``--pairs`` pairs scored (an int8 graph
scores a pair a call, as the export's does), p50 of ``--repeats``, each variant's against the
nothing-in-fp32 graph measured in the same run (variants interleaved call by call, so machine
noise falls on all alike). A graph whose MatMuls torch.onnx did not name BERT-style has only
the first two rows.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from aisle.artifacts import read_manifest
from aisle.rerank.export import CrossAgreement, _judged_pairs, _pair_order
from aisle.rerank.model import KIND, OnnxCrossScorer
from aisle.towers.quantize import fp32_nodes, quantize

LAYER0 = re.compile(r"(^|/)layer\.0/")
FEED_FORWARD_OUT = re.compile(r"(^|/)layer\.\d+/output/dense/MatMul$")


def weight_matmuls(graph: onnx.GraphProto) -> list[str]:
    """Names of the graph's MatMuls and fused Attention nodes that hold a stored weight."""
    weights = {t.name for t in graph.initializer}
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Attention")
            and len(n.input) > 1 and n.input[1] in weights]


def variants(graph: onnx.GraphProto) -> dict[str, list[str]]:
    """Variant name -> the nodes it leaves in fp32."""
    nodes = weight_matmuls(graph)
    # torch.onnx names the first layer's nodes by module; its fused attention is Attention_0.
    first = [n for n in nodes if LAYER0.search(n) or n == "Attention_0"]
    out: dict[str, list[str]] = {"nothing": [], "the export's (KEEP_FP32)": fp32_nodes(graph)}
    out.update({f"layer 0: {n}": [n] for n in first})
    if first:
        out["all of layer 0"] = first
        out["every feed-forward output"] = [n for n in nodes if FEED_FORWARD_OUT.search(n)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reranker", type=Path, required=True, help="cross-encoder directory")
    parser.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    parser.add_argument("--pairs", type=int, default=50, help="pairs in one timed call")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per variant")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    manifest = read_manifest(args.reranker, KIND)
    section = manifest.get("onnx")
    if not section:
        raise SystemExit(f"{args.reranker} has no ONNX export: run aisle rerank export first")
    fp32 = args.reranker / section["dir"] / section["files"]["fp32"]

    def scorer(path: Path) -> OnnxCrossScorer:
        return OnnxCrossScorer.from_export(args.reranker, manifest, path, int8=path != fp32)

    agreement = CrossAgreement()
    pairs, groups = _judged_pairs(args.data, agreement)
    reference = scorer(fp32).score(pairs)
    timed = pairs[: args.pairs]
    graph = onnx.load(str(fp32), load_external_data=False).graph
    rows: dict[str, tuple[int, float, float, float]] = {}
    scorers: dict[str, OnnxCrossScorer] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, keep) in enumerate(variants(graph).items()):
            path = Path(tmp) / f"v{i}.onnx"
            quantize(fp32, path, keep)
            scorers[name] = scorer(path)
            got = scorers[name].score(pairs)
            order, _ = _pair_order(reference, got, groups, agreement.tie_margin)
            rows[name] = (len(keep), float(np.corrcoef(reference, got)[0, 1]), float(order),
                          float(np.abs(reference - got).mean()))
        times: dict[str, list[float]] = {name: [] for name in scorers}
        for _ in range(args.repeats + 1):  # the first round warms each session up
            for name, s in scorers.items():
                started = time.perf_counter()
                s.score(timed)
                times[name].append((time.perf_counter() - started) * 1000)
    p50 = {name: float(np.median(t[1:])) for name, t in times.items()}
    print(f"{len(pairs)} judged pairs of {agreement.queries} queries (the export gate's); "
          f"time: {len(timed)} pairs, p50 of {args.repeats}")
    print("| left in fp32 | nodes | Pearson to fp32 | pair order | mean abs diff | p50 ms "
          "| time / nothing |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (n, pearson, order, mad) in rows.items():
        print(f"| {name} | {n} | {pearson:.4f} | {order:.4f} | {mad:.4f} | {p50[name]:.1f} | "
              f"{p50[name] / p50['nothing']:.2f}x |")
    print(f"gate: Pearson >= {agreement.min_pearson}, pair order >= {agreement.min_pair_order}")


if __name__ == "__main__":
    main()
