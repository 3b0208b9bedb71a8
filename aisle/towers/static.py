"""A static query tower: the mean of one learnt vector per word piece, then unit length.

It stands in for a model's transformer query tower where a query must be cheap (#24's cold
path): one tokenizer call and a mean of table rows, about 0.03 ms of CPU a query here against
about 1.2 ms for the int8 MiniLM tower (bench/static_query.py). `aisle static-query`
learns it from the model's own query tower (aisle/training/static.py) and writes it to
``static_query-<hash of its table>/`` in the model directory (the manifest's section names
it) as a plain sentence-transformers model (``StaticEmbedding`` then ``Normalize``:
``SentenceTransformer(model_dir / <that folder>)`` encodes queries as this class does, for any
text with a word piece). The product tower, and so
the index's vectors, are not touched: an index built with the model serves with either tower.

Like an ONNX export, it is another runtime for the model's query side, recorded under
``static_query`` in the model manifest; the query caches key on it (``query_runtime``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aisle.artifacts import manifest_fingerprint
from aisle.errors import AisleError, ArtifactError
from aisle.retrieval.spelling import whole_words
from aisle.towers.config import QueryTower

STATIC_DIR = "static_query"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_KEY = "embedding.weight"  # StaticEmbedding's state dict
TOKENIZER_FILE = "tokenizer.json"


class StaticOnly(AisleError):
    """Something asked a static tower for transformer weights (training, saving, untying)."""


def _static_only() -> StaticOnly:
    return StaticOnly("this query tower is a static export with no transformer weights; load "
                      "the model with query_tower=transformer to train, untie or save it")


def static_section(manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The manifest's ``static_query`` section when it was learnt from the model's current
    weights; None where there is none or it is stale (the weights were trained again)."""
    section = manifest.get("static_query")
    if not section or section.get("weights_fingerprint") != manifest.get("weights_fingerprint"):
        return None
    return section


def static_runtime(section: Mapping[str, Any]) -> str:
    """What names a static export in a query runtime: two exports of one model (another seed,
    other texts) give a query other vectors, so a query cache must tell them apart."""
    return f"static.{manifest_fingerprint(dict(section))[:8]}"


def resolve_query_tower(choice: QueryTower, manifest: Mapping[str, Any], backend: str,
                        where: str) -> Mapping[str, Any] | None:
    """The static section to run the query side on, or None for the transformer tower
    (``QueryTower`` in aisle/towers/config.py says which)."""
    section = static_section(manifest)
    if choice == "static" and section is None:
        if not manifest:
            raise ArtifactError(
                f"{where} has no static query tower: it is not an aisle model directory. Save "
                "it as one with `aisle export [--model PATH] --out DIR`, then run `aisle "
                "static-query --model DIR --data DATA`, or set query_tower=auto"
            )
        stale = " (it was learnt from other weights)" if manifest.get("static_query") else ""
        raise ArtifactError(
            f"{where} has no static query tower{stale}; run `aisle static-query --model "
            f"{where} --data DATA` or set query_tower=auto"
        )
    if choice == "transformer" or (choice == "auto" and backend == "torch"):
        return None
    return section


class StaticTower:
    """``encode(texts) -> Tensor[B, D]``, L2-normalised: the query ``Tower`` contract, numpy
    inside. Texts are cut to ``max_length`` word pieces, as the transformer tower cuts them."""

    def __init__(self, table: np.ndarray, tokenizer: Any, source: str, max_length: int) -> None:
        pieces = tokenizer.get_vocab_size(with_added_tokens=True)
        if table.ndim != 2 or table.shape[0] != pieces:
            raise ArtifactError(f"{source}: its table is {table.shape}, its tokenizer has "
                                f"{pieces} word pieces; run `aisle static-query` again")
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.source = source  # the static directory: towers with the same one share weights
        self.max_length = max_length

    @classmethod
    def load(cls, path: Path, max_length: int) -> StaticTower:
        """The tower in a sentence-transformers directory of ``StaticEmbedding`` [+ Normalize]."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = _static_folder(Path(path))
        try:
            table = load_file(str(folder / WEIGHTS_FILE))[WEIGHTS_KEY]
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        except Exception as e:  # OSError, KeyError, and safetensors' and tokenizers' own
            raise ArtifactError(f"{folder}: its static tower cannot be read ({e}); run `aisle "
                                "static-query` on the model again") from e
        return cls(table, tokenizer, str(path), max_length)

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def model(self) -> Any:
        raise _static_only()

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        raise _static_only()

    def vocabulary(self) -> frozenset[str]:
        """The words its tokenizer holds whole (folded), as ``Tower.vocabulary``."""
        return whole_words(self.tokenizer.get_vocab())

    def encode(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        """The mean of each text's word-piece rows, unit length (a text with no word piece is
        the zero vector, as in sentence-transformers)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(list(texts),
                                                                   add_special_tokens=False)):
            if encoding.ids:
                out[row] = self.table[encoding.ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return torch.from_numpy(out / np.maximum(norms, 1e-12))


def _static_folder(path: Path) -> Path:
    """The ``StaticEmbedding`` module's folder of a sentence-transformers directory."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        entry = next(m for m in modules if str(m.get("type", "")).endswith("StaticEmbedding"))
    except (OSError, ValueError, StopIteration, AttributeError, TypeError) as e:
        raise ArtifactError(f"{path} is not a static query tower (no StaticEmbedding in its "
                            "modules.json); run `aisle static-query` again") from e
    return path / str(entry.get("path", ""))


__all__ = ["STATIC_DIR", "StaticOnly", "StaticTower",
           "resolve_query_tower", "static_runtime", "static_section"]
