"""A trained cross-encoder directory, loaded to score (query, product) pairs.

The directory is what ``sentence_transformers.CrossEncoder.save`` writes (so
``CrossEncoder(path)`` loads it as it is), plus ``manifest.json`` (kind ``aisle-reranker``:
base, data fingerprints, config, dev metrics and the ``RerankConfig`` chosen on dev) and, once
exported, ``onnx/model.onnx`` and ``onnx/model_qint8.onnx`` with ``onnx/tokenizer.json``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aisle.artifacts import read_manifest
from aisle.configs import from_dict
from aisle.errors import AisleError, ArtifactError
from aisle.rerank.config import RERANK_BACKENDS, RerankBackend
from aisle.retrieval.rerank import CrossScorer, RerankConfig

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)

KIND = "aisle-reranker"
# Pairs per forward pass: one query's 50 candidates fit one.
BATCH = 64


class TorchCrossScorer:
    """A sentence-transformers ``CrossEncoder`` on torch; scores are its raw logits."""

    def __init__(self, model: CrossEncoder) -> None:
        """A scorer over a ``CrossEncoder`` in memory (training's, between its steps: shared,
        not copied); it must score raw logits (``activation_fn`` the identity)."""
        self.model = model

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> TorchCrossScorer:
        import torch
        from sentence_transformers import CrossEncoder

        try:
            model = CrossEncoder(str(path), device=device, activation_fn=torch.nn.Identity(),
                                 local_files_only=True)
        except Exception as e:  # transformers and safetensors raise their own types
            raise ArtifactError(f"{path} is not a usable cross-encoder ({type(e).__name__}: "
                                f"{e}); train it again (aisle rerank train)") from e
        # Without its tokenizer files transformers builds a tokenizer of a few special tokens,
        # and every word scores as [UNK]: the scores would depend on the texts' lengths alone.
        known, table = len(model.tokenizer), int(getattr(model.config, "vocab_size", 0) or 0)
        if known < table // 2:
            raise ArtifactError(
                f"{path}: its tokenizer knows {known} tokens, its model {table}: the tokenizer "
                "files (tokenizer.json, vocab.txt) are missing or damaged; train it again "
                "(aisle rerank train)")
        model.eval()
        return cls(model)

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        # Dropout off: a model shared with training comes back in train mode from each step.
        self.model.eval()
        out = self.model.predict(list(pairs), batch_size=BATCH, show_progress_bar=False,
                                 convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32).reshape(-1)


class OnnxCrossScorer:
    """The exported graph on ONNX Runtime, tokenised as sentence-transformers does: the same
    tokenizer file, pairs truncated longest-first to ``max_length``, ``per_call`` pairs a call
    padded to the longest of them.

    An int8 graph scores one pair a call (``int8_per_call``): ONNX Runtime's dynamic int8
    quantises each MatMul's activations with one scale per call, so a pair's score would depend
    on the pairs scored beside it, as the towers' vectors did (``aisle.towers.onnx``). Those
    calls run single-threaded on ``threads`` workers (0: one per core; ``aisle.towers.calls``
    says why), a query's pairs split among them; a pair's score is the same on any worker."""

    def __init__(self, onnx_file: Path, tokenizer_file: Path, max_length: int, pad_id: int,
                 inputs: Sequence[str], threads: int = 0, per_call: int = BATCH) -> None:
        from tokenizers import Tokenizer

        from aisle.towers.calls import CallWorkers, split_threads
        from aisle.towers.onnx import session

        if per_call < 1 or threads < 0:
            raise AisleError(f"per_call must be >= 1 and threads >= 0, got {per_call} and "
                             f"{threads}")
        self.per_call = per_call
        session_threads, workers = split_threads(per_call, threads)
        self.workers = CallWorkers(workers)
        self.session = session(onnx_file, session_threads)
        self.inputs = tuple(inputs)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=pad_id)

    @classmethod
    def from_export(cls, path: Path, manifest: dict[str, Any], onnx_file: Path, int8: bool,
                    per_call: int | None = None, threads: int = 0) -> OnnxCrossScorer:
        """``onnx_file`` (one of the directory ``path``'s exported graphs, or a graph made from
        them) run with the export's tokenizer, length, padding and inputs (``manifest``); an
        ``int8`` graph one pair a call unless ``per_call`` says otherwise (benchmarks)."""
        section = manifest["onnx"]
        return cls(onnx_file, path / section["dir"] / section["tokenizer"],
                   int(manifest["max_length"]), int(section["pad_id"]), section["inputs"],
                   threads=threads, per_call=int8_per_call(int8) if per_call is None else per_call)

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if self.per_call == 1:
            return self._score_each([self.tokenizer.encode(q, p) for q, p in pairs])
        out = []
        for start in range(0, len(pairs), self.per_call):
            chunk = pairs[start : start + self.per_call]
            out.append(self._run(self.tokenizer.encode_batch([(q, p) for q, p in chunk])))
        return np.concatenate(out)

    def _run(self, enc: Sequence[Any]) -> np.ndarray:
        """One call over ``enc`` (tokenised pairs of one length, or padded to one)."""
        feeds = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        (logits,) = self.session.run(None, {n: feeds[n] for n in self.inputs})
        return np.asarray(logits, dtype=np.float32).reshape(-1)

    def _score_each(self, enc: list[Any]) -> np.ndarray:
        """A call a pair, the pairs split in order across the workers."""
        def run_each(part: Sequence[Any]) -> np.ndarray:
            return np.concatenate([self._run([e]) for e in part])

        return np.concatenate(self.workers.map_parts(run_each, enc))


def int8_per_call(int8: bool) -> int:
    """Pairs an ONNX graph scores a call: one for int8 (the class says why), else ``BATCH``."""
    return 1 if int8 else BATCH


@dataclass(frozen=True)
class Reranker:
    """A loaded cross-encoder: its scorer, the stage settings chosen on dev, its manifest."""

    scorer: CrossScorer
    config: RerankConfig
    manifest: dict[str, Any]
    path: Path
    backend: str
    # Held while one query's pairs are scored (``RerankStage.turn``); copies made by
    # ``dataclasses.replace`` share it, as they share the scorer.
    turn: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


def resolve_backend(manifest: dict[str, Any], backend: RerankBackend, device: str | None
                    ) -> str:
    """auto: int8 ONNX when the directory holds a checked int8 export and the device is not a
    GPU; torch otherwise."""
    if backend not in RERANK_BACKENDS:
        raise AisleError(f"rerank backend {backend!r} is unknown; use one of {RERANK_BACKENDS}")
    files = manifest.get("onnx", {}).get("files", {})
    if backend == "auto":
        on_gpu = device is not None and device.startswith("cuda")
        return "onnx-int8" if "int8" in files and not on_gpu else "torch"
    if backend.startswith("onnx-") and backend.removeprefix("onnx-") not in files:
        raise AisleError(f"this cross-encoder has no {backend} export; run aisle rerank export"
                         f"{' --int8' if backend == 'onnx-int8' else ''} on it, or use torch")
    return backend


def load_reranker(path: Path, backend: RerankBackend = "auto", device: str | None = None,
                  config: RerankConfig | None = None, threads: int = 0,
                  weight: float | None = None) -> Reranker:
    """The cross-encoder at ``path``; ``config`` overrides the stage settings it stores, and
    ``weight`` its fusion weight alone (the one chosen on dev when it was trained).
    ``threads``: what an ONNX backend scores on (0: one per core; torch keeps its own)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such cross-encoder directory (aisle rerank train "
                            "writes one)")
    manifest = read_manifest(path, KIND)
    chosen = resolve_backend(manifest, backend, device)
    stored = config or from_dict(RerankConfig, manifest.get("rerank", {}))
    if weight is not None:
        stored = replace(stored, weight=weight)
    scorer: CrossScorer
    if chosen == "torch":
        scorer = TorchCrossScorer.load(path, device)
    else:
        onnx = manifest["onnx"]
        root = path / "onnx"  # what the manifest names, once it is read
        try:  # (a manifest without the export's "dir" is a corrupt export too)
            root = path / onnx["dir"]
            precision = chosen.removeprefix("onnx-")
            scorer = OnnxCrossScorer.from_export(path, manifest, root / onnx["files"][precision],
                                                 int8=precision == "int8", threads=threads)
        except Exception as e:  # onnxruntime raises its own types for an unreadable graph
            raise ArtifactError(f"{root} holds a missing or corrupt ONNX export ({e}); run "
                                "aisle rerank export again") from e
    log.info("loaded cross-encoder %s on %s (depth %d, weight %.2f)", path, chosen,
             stored.depth, stored.weight)
    if stored.weight == 0:
        log.warning("cross-encoder %s has weight 0 (on dev it did not beat the first stage): "
                    "searches keep the first stage's order and score nothing; set a weight "
                    "(aisle search or evaluate --rerank-weight) to re-rank with it anyway", path)
    return Reranker(scorer, stored, manifest, path, chosen)
