"""One tower: a sentence-transformers encoder that maps texts to L2-normalised vectors."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import modules as models

from aisle.errors import ArtifactError
from aisle.retrieval.spelling import whole_words
from aisle.towers.config import Device, Pooling
from aisle.towers.positions import fit_length

log = logging.getLogger(__name__)


def resolve_device(device: Device) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        log.warning("device=cuda requested but no CUDA device is visible; using cpu")
        return "cpu"
    return device


def embedding_dim(model: SentenceTransformer) -> int:
    return int(model.get_embedding_dimension() or 0)


def load_sentence_transformer(path: Path, pooling: Pooling, device: str) -> SentenceTransformer:
    """Load any sentence-transformers model directory offline, with the requested pooling."""
    path = Path(path)
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ArtifactError(
            f"{path} is not a sentence-transformers model directory (no modules.json or "
            "config.json); pass a model saved by `aisle train` or a sentence-transformers save"
        )
    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as e:  # no weights file, a config of no known model type
        raise ArtifactError(f"{path} is not a usable sentence-transformers model directory "
                            f"({e}); pass a model saved by `aisle train` or a "
                            "sentence-transformers save") from e
    # transformers loads weights in the dtype they were saved in: a bf16 or fp16 model would
    # run (and train) in half precision, its vectors off unit length by up to ~2e-3 and its
    # ONNX export refused. The towers compute in fp32 (training adds bf16 autocast on CUDA).
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        model.float()
    if model.default_prompt_name is not None:
        # sentence-transformers' encode would prepend it, where training (preprocess) and the
        # ONNX towers do not: one text would get two vectors. The towers read texts bare.
        log.warning("%s: its default prompt %r (%r) is not used; aisle's towers read texts "
                    "bare, in training and search alike", path, model.default_prompt_name,
                    model.prompts.get(model.default_prompt_name))
        model.default_prompt_name = None
    return with_pooling(model, pooling)


def with_pooling(model: SentenceTransformer, pooling: Pooling) -> SentenceTransformer:
    """``model`` with its (first top-level) Pooling module pooling as asked."""
    for i, module in enumerate(model):
        if isinstance(module, models.Pooling):
            if module.get_config_dict().get("pooling_mode") != pooling:
                model[i] = models.Pooling(embedding_dim(model), pooling_mode=pooling)
            break
    return model


def position_limit(model: SentenceTransformer) -> int | None:
    """How many tokens ``model`` reads: its learned position table, less the slots a
    RoBERTa-style table keeps up to its padding index (514 rows read 512 tokens). None for a
    model with no learned table (rotary or relative positions)."""
    for module in model.modules():
        table = getattr(module, "position_embeddings", None)
        if isinstance(table, torch.nn.Embedding):
            pad = table.padding_idx
            return int(table.num_embeddings) - (pad + 1 if pad is not None else 0)
    return None


class Tower:
    """``encode(texts) -> Tensor[B, D]``, L2-normalised. One contract for both sides."""

    def __init__(self, model: SentenceTransformer, max_length: int, batch_size: int) -> None:
        self.model = model
        self.max_length = fit_length(max_length, position_limit(model), "torch tower")
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return embedding_dim(self.model)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def source(self) -> object:
        """What holds the weights: two towers with the same source share them."""
        return self.model

    def vocabulary(self) -> frozenset[str]:
        """The words its tokenizer holds whole (folded): what it reads without guessing."""
        return whole_words(self.model.tokenizer.get_vocab())

    def encode(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        """Inference: no gradients, batched, returns float32 on CPU."""
        if len(texts) == 0:
            return torch.empty((0, self.dim))
        self.model.max_seq_length = self.max_length
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=progress,
        )
        return out.float().cpu()

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Training: differentiable embeddings ``(B, D)``, L2-normalised."""
        self.model.max_seq_length = self.max_length
        features = self.model.preprocess(list(texts))
        features = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in features.items()}
        emb = self.model(features)["sentence_embedding"]
        return F.normalize(emb, dim=-1)
