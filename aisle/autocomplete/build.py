"""``aisle autocomplete build``: suggestions, their query-tower embeddings, the threshold."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aisle.artifacts import atomic_dir, check_replaceable
from aisle.autocomplete.clean import LOG_WORD_MIN_QUERIES, QueryCleaner, log_words
from aisle.autocomplete.config import AutocompleteConfig
from aisle.autocomplete.pairs import build_pairs, choose_threshold
from aisle.autocomplete.store import KIND, write_artifact
from aisle.autocomplete.suggestions import (
    CATALOG,
    LOG,
    catalog_suggestions,
    log_suggestions,
    rank,
)
from aisle.autocomplete.text import key, variant_key
from aisle.data.dataset import Dataset, load_dataset
from aisle.errors import DataError
from aisle.retrieval.retriever import titles_speller
from aisle.retrieval.spelling import QuerySpeller
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)

# How log queries are cleaned (aisle.autocomplete.clean), recorded in the manifest and its
# version: an artifact without it shows the log as typed.
CLEANING = {
    "spelling": "query speller (retrieval.retriever.titles_speller): misspelt words "
                "corrected; a query with a word it can neither correct nor accept, nor found in "
                f"{LOG_WORD_MIN_QUERIES}+ log queries, dropped",
    "case": "lower",
    "variants": "case, accent and spacing variants are one suggestion, popularity summed",
    "catalog": "catalog phrases embedded as written, never spell-corrected",
}


def embed(model: TwoTowerModel, texts: list[str], progress: bool = False) -> np.ndarray:
    """Unit query-tower embeddings, each distinct text encoded once."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return np.zeros((0, model.dim), dtype=np.float32)
    vectors = model.encode_query(unique, progress=progress).cpu().numpy().astype(np.float32)
    where = {t: i for i, t in enumerate(unique)}
    return vectors[[where[t] for t in texts]]


def collect(
    ds: Dataset, config: AutocompleteConfig, speller: QuerySpeller
) -> tuple[pd.DataFrame, str, dict[str, int]]:
    """All suggestions in rank order with their canonical (spell-corrected) text, the
    popularity source and the cleaning counts."""
    cleaner = QueryCleaner(speller, log_words(ds.queries["query"]))
    logged, popularity_source, cleaned = log_suggestions(ds, cleaner.clean)
    mined = catalog_suggestions(ds.products, config, {variant_key(t) for t in logged["text"]})
    frame = pd.concat([logged, mined], ignore_index=True)
    if frame.empty:
        raise DataError(f"dataset {ds.name!r} gives no suggestions: no queries and no "
                        "catalog phrase named by enough products")
    # A catalog phrase is the catalog's own words: "correcting" its rarer names embedded
    # "brita" as "brite" and "stover" as "stove", so de-duplication took them for those.
    frame["canonical"] = [speller.correct(t) if source == LOG else key(t)
                          for t, source in zip(frame["text"], frame["source"], strict=True)]
    return rank(frame), popularity_source, cleaned


def tune(ds: Dataset, config: AutocompleteConfig, model: TwoTowerModel) -> dict[str, Any]:
    """Choose the threshold on the labelled pairs of ``ds`` (cosines of canonical texts)."""
    speller = titles_speller(ds.products["title"], model)
    pairs = build_pairs(ds, config.pairs)

    def cosine(a: list[str], b: list[str]) -> np.ndarray:
        ea = embed(model, [speller.correct(t) for t in a])
        eb = embed(model, [speller.correct(t) for t in b])
        return np.asarray((ea * eb).sum(axis=1))

    result = choose_threshold(pairs, cosine, config.pairs)
    result["pairs"] = pairs
    return result


def build_autocomplete(
    data: Path | Dataset,
    model: TwoTowerModel,
    out: Path,
    config: AutocompleteConfig | None = None,
    tune_threshold: bool = False,
) -> Path:
    """Publish an autocomplete artifact at ``out`` (atomically)."""
    check_replaceable(Path(out), KIND)  # before the suggestions are embedded
    started = time.perf_counter()
    config = config or AutocompleteConfig()
    ds = data if isinstance(data, Dataset) else load_dataset(Path(data))
    frame, popularity_source, cleaned = collect(
        ds, config, titles_speller(ds.products["title"], model)
    )
    tuning: dict[str, Any] | None = None
    if tune_threshold:
        tuning = dict(tune(ds, config, model)["summary"])
        config = replace(config, threshold=float(tuning["threshold"]))
        log.info("threshold %.2f chosen on %s train pairs", config.threshold, ds.name)
    log.info("embedding %d suggestions with the query tower", len(frame))
    vectors = embed(model, frame["canonical"].tolist(), progress=True)
    counts = {"log": int((frame["source"] == LOG).sum()),
              "catalog": int((frame["source"] == CATALOG).sum()), "total": len(frame)}
    version = hashlib.sha256(
        f"{model.fingerprint}|{ds.fingerprint('queries')}|{ds.fingerprint('products')}|"
        f"{sorted(asdict(config).items())}|{sorted(CLEANING.items())}".encode()
    ).hexdigest()[:12]
    manifest = {
        "version": version,
        "model": {"ref": model.ref, "fingerprint": model.fingerprint, "dim": model.dim},
        "data": {"name": ds.name, "queries": ds.fingerprint("queries"),
                 "products": ds.fingerprint("products")},
        "counts": counts,
        "threshold": config.threshold,
        "threshold_source": "tuned" if tuning else "config",
        "tuning": tuning,
        "popularity_source": popularity_source,
        "cleaning": {**CLEANING, "counts": cleaned},
        "config": asdict(config),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    with atomic_dir(Path(out), KIND) as tmp:
        write_artifact(tmp, frame, vectors, manifest)
    log.info("autocomplete index %s: %d log + %d catalog suggestions, threshold %.2f",
             out, counts["log"], counts["catalog"], config.threshold)
    return Path(out)
