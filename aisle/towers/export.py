"""``aisle export``: write ONNX (fp32, optionally dynamic int8) towers into a model directory.

Each tower's transformer is exported with the TorchScript exporter, its attention, GELU and
layer norms fused by onnxruntime's transformer optimizer (BERT family), and, with ``int8``,
its weights quantised per output channel (dynamic int8; activations quantised at run time).
Nothing is assumed: the fp32 graph must reproduce torch, and int8 must agree with fp32 on a
sample of the data's real queries and products, or the export is refused and nothing is
written. The model's fingerprint does not change: the export is another runtime for the same
weights, recorded under ``onnx`` in the model manifest.

Each tower's files go to ``onnx/`` inside its transformer's directory (towers/layout.py):
``model.onnx`` and ``model_qint8.onnx`` beside a ``tokenizer.json``, where
sentence-transformers' ONNX backend finds them (``backend="onnx"``; the int8 file with
``model_kwargs={"file_name": "model_qint8.onnx"}``). The graph's output is named
``last_hidden_state``, the name optimum's feature-extraction models read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aisle.artifacts import (
    MANIFEST,
    atomic_dir,
    atomic_write_text,
    read_manifest,
    write_manifest,
)
from aisle.errors import AisleError, ArtifactError
from aisle.towers.config import TowerConfig, pooling_of
from aisle.towers.layout import LAYOUT, export_dirs, save_towers
from aisle.towers.model import (
    BASE_MODEL,
    KIND,
    TwoTowerModel,
    load_model,
    own_config,
    resolve_model_ref,
    write_card,
)
from aisle.towers.onnx import FP32_FILE, INT8_FILE, ONNX_DIR, TOKENIZER_FILE, onnx_towers

log = logging.getLogger(__name__)

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Texts the fp32 graph must reproduce torch on: empty, whitespace, unicode, over-long.
PARITY_TEXTS = [
    "",
    "   ",
    "cordless drill",
    "Ünïcödé ß 電動ドリル 🔨 ∑",
    "3/4 in. x 10 ft. PVC pipe, schedule-40 (white)",
    "tile saw " * 200,
]


@dataclass(frozen=True)
class Agreement:
    """How close int8 must stay to fp32, per text (cosine of the two unit vectors).

    Per-channel dynamic int8 of all-MiniLM-L6-v2 gives a mean of 0.992 and a 1st percentile of
    0.987 on homedepot queries and titles. Per-tensor
    int8 of the same model gives 0.956 and reorders a fifth of each top 10: the mean threshold
    sits between the two. The 1st-percentile threshold catches a tail of texts that
    quantisation wrecks (outlier activations) while the mean still looks fine.
    """

    min_mean_cosine: float = 0.99
    min_p1_cosine: float = 0.97
    queries: int = 500
    products: int = 1000
    seed: int = 0


def export_model(
    model: str | Path | None,
    out: Path | None = None,
    int8: bool = False,
    data: Path | None = None,
    agreement: Agreement | None = None,
) -> Path:
    """Export ``model``'s towers into its directory, or into a copy of it at ``out``.

    ``out`` is required for the built-in base model or a plain sentence-transformers directory
    (they are not aisle model directories); the copy keeps the source's fingerprint.
    """
    agreement = agreement or Agreement()
    if int8 and data is None:
        raise AisleError(
            "--int8 needs --data: int8 is checked against fp32 on real queries and products "
            "of the data the model serves, e.g. --data ../shared/data/homedepot"
        )
    src = resolve_model_ref(model)
    ref = model if model not in (None, "", BASE_MODEL) else None
    if not src.is_dir():
        raise ArtifactError(f"{src}: no such model directory")
    is_aisle = (src / MANIFEST).is_file()
    if out is None:
        if not is_aisle:
            raise AisleError(
                f"{model or BASE_MODEL} is not an aisle model directory; pass --out DIR to "
                "save a copy of it with its ONNX export"
            )
        manifest = read_manifest(src, KIND)
        if "weights_fingerprint" not in manifest:
            raise ArtifactError(f"{src}: the manifest records no weights_fingerprint; re-save it")
        targets = export_dirs(src, manifest)
        # Each tower's folder is published whole once every tower has passed its checks.
        with contextlib.ExitStack() as stack:
            dirs = {n: stack.enter_context(atomic_dir(src / t, None)) for n, t in targets.items()}
            section = _build(ref, manifest, targets, dirs, int8, data, agreement)
        # The manifest as it is now: what was published beside the export meanwhile (a static
        # query tower) stays. An export of weights saved over since is stale, and so ignored.
        current = read_manifest(src, KIND)
        body = json.dumps({**current, "onnx": section}, indent=2, sort_keys=True) + "\n"
        atomic_write_text(src / MANIFEST, body)
        write_card(src)
        return src
    with atomic_dir(Path(out), KIND) as tmp:
        manifest = _copy_model(ref, src, is_aisle, tmp)
        targets = export_dirs(tmp, manifest)
        dirs = {name: tmp / target for name, target in targets.items()}
        for d in dirs.values():
            d.mkdir(parents=True)
        section = _build(ref, manifest, targets, dirs, int8, data, agreement)
        write_manifest(tmp, {**manifest, "onnx": section})
        write_card(tmp)
    return Path(out)


def _copy_model(ref: str | Path | None, src: Path, is_aisle: bool, tmp: Path) -> dict[str, Any]:
    """Write the source's weights into ``tmp``; the manifest it will get (same fingerprint).

    An aisle directory is copied as it is. A plain sentence-transformers directory is saved
    as aisle saves a model (towers/layout.py), so that sentence-transformers reads the copy as
    aisle's towers do (a hub download's max length is often 256 or 512, where aisle cuts
    products at 128), and keeps the fingerprint ``load_model`` gives the source (files of its
    own such as a hub download's ``onnx/`` included): an index built with the source serves
    with the copy."""
    model = load_model(ref, _torch_config(ref))
    if is_aisle:
        ignore = shutil.ignore_patterns("__pycache__", ONNX_DIR, MANIFEST)
        shutil.copytree(src, tmp, ignore=ignore, dirs_exist_ok=True)
        return {k: v for k, v in read_manifest(src, KIND).items() if k != "onnx"}
    cfg = model.config
    save_towers(tmp, model.query.model, None if model.shared else model.product.model,
                (cfg.max_query_length, cfg.max_product_length))
    return {
        "kind": KIND,
        "layout": LAYOUT,
        "towers": "shared" if model.shared else "untied",
        "dim": model.dim,
        "tower_config": asdict(_saved_config(ref)),
        "weights_fingerprint": model.weights_fingerprint,
        "base_model": str(ref or BASE_MODEL),
        "fingerprint": model.fingerprint,
    }


def _saved_config(ref: str | Path | None) -> TowerConfig:
    """The model's own config, as load_model reads it (a plain directory keeps its pooling)."""
    src = resolve_model_ref(ref)
    return own_config(src, read_manifest(src, KIND) if (src / MANIFEST).is_file() else {})


def _torch_config(ref: str | Path | None) -> TowerConfig:
    """The model's own config, on torch and the CPU (where the export runs)."""
    return replace(_saved_config(ref), backend="torch", device="cpu", query_tower="transformer")


def _build(
    ref: str | Path | None,
    manifest: Mapping[str, Any],
    targets: Mapping[str, str],
    dirs: Mapping[str, Path],
    int8: bool,
    data: Path | None,
    agreement: Agreement,
) -> dict[str, Any]:
    """Export, check and (with ``int8``) quantise each tower into ``dirs[tower]``, a folder
    to be published at ``targets[tower]`` (relative to the model directory): the manifest's
    ``onnx`` section."""
    import onnxruntime

    model = load_model(ref, _torch_config(ref))
    sts = {"shared": model.query.model} if model.shared else {
        "query": model.query.model, "product": model.product.model
    }
    if set(sts) != set(targets):
        raise ArtifactError(f"{ref}: its towers {sorted(sts)} do not match its files; re-save it")
    towers = {name: {"dir": targets[name], **export_tower(st, dirs[name], name)}
              for name, st in sts.items()}
    section: dict[str, Any] = {
        "towers": towers,
        "weights_fingerprint": manifest["weights_fingerprint"],
        "opset": OPSET,
        "onnxruntime": onnxruntime.__version__,
    }
    fp32 = _onnx_model(model, section, dirs, "fp32")
    section["fp32_max_abs_diff"] = _check_parity(model, fp32)
    if int8:
        from aisle.towers.quantize import QUANTISER, measure_agreement, quantize

        section["int8_options"] = dict(QUANTISER)
        for name, entry in towers.items():
            entry["int8_fp32_nodes"] = quantize(dirs[name] / FP32_FILE, dirs[name] / INT8_FILE)
            entry["files"]["int8"] = INT8_FILE
        int8_model = _onnx_model(model, section, dirs, "int8")
        assert data is not None
        section["int8_agreement"] = measure_agreement(fp32, int8_model, data, agreement)
    log.info("exported %s towers to %s", "/".join(towers), ", ".join(targets.values()))
    return section


def export_tower(st: Any, out: Path, name: str) -> dict[str, Any]:
    """One sentence-transformers model's transformer -> ``out/model.onnx`` + its tokenizer;
    the tower's entry in the manifest's ``onnx`` section (paths relative to ``out``)."""
    from sentence_transformers.sentence_transformer import modules as models

    kinds = [type(m) for m in st]
    if kinds[:2] != [models.Transformer, models.Pooling] or any(
        k is not models.Normalize for k in kinds[2:]
    ):
        raise AisleError(
            f"export supports Transformer + Pooling [+ Normalize] models; this {name} tower "
            f"has {[k.__name__ for k in kinds]}"
        )
    transformer = st[0]
    hf = transformer.auto_model.eval()
    # Eager attention traces to the MatMul/Softmax pattern the optimizer fuses into Attention.
    hf.set_attn_implementation("eager")
    example = st.preprocess(["a padded example text of several words", "short"])
    inputs = [n for n in INPUTS if n in example]
    wrapper = HFOutput(hf, inputs)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter from the exporter
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            wrapper,
            tuple(example[n] for n in inputs),
            str(raw),
            input_names=inputs,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*inputs, "last_hidden_state"]},
            opset_version=OPSET,
            dynamo=False,
        )
        optimize_graph(raw, out / FP32_FILE, hf.config)
    tokenizer = transformer.tokenizer
    tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))
    return {
        "files": {"fp32": FP32_FILE},
        "tokenizer": TOKENIZER_FILE,
        "inputs": inputs,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "do_lower_case": bool(getattr(transformer, "do_lower_case", False)),
    }


class HFOutput(torch.nn.Module):
    """A Hugging Face model called with positional ``inputs`` (what the exporter traces),
    returning its ``output`` field: token states for a tower, logits for a cross-encoder."""

    def __init__(self, hf: Any, inputs: list[str], output: str = "last_hidden_state") -> None:
        super().__init__()
        self.hf = hf
        self.inputs = inputs
        self.output = output

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.hf(**dict(zip(self.inputs, tensors, strict=True)))
        return getattr(out, self.output)


def optimize_graph(raw: Path, out: Path, config: Any) -> None:
    """Fuse BERT-family graphs (attention, GELU, layer norms); copy other graphs as they are.

    opt_level=0: Python-side fusions only, so the file stays portable across CPUs.
    """
    if getattr(config, "model_type", "") != "bert":
        shutil.copyfile(raw, out)
        return
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=0,
    )
    fused.save_model_to_file(str(out))


def _onnx_model(
    model: TwoTowerModel, section: Mapping[str, Any], dirs: Mapping[str, Path], precision: str
) -> TwoTowerModel:
    cfg = model.config
    query, product = onnx_towers(
        Path(),
        section,
        "int8" if precision == "int8" else "fp32",
        pooling_of(cfg),
        (cfg.max_query_length, cfg.max_product_length),
        (0, 0),
        cfg.batch_size,
        dirs,
    )
    return TwoTowerModel(query, product, cfg, model.ref, model._weights_fingerprint,
                         backend=f"onnx-{precision}")  # type: ignore[arg-type]


def _check_parity(
    torch_model: TwoTowerModel, onnx_model: TwoTowerModel, atol: float = 1e-4
) -> float:
    """The fp32 graph must give torch's vectors: the largest element difference, checked."""
    worst = 0.0
    for side in ("query", "product"):
        a = getattr(torch_model, side).encode(PARITY_TEXTS)
        b = getattr(onnx_model, side).encode(PARITY_TEXTS)
        diff = float((a - b).abs().max())
        worst = diff if not np.isfinite(diff) else max(worst, diff)  # max() would drop a nan
        if not np.isfinite(worst):
            break
    if not np.isfinite(worst) or worst > atol:
        raise ArtifactError(
            f"the fp32 ONNX towers differ from torch by up to {worst:.2e} (> {atol}); the "
            "export is wrong for this model, nothing was written"
        )
    return worst


__all__ = ["Agreement", "HFOutput", "export_model", "export_tower", "optimize_graph"]
