"""``aisle rerank export``: the cross-encoder as ONNX (fp32, and dynamic int8), checked.

The graph is the classifier (token ids in, one logit out), exported and fused as the towers
are (towers/export.py); int8 quantises its weight MatMuls per output channel, all but the
first layer's feed-forward output (towers/quantize.py says why). Nothing is assumed: the fp32
graph must reproduce torch's logits, and int8's logits must agree with fp32's on a seeded
sample of the data's judged (query, product) pairs, or the export is refused and nothing is
written. Files go to ``onnx/`` (``model.onnx``, ``model_qint8.onnx``, ``tokenizer.json``),
where sentence-transformers' ONNX backend also looks for them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aisle.artifacts import MANIFEST, atomic_dir, atomic_write_text, read_manifest
from aisle.errors import AisleError, ArtifactError
from aisle.rerank.model import KIND, OnnxCrossScorer, TorchCrossScorer, int8_per_call
from aisle.towers.export import OPSET, PARITY_TEXTS, HFOutput, optimize_graph
from aisle.towers.onnx import FP32_FILE, INT8_FILE, ONNX_DIR, TOKENIZER_FILE

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class CrossAgreement:
    """How close int8 logits must stay to fp32's over the judged products of sampled queries.

    A cross-encoder's logit orders one query's candidates; what must survive quantisation is
    that order. Pearson's r over all pairs checks the scale; the share of same-query product
    pairs that keep their order checks the ranking, counting only pairs fp32 tells apart by at
    least ``tie_margin``: near-ties swap under any perturbation and barely move a ranking. On
    homedepot's cross-encoder (2026-12-04, mean |int8 - fp32| 0.08 logits, logits 1st-99th
    percentile -2.8..2.1) all 107 pairs that int8 swapped were within 0.25 of each other;
    99.3% of pairs 0.25 apart and all 0.5 apart kept their order.
    """

    min_pearson: float = 0.99
    min_pair_order: float = 0.95
    tie_margin: float = 0.25
    queries: int = 400
    seed: int = 0


def _judged_pairs(data: Path, agreement: CrossAgreement
                  ) -> tuple[list[tuple[str, str]], list[str]]:
    """Every judged pair of a seeded sample of the data's queries, as the cross-encoder reads
    them, and each pair's query id."""
    from aisle.data.dataset import load_dataset
    from aisle.rerank.train import catalog_texts

    ds = load_dataset(Path(data))
    text_of = catalog_texts(ds)
    query_of = ds.query_texts()
    j = ds.judgments
    if j.empty:
        raise AisleError(f"{data} has no judgments to check the int8 export on")
    judged = np.sort(j["query_id"].astype(str).unique())
    picked = set(np.random.default_rng(agreement.seed).choice(
        judged, min(agreement.queries, len(judged)), replace=False).tolist())
    rows = j[j["query_id"].astype(str).isin(picked)]
    qids = rows["query_id"].astype(str).tolist()
    pairs = [(str(query_of[q]), text_of[str(p)]) for q, p in zip(qids, rows["product_id"],
                                                                  strict=True)]
    return pairs, qids


def _pair_order(a: np.ndarray, b: np.ndarray, groups: list[str], margin: float = 0.0
                ) -> tuple[float, int]:
    """The share of same-group pairs (i, j) that ``a`` and ``b`` order alike, among those
    ``a`` scores at least ``margin`` apart (1.0 if none), and how many those are."""
    agree = total = 0
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    for idx in by.values():
        for x in range(len(idx)):
            for y in range(x + 1, len(idx)):
                i, k = idx[x], idx[y]
                if abs(a[i] - a[k]) < margin:
                    continue
                total += 1
                agree += np.sign(a[i] - a[k]) == np.sign(b[i] - b[k])
    return (agree / total if total else 1.0), total


def export_reranker(path: Path, int8: bool = False, data: Path | None = None,
                    agreement: CrossAgreement | None = None) -> dict[str, Any]:
    """Export the cross-encoder at ``path`` into ``path/onnx``; the manifest's ``onnx``
    section, also written into its manifest."""
    from aisle.towers.quantize import quantize

    agreement = agreement or CrossAgreement()
    if int8 and data is None:
        raise AisleError("--int8 needs --data: int8 is checked against fp32 on the data's "
                         "judged pairs, e.g. --data ../shared/data/homedepot")
    path = Path(path)
    manifest = read_manifest(path, KIND)
    reference = TorchCrossScorer.load(path, "cpu")
    ce: Any = reference.model  # its modules are typed loosely by sentence-transformers
    hf = ce[0].auto_model.eval()
    hf.set_attn_implementation("eager")  # traces to the pattern the optimizer fuses
    example = ce.preprocess([("a query of words", "a padded product title of several words"),
                             ("short", "one")])
    inputs = [n for n in INPUTS if n in example]
    section: dict[str, Any] = {"dir": ONNX_DIR, "files": {"fp32": FP32_FILE},
                               "tokenizer": TOKENIZER_FILE, "inputs": inputs,
                               "pad_id": int(ce.tokenizer.pad_token_id or 0), "opset": OPSET}
    with atomic_dir(path / ONNX_DIR, None) as out:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = Path(tmp) / "raw.onnx"
            torch.onnx.export(
                HFOutput(hf, inputs, "logits"), tuple(example[n] for n in inputs), str(raw),
                input_names=inputs, output_names=["logits"],
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in inputs},
                              "logits": {0: "batch"}},
                opset_version=OPSET, dynamo=False)
            optimize_graph(raw, out / FP32_FILE, hf.config)
        ce.tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))
        max_length = int(manifest["max_length"])

        def scorer(file: str) -> OnnxCrossScorer:
            return OnnxCrossScorer(out / file, out / TOKENIZER_FILE, max_length,
                                   section["pad_id"], inputs,
                                   per_call=int8_per_call(file == INT8_FILE))

        parity = [(q, p) for q in PARITY_TEXTS for p in ("cordless drill", PARITY_TEXTS[-1])]
        worst = float(np.abs(reference.score(parity) - scorer(FP32_FILE).score(parity)).max())
        if not np.isfinite(worst) or worst > 1e-3:
            raise ArtifactError(f"the fp32 ONNX cross-encoder differs from torch by up to "
                                f"{worst:.2e} (> 1e-3); nothing was written")
        section["fp32_max_abs_diff"] = worst
        if int8:
            assert data is not None
            section["int8_fp32_nodes"] = quantize(out / FP32_FILE, out / INT8_FILE)
            pairs, groups = _judged_pairs(data, agreement)
            fp32 = scorer(FP32_FILE).score(pairs)
            q8 = scorer(INT8_FILE).score(pairs)
            pearson = round(float(np.corrcoef(fp32, q8)[0, 1]), 5)
            order, counted = _pair_order(fp32, q8, groups, agreement.tie_margin)
            order = round(float(order), 5)
            measured = {
                "pearson": pearson,
                "pair_order": order,
                "ordered_pairs": counted,
                "pair_order_all": round(float(_pair_order(fp32, q8, groups)[0]), 5),
                "mean_abs_diff": round(float(np.abs(fp32 - q8).mean()), 5),
                "pairs": len(pairs),
                "thresholds": asdict(agreement),
            }
            if not pearson >= agreement.min_pearson or not order >= agreement.min_pair_order:
                raise ArtifactError(f"int8 disagrees with fp32 ({measured}); nothing was "
                                    "written: the cross-encoder keeps the export it had, "
                                    "or torch if it had none")
            section["files"]["int8"] = INT8_FILE
            section["int8_agreement"] = measured
    with contextlib.suppress(KeyError):
        del manifest["onnx"]
    body = json.dumps({**manifest, "onnx": section}, indent=2, sort_keys=True) + "\n"
    atomic_write_text(path / MANIFEST, body)
    log.info("exported the cross-encoder to %s (%s)", path / ONNX_DIR,
             "/".join(section["files"]))
    return section
