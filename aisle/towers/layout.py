"""Where a model directory keeps its towers: a sentence-transformers model at its root.

Shared towers: the root is the encoder (``modules.json``, the transformer's files, pooling,
normalisation), so ``SentenceTransformer(path)`` loads it as a plain encoder. Untied towers:
the root holds one ``Router`` with a ``query`` route and a ``document`` route (the product
tower), so ``encode_query`` and ``encode_document`` each reach their own tower, and a plain
``encode`` the document route. Beside them sit aisle's ``manifest.json``, the model card
``README.md`` and, after ``aisle export``, an ``onnx/`` in each transformer's directory, where
sentence-transformers' ONNX backend looks for ``model.onnx``.

Model directories written before this layout (``LEGACY``: ``shared/``, or ``query/`` and
``product/``, each a sentence-transformers directory, nothing at the root) still load, and
keep their layout when exported or copied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import modules as models

from aisle.errors import ArtifactError
from aisle.towers.config import Pooling
from aisle.towers.encoder import load_sentence_transformer, with_pooling
from aisle.towers.onnx import ONNX_DIR

# The manifest's "layout" for this one; manifests from before it have none.
LAYOUT = "sentence-transformers"
LEGACY = "tower-dirs"
QUERY_ROUTE = "query"
DOCUMENT_ROUTE = "document"  # sentence-transformers' name for the product side


def layout_of(manifest: Mapping[str, Any]) -> str:
    return str(manifest.get("layout", LEGACY))


def _pipeline(st: SentenceTransformer, max_length: int) -> list[Any]:
    """``st``'s modules ending in Normalize (aisle's towers output unit vectors), with the
    max length its side reads. The modules are ``st``'s own, not copies."""
    st.max_seq_length = max_length
    modules = list(st)
    if not isinstance(modules[-1], models.Normalize):
        modules.append(models.Normalize())
    return modules


def save_towers(
    out: Path,
    query: SentenceTransformer,
    product: SentenceTransformer | None,
    lengths: tuple[int, int],
) -> None:
    """Write the towers as one sentence-transformers model at ``out`` (``product`` None:
    shared towers).

    A shared model has one max length, the product side's: sentence-transformers reads a
    query longer than the query length whole, where aisle truncates it.
    """
    if product is None:
        modules = _pipeline(query, lengths[1])
    else:
        router = models.Router.for_query_document(
            query_modules=_pipeline(query, lengths[0]),
            document_modules=_pipeline(product, lengths[1]),
        )
        modules = [router]
    # Empty prompts: aisle's towers read their texts bare, so encode_query must too.
    root = SentenceTransformer(
        modules=modules, device=str(query.device), prompts={QUERY_ROUTE: "", DOCUMENT_ROUTE: ""}
    )
    root.save(str(out), create_model_card=False)


def load_towers(
    path: Path, pooling: Pooling, device: str
) -> tuple[SentenceTransformer, SentenceTransformer]:
    """(query, product) encoders of a sentence-transformers directory: one encoder twice for
    a plain model, each route's own for a query/document ``Router``."""
    root = load_sentence_transformer(path, pooling, device)
    router = root[0]
    if not isinstance(router, models.Router):
        return root, root
    routes = router.sub_modules
    if QUERY_ROUTE not in routes or DOCUMENT_ROUTE not in routes:
        raise ArtifactError(
            f"{path}: its Router has the routes {sorted(routes)}; aisle reads a Router with a "
            f"{QUERY_ROUTE!r} and a {DOCUMENT_ROUTE!r} route"
        )
    after = list(root)[1:]
    query, product = (
        with_pooling(
            SentenceTransformer(modules=[*routes[name].children(), *after], device=device), pooling
        )
        for name in (QUERY_ROUTE, DOCUMENT_ROUTE)
    )
    return query, product


def legacy_dirs(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Tower name -> its sentence-transformers directory in a ``LEGACY`` model directory."""
    if manifest.get("towers") == "untied":
        return {"query": "query", "product": "product"}
    return {"shared": "shared"}


def transformer_dirs(model_dir: Path, manifest: Mapping[str, Any]) -> dict[str, str]:
    """Tower name (shared, or query and product) -> the directory of its transformer's files,
    relative to ``model_dir``, read from ``modules.json`` (and the Router's config) as
    sentence-transformers reads them."""
    if layout_of(manifest) == LEGACY:
        return legacy_dirs(manifest)
    first = _read_json(model_dir / "modules.json")[0]
    if not first["type"].endswith(".Router"):
        return {"shared": first["path"] or "."}
    router = Path(model_dir, first["path"])
    structure = _read_json(router / models.Router.config_file_name)["structure"]
    return {
        name: Path(first["path"], structure[route][0]).as_posix()
        for name, route in (("query", QUERY_ROUTE), ("product", DOCUMENT_ROUTE))
    }


def export_dirs(model_dir: Path, manifest: Mapping[str, Any]) -> dict[str, str]:
    """Tower name -> where ``aisle export`` writes its ONNX files, relative to ``model_dir``:
    ``onnx/`` inside its transformer's directory (where sentence-transformers' ONNX backend
    looks), or ``onnx/<tower>`` in a ``LEGACY`` directory."""
    dirs = transformer_dirs(model_dir, manifest)
    if layout_of(manifest) == LEGACY:
        return {name: f"{ONNX_DIR}/{name}" for name in dirs}
    return {name: Path(d, ONNX_DIR).as_posix() for name, d in dirs.items()}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is missing or corrupt ({e}); save the model again") from e
