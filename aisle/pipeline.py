"""The main job, end to end: prepare -> BM25 and base-model baselines -> short cascade ->
index -> evaluate (dense, then hybrid with the fusion weight tuned on dev) -> a short
cross-encoder re-ranking hybrid's top, and the short cascade's step 2 distilled from it (both
opt-in everywhere else: their rows show what they add) -> sample searches -> a report of the
runs. Each stage reuses its output when it is up to date."""

from __future__ import annotations

import logging
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from aisle.configs import load_config
from aisle.data.dataset import load_dataset, prepare
from aisle.data.synthetic import write_sample
from aisle.errors import AisleError
from aisle.evaluation.run import evaluate_command
from aisle.evaluation.runs import report_command
from aisle.evaluation.tune import tune_fusion
from aisle.indexing.build import build_index
from aisle.retrieval.retriever import index_model, open_retriever
from aisle.retrieval.store import load_index
from aisle.towers.model import load_model
from aisle.training.cascade import train_cascade
from aisle.training.config import TrainConfig

log = logging.getLogger(__name__)

SAMPLE_SEARCHES = {
    "homedepot": ["cordless drill", "white subway tile", "ceiling fan with light"],
}
DEFAULT_SEARCHES = ["cordless drill", "white paint", "kitchen faucet"]


def default_data() -> Path | None:
    """../shared/data/homedepot beside the working directory or the checkout, if present."""
    here = Path(__file__).resolve().parents[1]
    for root in (Path.cwd(), here):
        candidate = root.parent / "shared" / "data" / "homedepot"
        if (candidate / "products.csv").is_file():
            return candidate
    return None


def _row(name: str, result: dict[str, Any]) -> str:
    m = result["metrics"]
    cells = [
        "-" if m[k] is None else f"{m[k]:.4f}"  # None: no test query defines it
        for k in ("ndcg@10", "recall@100", "mrr@10", "condensed_ndcg@10", "judged@10")
    ]
    return f"| {name:<28} | " + " | ".join(cells) + " |"


def rerank_row(data: Path, index: Path, out: Path, run_out: Path) -> dict[str, Any]:
    """A short cross-encoder (``configs/rerank-demo.toml``) over ``index``'s first stage,
    trained unless ``out`` already holds this one, then the test split re-ranked with it."""
    from aisle.rerank.config import RerankTrainConfig
    from aisle.rerank.model import load_reranker
    from aisle.rerank.train import reranker_is_current, train_reranker

    cfg = load_config(RerankTrainConfig,
                      Path(str(resources.files("aisle") / "configs" / "rerank-demo.toml")))
    if reranker_is_current(out, cfg, load_dataset(data), load_index(index)):
        log.info("%s is up to date: not training it again", out)
    else:
        train_reranker(data, index, out, cfg, resume=True)
    return evaluate_command(data, "test", index, run_out=run_out, run_tag="rerank",
                            reranker=load_reranker(out))


# The distilled row's step 2: each training query's top 8 of the demo's hybrid index, scored by
# the demo's short cross-encoder (the short version measured in docs/results.md, 2026-12-05).
DISTILL_CANDIDATES = 8


def distill_row(data: Path, config: TrainConfig, out: Path, index: Path, teacher: Path,
                run_out: Path) -> tuple[dict[str, Any], str]:
    """The short cascade with its step 2 distilled from the ``teacher`` cross-encoder over
    ``index``'s candidates (step 1 reused from the demo's work directory), published at
    ``out / "model-distilled"`` and indexed; its test split searched dense alone, as the short
    cascade's row is. Also the step the cascade published (best on dev)."""
    # Absolute paths: they name the step in its work directory, whatever --out was typed as.
    step2 = replace(config.step2, distill_candidates=DISTILL_CANDIDATES,
                    distill_teacher=str(teacher.resolve()), distill_index=str(index.resolve()))
    model_dir = out / "model-distilled"
    summary = train_cascade(data, model_dir, replace(config, step2=step2),
                            work=out / "model.work", resume=True)
    build_index(data, load_model(model_dir), out / "index-distilled")
    result = evaluate_command(data, "test", out / "index-distilled", mode="dense",
                              run_out=run_out, run_tag="distilled")
    return result, str(summary["selected_step"])


def run_demo(
    out: Path,
    data: Path | None = None,
    train_config: Path | None = None,
    skip_train: bool = False,
    rerank: bool = True,
    distill: bool = True,
) -> dict[str, Any]:
    out = Path(out)
    # The cascade's config is read before any stage runs: a typo in it must not cost the
    # baselines first (the base model's index alone is 18 minutes of embedding on homedepot).
    config: TrainConfig | None = None
    if not skip_train:
        config_path = train_config or Path(str(resources.files("aisle") / "configs" / "demo.toml"))
        config = load_config(TrainConfig, config_path)
    elif train_config is not None:
        raise AisleError(f"--no-train skips training, so --train-config {train_config} would "
                         "be ignored: drop one of them")
    source = data or default_data()
    if source is None:
        source = out / "sample-data"
        # Written every run (it is small and deterministic): a sample left by older code
        # would lack what today's has (the price and in_stock fields the README filters on).
        log.info("no ../shared/data/homedepot here; generating a small sample at %s", source)
        write_sample(source)
    prepared = prepare(source, out / "data")
    ds = load_dataset(prepared)
    results: dict[str, dict[str, Any]] = {}

    # Each row's test run as a TREC run file: aisle compare / report and trec_eval read them.
    runs = out / "runs"
    run_files = [runs / "bm25.trec", runs / "base.trec"]
    results["BM25"] = evaluate_command(prepared, "test", None, baseline="bm25",
                                       run_out=runs / "bm25.trec", run_tag="bm25")
    base = load_model(None)
    build_index(prepared, base, out / "index-base")
    # The towers alone (the rows below them fuse BM25 in, as every search does by default).
    results["base model (untuned)"] = evaluate_command(
        prepared, "test", out / "index-base", mode="dense", run_out=runs / "base.trec",
        run_tag="base")

    final_index = out / "index-base"
    if config is not None:
        train_cascade(prepared, out / "model", config, work=out / "model.work", resume=True)
        trained = load_model(out / "model")
        build_index(prepared, trained, out / "index")
        results["short cascade (this run)"] = evaluate_command(
            prepared, "test", out / "index", mode="dense", run_out=runs / "cascade.trec",
            run_tag="cascade")
        run_files.append(runs / "cascade.trec")
        final_index = out / "index"
    # Dense and BM25 fused, the weight picked on dev (aisle tune-fusion) and stored in the index.
    tune_fusion(prepared, final_index, "dev")
    hybrid = "hybrid: " + ("short cascade" if not skip_train else "base model") + " + BM25"
    results[hybrid] = evaluate_command(  # the default mode: hybrid
        prepared, "test", final_index, run_out=runs / "hybrid.trec", run_tag="hybrid")
    run_files.append(runs / "hybrid.trec")
    if rerank:
        # A short cross-encoder re-ranking hybrid's top: opt-in everywhere else (--rerank).
        results["hybrid + short cross-encoder"] = rerank_row(
            prepared, final_index, out / "reranker", runs / "rerank.trec")
        run_files.append(runs / "rerank.trec")
    distilled_step = ""
    if rerank and distill and config is not None and config.step2.enabled:
        # Opt-in everywhere else (step2.distill_teacher): dense alone, beside the short cascade.
        results["short cascade, distilled"], distilled_step = distill_row(
            prepared, config, out, final_index, out / "reranker", runs / "distilled.trec")
        run_files.append(runs / "distilled.trec")
    report = report_command(prepared, "test", run_files, out / "report.html")

    lines = [
        f"Test split of {ds.name}, whole catalog ({len(ds.products)} products):",
        "| retriever                    | nDCG@10 | rec@100 | MRR@10 | cond. nDCG@10 | judged@10 |",
        "|------------------------------|---------|---------|--------|---------------|-----------|",
        *(_row(name, r) for name, r in results.items()),
    ]
    if distilled_step:
        lines.append("(short cascade, distilled: its step 2 taught by the short cross-encoder; "
                     f"the cascade published {distilled_step}, its best on dev"
                     + (", so this row's model is not the distilled one)"
                        if distilled_step != "step2" else ")"))
    index = load_index(final_index)
    retriever = open_retriever(index, index_model(index))
    for query in SAMPLE_SEARCHES.get(ds.name, DEFAULT_SEARCHES):
        found = retriever.search_texts([query], 5)[0]  # the default mode, as aisle search
        shown = f", showing results for {found.query.correction!r}" if found.query.corrected else ""
        lines.append(f"\nsearch {query!r} ({found.mode}{shown}):")
        for rank, hit in enumerate(found.hits, start=1):
            lines.append(f"  {rank}. {hit.score:.3f}  {hit.title}")
    lines.append(
        f"\nreport of these runs, with intervals and plots: {report} (open it in a browser);"
        f"\nthe same as a table: aisle compare --data {prepared} --split test "
        + " ".join(str(f) for f in run_files)
    )
    lines.append(f"search it in a browser: aisle serve --index {final_index}, then open "
                 "http://127.0.0.1:8000/")
    print("\n".join(lines))
    return results
