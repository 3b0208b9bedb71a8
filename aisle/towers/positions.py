"""How many tokens a model reads, and a tower max length fitted to it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Models whose position table keeps its first rows up to the padding index unused
# (transformers' create_position_ids_from_input_ids): 514 rows read 512 tokens.
_PADDED_POSITIONS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet",
                               "longformer", "data2vec-text", "ibert"})


def config_position_limit(directory: Path) -> int | None:
    """``position_limit`` from the transformers ``config.json`` in ``directory`` or its parent
    (an ONNX export sits in its transformer's folder), for towers that run no torch module;
    None where there is none, or it records no learned table."""
    for folder in (directory, directory.parent):
        path = folder / "config.json"
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        rows = config.get("max_position_embeddings") if isinstance(config, dict) else None
        if not isinstance(rows, int) or config.get("position_embedding_type", "absolute") != (
                "absolute"):
            return None
        if config.get("model_type") in _PADDED_POSITIONS:
            rows -= int(config.get("pad_token_id", 1)) + 1
        return rows
    return None


def fit_length(max_length: int, limit: int | None, what: str) -> int:
    """``max_length``, or the tokens the model reads where it is past them (with a warning):
    else the first text past the limit fails deep in the model ("The size of tensor a (702)
    must match the size of tensor b (512)", or ONNX Runtime's "input index out of range"), in
    a dev evaluation or a search. Lowered, not refused: a saved model may record it."""
    if limit is None or max_length <= limit:
        return max_length
    log.warning("%s: a max length of %d tokens is past the %d this model reads; it reads %d "
                "(set tower.max_query_length and max_product_length to at most %d)", what,
                max_length, limit, limit, limit)
    return limit
