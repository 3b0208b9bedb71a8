"""``aisle evaluate``: wire a dataset split, a retriever and the metrics together."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisle.artifacts import check_not_input
from aisle.data.dataset import Dataset, load_dataset
from aisle.data.schema import PRODUCTS
from aisle.errors import AisleError, DataError, ManifestMismatch
from aisle.evaluation.evaluator import EvalResult, Retriever, evaluate
from aisle.evaluation.trec import write_run
from aisle.retrieval.config import FusionConfig, IndexConfig, Mode, stored_index_config
from aisle.towers.config import Backend, QueryTower

if TYPE_CHECKING:
    from aisle.rerank.config import RerankBackend
    from aisle.rerank.model import Reranker
    from aisle.retrieval.rerank import RerankStage
    from aisle.retrieval.retriever import Retriever as RetrieverT

log = logging.getLogger(__name__)


# Baseline name -> the IndexConfig whose bm25_* fields it uses. "bm25" is what `aisle index`
# builds by default; "bm25-word" is bm25s's own tokenizer and defaults (the BM25 reference
# numbers the data README and the issues quote).
BASELINES: dict[str, IndexConfig] = {
    "bm25": IndexConfig(),
    "bm25-word": stored_index_config({}),
}


def bm25_retriever(ds: Dataset, baseline: str = "bm25") -> Retriever:
    """BM25 over the same product text the towers see (``product_text``, default fields)."""
    from aisle.retrieval.lexical import BM25Index
    from aisle.towers.text import product_texts

    texts, ids = product_texts(ds.products), ds.products["product_id"].tolist()
    return BM25Index.from_config(texts, ids, BASELINES[baseline]).search


def built_over(manifest: dict[str, Any], ds: Dataset) -> bool:
    """Whether the index that ``manifest`` describes was built over ``ds``'s catalog."""
    return bool(manifest.get("data", {}).get("products_fingerprint") == ds.fingerprint(PRODUCTS))


def open_index_retriever(
    index_dir: Path,
    model_ref: str | None,
    ds: Dataset,
    fusion: FusionConfig | None = None,
    backend: Backend | None = None,
    query_spelling: bool = True,
    reranker: RerankStage | None = None,
    query_tower: QueryTower | None = None,
) -> RetrieverT:
    """The query-time ``Retriever`` over a built index, refused when it was built over
    another catalog than ``ds``'s. ``fusion``: hybrid's settings (default: the index's);
    ``reranker``: a cross-encoder re-ranking stage."""
    from aisle.retrieval.retriever import index_model, open_retriever
    from aisle.retrieval.store import load_index

    index = load_index(index_dir)
    if not built_over(index.manifest, ds):
        raise ManifestMismatch(
            f"index {index_dir} was built over another catalog than {ds.name!r}'s products "
            "(fingerprints differ); products it lacks could never be retrieved. Rebuild it: "
            "aisle index --data <this data> --out ..."
        )
    model = index_model(index, model_ref, backend, query_tower)
    return open_retriever(index, model, query_spelling, fusion, reranker)


def index_retriever(
    index_dir: Path,
    model_ref: str | None,
    ds: Dataset,
    mode: Mode | None = None,
    fusion: FusionConfig | None = None,
    backend: Backend | None = None,
    query_spelling: bool = True,
    reranker: Reranker | None = None,
    rerank_depth: int | None = None,
    query_tower: QueryTower | None = None,
) -> tuple[Retriever, dict[str, Any]]:
    """A ranking function over a built index in ``mode`` (None: the index's default, hybrid
    when it carries BM25), searched as ``aisle search`` and the service search it;
    ``reranker`` re-ranks its top ``rerank_depth`` (None: the reranker's depth)."""
    retriever = open_index_retriever(index_dir, model_ref, ds, fusion, backend, query_spelling,
                                     reranker, query_tower)
    mode = mode or retriever.default_mode
    if fusion is not None and mode != "hybrid":
        raise AisleError(f"{index_dir} has no BM25 index, so it has no hybrid mode to fuse; "
                         "drop --fusion, --weight and --rrf-k")
    context: dict[str, Any] = {
        "index": str(index_dir),
        "mode": mode,
        "model": retriever.model.ref,
        "backend": retriever.model.backend,
        "runtime": retriever.model.runtime,  # and which int8 export, where int8
        "query_runtime": retriever.model.query_runtime,  # and a static query tower, if one
        "query_spelling": retriever.preparer.speller is not None,
    }
    if mode == "hybrid":
        context["fusion"] = asdict(retriever.fusion)
    depth = retriever.rerank_depth(rerank_depth)
    if reranker is not None and depth:
        context["rerank"] = {"model": str(reranker.path), "backend": reranker.backend,
                             **asdict(replace(reranker.config, depth=depth))}
    return retriever.ranker(mode, rerank_depth=rerank_depth), context


def default_run_tag(context: dict[str, Any]) -> str:
    """What a run file's tag says by default: the baseline's name, or the mode and the model's
    directory name (``hybrid.model``)."""
    if "mode" not in context:
        return str(context["retriever"])
    model = str(context["model"]).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    model = model.split(":")[-1] or "model"
    return "".join("_" if c.isspace() else c for c in f"{context['mode']}.{model}")


def split_qrels(ds: Dataset, split: str) -> dict[str, dict[str, float]]:
    qrels = ds.qrels(split)
    if not qrels:
        raise DataError(f"dataset {ds.name!r} has no judgments for split {split!r}")
    return qrels


def split_top_grade(ds: Dataset, qrels: dict[str, dict[str, float]]) -> float:
    """The grade recall and MRR count as relevant for a split that has judgments."""
    assert ds.top_grade is not None and qrels  # split_qrels refuses a split without judgments
    return ds.top_grade


def evaluate_split(ds: Dataset, split: str, retriever: Retriever) -> EvalResult:
    qrels = split_qrels(ds, split)
    return evaluate(retriever, ds.query_texts(), qrels, split_top_grade(ds, qrels))


def check_evaluate_args(
    index: Path | None,
    baseline: str | None,
    run_out: Path | None,
    mode: Mode | None,
    fusion: FusionConfig | None,
) -> None:
    """Refuse flags that contradict each other or cannot be used, before any work."""
    if baseline is not None and baseline not in BASELINES:
        raise AisleError(f"unknown baseline {baseline!r}; use one of {sorted(BASELINES)}")
    if fusion is not None:
        if baseline is not None or mode not in (None, "hybrid"):
            raise AisleError(
                "--fusion, --weight and --rrf-k set how hybrid mode fuses its two lists; "
                "drop them, or search in hybrid mode (--index without --mode, or --mode hybrid)"
            )
        # (A FusionConfig's weight is in [0, 1] already, and its rrf_k >= 0.)
        if not fusion.rrf_k > 0:
            raise AisleError(f"--rrf-k must be > 0, got {fusion.rrf_k}")
    if run_out is not None and Path(run_out).is_dir():
        raise AisleError(f"--run-out {run_out} is a directory; give a file path for the run")


def rounded(value: float) -> float | None:
    """A metric to four places; ``None`` (JSON null, where NaN is not JSON) where no query
    defines it."""
    return round(value, 4) if math.isfinite(value) else None


def reported_metrics(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics rounded for the report; ``None`` (JSON null) where no query defines one."""
    out: dict[str, float | None] = {}
    for name, value in metrics.items():
        out[name] = rounded(value)
        if out[name] is None:
            log.warning("%s is undefined: no query of the split has a product it counts", name)
    return out


def evaluate_command(
    data: Path,
    split: str,
    index: Path | None,
    model: str | None = None,
    baseline: str | None = None,
    run_out: Path | None = None,
    mode: Mode | None = None,
    fusion: FusionConfig | None = None,
    backend: Backend | None = None,
    query_spelling: bool = True,
    run_tag: str | None = None,
    rerank: Path | None = None,
    rerank_depth: int | None = None,
    rerank_backend: RerankBackend = "auto",
    reranker: Reranker | None = None,
    query_tower: QueryTower | None = None,
) -> dict[str, Any]:
    """``rerank``: a cross-encoder directory that re-ranks the index's first stage (or
    ``reranker``, one loaded already)."""
    check_evaluate_args(index, baseline, run_out, mode, fusion)
    if run_out is not None:
        check_not_input(run_out, [data, index, rerank], "--run-out")
    if baseline is not None:
        given = [flag for flag, value in (("--mode", mode), ("--model", model),
                                          ("--backend", backend),
                                          ("--query-tower", query_tower),
                                          ("--rerank", rerank or reranker),
                                          ("--rerank-depth", rerank_depth)) if value is not None]
        if given:  # each would be ignored: the baseline reads the catalog, not a model
            raise AisleError(f"--baseline {baseline} is its own retriever: drop "
                             f"{', '.join(given)}")
    if (rerank is not None or reranker is not None or rerank_depth) and index is None:
        raise AisleError("--rerank re-ranks an index's results; pass --index too")
    if run_tag is not None and (not run_tag or any(c.isspace() for c in run_tag)):
        raise AisleError(f"--run-tag must be one word with no spaces, got {run_tag!r}")
    ds = load_dataset(data)
    split_qrels(ds, split)  # fail on a split without judgments before building anything
    started = time.perf_counter()
    if baseline is not None:
        retriever, context = bm25_retriever(ds, baseline), {"retriever": baseline}
    elif index is not None:
        if rerank is not None and reranker is None:
            from aisle.rerank.model import load_reranker

            reranker = load_reranker(rerank, rerank_backend)
        retriever, context = index_retriever(
            index, model, ds, mode, fusion, backend, query_spelling, reranker, rerank_depth,
            query_tower,
        )
        context["retriever"] = context["mode"]
    else:
        raise AisleError("pass --index DIR to evaluate dense retrieval, or --baseline bm25")
    result = evaluate_split(ds, split, retriever)
    if run_out is not None:
        tag = run_tag or default_run_tag(context)
        write_run(result.run, run_out, tag)
        log.info("wrote TREC run %s (tag %s)", run_out, tag)
    return {
        "data": ds.name,
        "split": split,
        **context,
        "metrics": reported_metrics(result.metrics),
        "seconds": round(time.perf_counter() - started, 1),
    }
