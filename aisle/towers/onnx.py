"""Towers on ONNX Runtime: the export `aisle export` writes, loaded for inference only.

The graph holds the transformer only (token states out); tokenisation, pooling and L2
normalisation happen here, written to match sentence-transformers exactly (same tokenizer
file, same truncation and padding, mask-aware pooling), so a pooling override in the tower
config needs no new export.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from aisle.artifacts import manifest_fingerprint
from aisle.errors import AisleError, ArtifactError
from aisle.retrieval.spelling import whole_words
from aisle.towers.calls import CallWorkers, split_threads
from aisle.towers.config import Backend, Pooling
from aisle.towers.positions import config_position_limit, fit_length

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
Precision = Literal["fp32", "int8"]


class InferenceOnly(AisleError):
    """Something asked an ONNX tower for torch weights (training, saving, untying)."""


def _inference_only() -> InferenceOnly:
    return InferenceOnly(
        "this tower runs on ONNX Runtime and has no torch weights; load the model with tower "
        "config backend=torch to train, untie or save it"
    )


# What `aisle export` names its files: sentence-transformers' ONNX backend loads FP32_FILE by
# default and the int8 one with model_kwargs={"file_name": INT8_FILE}.
FP32_FILE = "model.onnx"
INT8_FILE = "model_qint8.onnx"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TowerExport:
    """One exported tower as the model manifest records it."""

    dir: str  # relative to the model directory; the files below are relative to it
    files: Mapping[str, str]  # precision -> .onnx file
    tokenizer: str
    inputs: tuple[str, ...]
    pad_id: int
    do_lower_case: bool

    @classmethod
    def from_manifest(cls, raw: Mapping[str, Any]) -> TowerExport:
        return cls(
            # Exports from before "dir" kept every path relative to the model's onnx/.
            dir=str(raw.get("dir", ONNX_DIR)),
            files=dict(raw["files"]),
            tokenizer=str(raw["tokenizer"]),
            inputs=tuple(raw["inputs"]),
            pad_id=int(raw["pad_id"]),
            do_lower_case=bool(raw["do_lower_case"]),
        )


def pool(tokens: np.ndarray, mask: np.ndarray, pooling: Pooling) -> np.ndarray:
    """``(B, T, D)`` token states and ``(B, T)`` mask -> ``(B, D)`` unit vectors.

    As sentence-transformers' Pooling + Normalize: mean over unmasked tokens (count clamped at
    1e-9), cls = first unmasked token, max over unmasked tokens; then x / max(||x||, 1e-12).
    """
    m = mask.astype(tokens.dtype)[..., None]  # (B, T, 1)
    if pooling == "mean":
        out = (tokens * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    elif pooling == "cls":
        first = mask.argmax(axis=1)  # (B,)
        out = tokens[np.arange(len(tokens)), first]
    else:
        out = np.where(m > 0, tokens, -np.inf).max(axis=1)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norm, 1e-12)).astype(np.float32)


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1  # the graph is a chain; parallel branches do not exist
    # Idle worker threads sleep instead of spinning: spinning buys microseconds per op on an
    # idle machine but burns a core that a busy one (a training run, other requests) needs;
    # measured here under load, 2 spinning threads took 35% more CPU for no more throughput.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxTower:
    """``encode(texts) -> Tensor[B, D]``, L2-normalised: the ``Tower`` contract on ONNX Runtime."""

    def __init__(
        self,
        sess: Any,
        tokenizer_file: Path,
        export: TowerExport,
        pooling: Pooling,
        max_length: int,
        batch_size: int,
        source: str,
        workers: int = 1,
    ) -> None:
        from tokenizers import Tokenizer

        self.session = sess
        # Threads that share its calls (``aisle.towers.calls.split_threads``).
        self.workers = CallWorkers(workers)
        self.export = export
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.source = source  # the .onnx file: towers with the same file share weights
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # What sentence-transformers asks of the same tokenizer: longest_first truncation to
        # max_length, padding to the longest text in the batch.
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=export.pad_id)
        self._dim = int(sess.get_outputs()[0].shape[-1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def model(self) -> Any:
        raise _inference_only()

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        raise _inference_only()

    def vocabulary(self) -> frozenset[str]:
        """The words its tokenizer holds whole (folded), as ``Tower.vocabulary``."""
        return whole_words(self.tokenizer.get_vocab())

    def features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self.export.do_lower_case:
            texts = [t.lower() for t in texts]
        encodings = self.tokenizer.encode_batch(list(texts))
        arrays = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {name: np.asarray(arrays[name], dtype=np.int64) for name in self.export.inputs}

    def encode(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        """Inference, ``batch_size`` texts a call, batched by length like sentence-transformers
        (less padding per batch); an int8 tower's is 1 (``onnx_towers`` says why), its calls
        shared among its workers."""
        if len(texts) == 0:
            return torch.empty((0, self.dim))
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        bar = None
        if progress:  # not on the query path: even a disabled tqdm costs microseconds a call
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="encoding", unit="text")
        counted = threading.Lock()  # tqdm's update is not atomic across threads

        def run(rows: Sequence[int]) -> None:
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                feeds = self.features([texts[i] for i in batch])
                (tokens,) = self.session.run(None, feeds)  # (b, T, D)
                out[batch] = pool(tokens, feeds["attention_mask"], self.pooling)
                if bar is not None:
                    with counted:
                        bar.update(len(batch))

        try:
            self.workers.map_parts(run, order.tolist())
        finally:
            if bar is not None:
                bar.close()
        return torch.from_numpy(out)


def export_precisions(manifest: Mapping[str, Any]) -> set[str]:
    """The precisions every tower of a model manifest's ONNX export has."""
    towers = manifest.get("onnx", {}).get("towers", {})
    if not towers:
        return set()
    return set.intersection(*(set(t["files"]) for t in towers.values()))


def int8_recipe(section: Mapping[str, Any]) -> str:
    """Which int8 export a manifest's ``onnx`` section holds, as a short hash: two int8 exports
    of the same weights differ where their recipes do (the MatMuls kept in fp32, the quantiser's
    version, the opset), and so do their vectors (each agrees with fp32 to ~0.993-0.994 mean
    cosine, docs/results.md, 2026-12-05). The weights fingerprint cannot tell them apart; an
    index and a query cache must. The quantiser's settings (``aisle.towers.quantize.QUANTISER``)
    are part of it since 2026-12-06; an export made before records none and keeps its hash."""
    towers = section.get("towers", {})
    recipe = {
        "fp32_nodes": {name: towers[name].get("int8_fp32_nodes", []) for name in sorted(towers)},
        "onnxruntime": section.get("onnxruntime", ""),
        "opset": section.get("opset", ""),
        **({"options": section["int8_options"]} if "int8_options" in section else {}),
    }
    return manifest_fingerprint(recipe)[:8]


def resolve_backend(backend: Backend, manifest: Mapping[str, Any], where: str,
                    device: str = "cpu") -> Backend:
    """Pick torch or an ONNX precision; refuse an ONNX backend the model directory lacks.
    ``auto`` on a CUDA ``device`` is torch: the ONNX towers run on the CPU, and a GPU embeds a
    catalog far faster than int8 on the CPU does."""
    if backend == "auto" and device == "cuda":
        return "torch"
    have = export_precisions(manifest)
    stale = bool(have) and manifest["onnx"].get("weights_fingerprint") != manifest.get(
        "weights_fingerprint"
    )
    if stale:
        if backend != "auto":
            raise ArtifactError(
                f"{where}: the ONNX export was made from other weights than the model's; "
                f"run `aisle export --model {where}` again"
            )
        log.warning("%s: ignoring an ONNX export made from other weights; using torch", where)
        return "torch"
    if backend == "auto":
        return "onnx-int8" if "int8" in have else "onnx-fp32" if "fp32" in have else "torch"
    if backend != "torch" and backend.removeprefix("onnx-") not in have:
        flag = " --int8" if backend == "onnx-int8" else ""
        raise ArtifactError(
            f"{where} has no {backend} export; run `aisle export --model {where}{flag}` "
            "or set tower config backend=auto"
        )
    return backend


def onnx_towers(
    model_dir: Path,
    section: Mapping[str, Any],
    precision: Precision,
    pooling: Pooling,
    lengths: tuple[int, int],
    threads: tuple[int, int],
    batch_size: int,
    dirs: Mapping[str, Path] | None = None,
) -> tuple[OnnxTower, OnnxTower]:
    """(query, product) towers from a model directory and its manifest's ``onnx`` section;
    one session per file and thread count. ``dirs`` (tower name -> directory) reads each
    tower's files from there instead: an export checked before it is published."""
    names = ("shared", "shared") if "shared" in section["towers"] else ("query", "product")
    made: dict[tuple[str, int], Any] = {}
    query, product = (
        _tower(model_dir, section, name, precision, pooling, length, n_threads, batch_size,
               dirs, made)
        for name, length, n_threads in zip(names, lengths, threads, strict=True)
    )
    return query, product


def onnx_product_tower(
    model_dir: Path,
    section: Mapping[str, Any],
    precision: Precision,
    pooling: Pooling,
    length: int,
    threads: int,
    batch_size: int,
) -> OnnxTower:
    """The product tower alone, as ``onnx_towers`` builds it: for a model whose queries run
    on another tower (its static export), so no query session is built to be thrown away."""
    name = "shared" if "shared" in section["towers"] else "product"
    return _tower(model_dir, section, name, precision, pooling, length, threads, batch_size,
                  None, {})


def _tower(
    model_dir: Path,
    section: Mapping[str, Any],
    name: str,
    precision: Precision,
    pooling: Pooling,
    length: int,
    n_threads: int,
    batch_size: int,
    dirs: Mapping[str, Path] | None,
    made: dict[tuple[str, int], Any],
) -> OnnxTower:
    """Tower ``name`` of the export; ``made`` holds the sessions built so far, shared by
    towers that read one file with one thread count."""
    export = TowerExport.from_manifest(section["towers"][name])
    root = dirs[name] if dirs is not None else model_dir / export.dir
    path = root / export.files[precision]
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; run `aisle export` on {model_dir} again")
    # int8 runs one text a call (below), single-threaded, its calls shared among n_threads
    # workers (0: one per core; aisle.towers.calls says why); fp32 batches on n_threads.
    per_call = 1 if precision == "int8" else batch_size
    session_threads, workers = split_threads(per_call, n_threads)
    if (name, session_threads) not in made:
        made[(name, session_threads)] = session(path, session_threads)
    # int8 quantises each MatMul's activations with one scale per call (ONNX Runtime's
    # dynamic quantisation is per tensor): texts that share a call share a scale, and a
    # text's vector would depend on what else was encoded with it (measured on the demo's
    # towers, 2026-12-05: cosine 0.993 on average, 0.974 at worst, between a query encoded
    # alone and in a batch of 4, and 74% of test queries' hybrid top 10 reordered). So an
    # int8 tower encodes one text a call: a query's results never depend on the traffic
    # around it, nor a product's vector on how the catalog was batched, sharded or resumed.
    length = fit_length(length, config_position_limit(root), str(path))
    return OnnxTower(made[(name, session_threads)], root / export.tokenizer, export, pooling,
                     length, per_call, str(path), workers=workers)


__all__ = [
    "FP32_FILE", "INT8_FILE", "ONNX_DIR", "InferenceOnly", "OnnxTower", "pool", "resolve_backend"
]
