"""The ``aisle`` command: prepare, import, index, search, evaluate, train, demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aisle.cores import cap_thread_pools
from aisle.errors import AisleError
from aisle.rerank.cli import add_rerank_arguments, open_reranker
from aisle.towers.cli import add_backend_argument, add_query_tower_argument

log = logging.getLogger("aisle")


def add_command(sub: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with a real invocation."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_spelling_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--query-spelling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="correct misspelt query words against the catalog's titles before the query "
        "tower embeds them (aisle/retrieval/spelling.py; default on)",
    )


def add_mode_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=["dense", "lexical", "hybrid"],
        default=None,
        help="retrieve with the towers, the index's BM25, or both fused (default: hybrid when "
        "the index carries BM25, as every index aisle builds does; else dense)",
    )


def cmd_prepare(args: argparse.Namespace) -> None:
    from aisle.data.dataset import prepare

    prepare(args.data, args.out)
    print(f"prepared {args.data} -> {args.out}")


def cmd_search(args: argparse.Namespace) -> None:
    from aisle.retrieval.filters import parse_filters
    from aisle.retrieval.querytext import query_problem
    from aisle.retrieval.retriever import index_model, open_retriever
    from aisle.retrieval.store import load_index

    query = " ".join(args.query).strip()
    if not query:
        raise AisleError("the query is empty; pass some words, e.g. aisle search ... 'drill'")
    problem = query_problem(query)
    if problem is not None:  # what the service answers 422 to
        raise AisleError(problem)
    if args.k < 1:
        raise AisleError(f"-k is {args.k}; ask for at least 1 product")
    filters = parse_filters(args.filter, "--filter")
    index = load_index(args.index)
    names = [n.strip() for n in args.fields.split(",") if n.strip()]
    names = index.fields.names if names == ["all"] else names
    index.fields.check_names(names, "--fields")
    if filters:
        index.select(filters, "--filter")  # an unknown field is refused before the model loads
    model = index_model(index, args.model, args.backend, args.query_tower)
    retriever = open_retriever(index, model, args.query_spelling, reranker=open_reranker(args))
    found = retriever.search_texts([query], args.k, args.mode, filters or None,
                                   args.rerank_depth)[0]
    correction = found.query.correction
    shown = f", showing results for {correction!r}" if correction else ""
    where = f" where {filters.describe()}" if filters else ""
    reranked = f", top {found.reranked} re-ranked" if found.reranked else ""
    print(f"{found.mode} search{reranked}{shown}{where}:")
    values = index.field_values([h.product_id for h in found.hits], names)
    for rank, (hit, fields) in enumerate(zip(found.hits, values, strict=True), start=1):
        extra = "".join(f"  {n}={'' if v is None else v}" for n, v in fields.items())
        print(f"{rank:>3}  {hit.score:.4f}  {hit.product_id}  {hit.title}{extra}")


def _index_fusion(index: Path) -> Any:
    """The fusion ``index``'s manifest holds, read without loading the index; the defaults
    where it cannot be read (evaluation then says what is wrong with the index)."""
    from aisle.artifacts import read_manifest
    from aisle.retrieval.config import FusionConfig
    from aisle.retrieval.layout import resolve_index_dir
    from aisle.retrieval.store import KIND, stored_fusion

    try:
        return stored_fusion(read_manifest(resolve_index_dir(index), KIND).get("fusion", {}))
    except AisleError:
        return FusionConfig()


def cmd_evaluate(args: argparse.Namespace) -> None:
    import math
    from dataclasses import replace

    from aisle.evaluation.run import evaluate_command
    from aisle.retrieval.config import FusionConfig

    if args.run_tag is not None and args.run_out is None:
        raise AisleError("--run-tag names the run file's tag: pass --run-out FILE too")
    fusion = None
    if args.fusion or args.weight is not None or args.rrf_k is not None:
        # --weight belongs to convex fusion and --rrf-k to RRF: either names its method
        # (over an index tuned to the other one, it would otherwise change nothing).
        implied = {m for m, flag in (("convex", args.weight), ("rrf", args.rrf_k))
                   if flag is not None}
        if len(implied) > 1 or (args.fusion and implied and implied != {args.fusion}):
            raise AisleError("--weight sets convex fusion and --rrf-k sets RRF: give the one "
                             "that goes with --fusion")
        if args.weight is not None and not 0.0 <= args.weight <= 1.0:  # NaN fails too
            raise AisleError(f"--weight must be in [0, 1] (the dense share), got {args.weight}")
        if args.rrf_k is not None and not 0.0 < args.rrf_k < math.inf:
            raise AisleError(f"--rrf-k must be a finite number > 0, got {args.rrf_k}")
        # What the flags name, over the index's own fusion (its depths, the rest it tuned).
        base = _index_fusion(args.index) if args.index else FusionConfig()
        fusion = replace(
            base,
            method=args.fusion or (implied.pop() if implied else base.method),
            weight=base.weight if args.weight is None else args.weight,
            rrf_k=base.rrf_k if args.rrf_k is None else args.rrf_k,
        )
    result = evaluate_command(
        data=args.data,
        split=args.split,
        index=args.index,
        model=args.model,
        baseline=args.baseline,
        run_out=args.run_out,
        mode=args.mode,
        fusion=fusion,
        backend=args.backend,
        query_tower=args.query_tower,
        query_spelling=args.query_spelling,
        run_tag=args.run_tag,
        reranker=open_reranker(args),
        rerank_depth=args.rerank_depth,
    )
    print(json.dumps(result, indent=2))


def cmd_tune_fusion(args: argparse.Namespace) -> None:
    from aisle.evaluation.tune import tune_fusion

    result = tune_fusion(args.data, args.index, args.split, args.model, backend=args.backend,
                         query_tower=args.query_tower)
    for row in result["grid"]:
        print(json.dumps(row))
    print(json.dumps({"best": result["best"], "metrics": result["metrics"]}, indent=2))


def cmd_demo(args: argparse.Namespace) -> None:
    from aisle.pipeline import run_demo

    run_demo(args.out, data=args.data, train_config=args.train_config, skip_train=args.no_train,
             rerank=not args.no_rerank, distill=not args.no_distill)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aisle", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = add_command(
        sub,
        "prepare",
        "validate a canonical CSV dir into typed parquet",
        "aisle prepare --data ../shared/data/homedepot --out runs/hd",
    )
    p.add_argument("--data", type=Path, required=True, help="canonical CSV directory")
    p.add_argument("--out", type=Path, required=True, help="prepared output directory")
    p.set_defaults(func=cmd_prepare)

    from aisle.data.importers import add_import_parser

    add_import_parser(sub)

    from aisle.indexing.cli import add_index_parsers

    add_index_parsers(sub, add_command)

    p = add_command(
        sub,
        "search",
        "search an index from the command line",
        'aisle search --index runs/hd-index "cordless drill" -k 10',
    )
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--model", default=None, help="model dir (default: the index's model)")
    add_backend_argument(p)
    add_query_tower_argument(p)
    p.add_argument("-k", type=int, default=10)
    add_mode_argument(p)
    add_spelling_argument(p)
    p.add_argument("--filter", action="append", default=[], metavar="COND",
                   help="only products meeting COND (repeat for more, all must hold): "
                   "brand=DeWalt, brand=DeWalt|Makita, price<=50, price=10..50, in_stock=true")
    p.add_argument("--fields", default="", metavar="A,B",
                   help="stored fields to print with each result (e.g. brand,price; 'all')")
    add_rerank_arguments(p)
    p.add_argument("query", nargs="+")
    p.set_defaults(func=cmd_search)

    p = add_command(
        sub,
        "evaluate",
        "nDCG@10, recall@100, MRR@10 on a split",
        "aisle evaluate --data runs/hd --split test --index runs/hd-index",
    )
    p.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    p.add_argument("--split", choices=["train", "dev", "test"], default="test")
    p.add_argument("--index", type=Path, default=None,
                   help="index dir (searched in --mode: hybrid by default)")
    p.add_argument("--model", default=None, help="model dir (default: the index's model)")
    add_backend_argument(p)
    add_query_tower_argument(p)
    p.add_argument(
        "--baseline",
        choices=["bm25", "bm25-word"],
        default=None,
        help="evaluate a baseline retriever instead of the index: bm25 as `aisle index` builds "
        "it (product analyzer), or bm25-word (bm25s's tokenizer and defaults)",
    )
    p.add_argument(
        "--run-out",
        type=Path,
        default=None,
        help="write the run here as a TREC run file (qid Q0 docid rank score tag), which "
        "trec_eval, ir_measures, ranx and aisle compare read",
    )
    p.add_argument(
        "--run-tag",
        default=None,
        help="the run file's tag (default: the baseline's name, or mode.model-dir-name)",
    )
    add_mode_argument(p)
    p.add_argument(
        "--fusion",
        choices=["convex", "rrf"],
        default=None,
        help="hybrid fusion (default: the index's, see tune-fusion)",
    )
    p.add_argument("--weight", type=float, default=None, help="dense weight for convex fusion")
    p.add_argument("--rrf-k", type=float, default=None, help="RRF constant")
    add_spelling_argument(p)
    add_rerank_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    from aisle.evaluation.cli import add_evaluation_parsers

    add_evaluation_parsers(sub, add_command)

    p = add_command(
        sub,
        "tune-fusion",
        "pick the hybrid fusion on dev, store it in the index",
        "aisle tune-fusion --data runs/hd --split dev --index runs/hd-index",
    )
    p.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    p.add_argument("--index", type=Path, required=True, help="index dir to tune and update")
    p.add_argument("--split", choices=["train", "dev", "test"], default="dev")
    p.add_argument("--model", default=None, help="model dir (default: the index's model)")
    add_backend_argument(p)
    add_query_tower_argument(p)
    p.set_defaults(func=cmd_tune_fusion)

    p = add_command(
        sub,
        "demo",
        "the main job: prepare, train, index, evaluate, search",
        "aisle demo --out runs/demo",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="canonical data dir (default: ../shared/data/homedepot, else a sample)",
    )
    p.add_argument("--train-config", type=Path, default=None, help="cascade TOML")
    p.add_argument("--no-train", action="store_true", help="skip the training step")
    p.add_argument("--no-rerank", action="store_true",
                   help="skip the short cross-encoder and its re-ranking and distilled rows")
    p.add_argument("--no-distill", action="store_true",
                   help="skip the distilled row (the short cascade's step 2 taught by the "
                   "short cross-encoder)")
    p.set_defaults(func=cmd_demo)

    from aisle.serving.cli import add_serve_parsers

    add_serve_parsers(sub, add_command)

    from aisle.training.cli import add_soup_parser, add_static_query_parser, add_train_parser

    add_train_parser(sub)
    add_soup_parser(sub)
    add_static_query_parser(sub)
    from aisle.towers.cli import add_export_parser

    add_export_parser(sub)
    from aisle.rerank.cli import add_rerank_parsers

    add_rerank_parsers(sub)

    from aisle.autocomplete.cli import add_autocomplete_parsers

    add_autocomplete_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from aisle.indexing.cli import with_default_subcommand

    args = build_parser().parse_args(
        with_default_subcommand(sys.argv[1:] if argv is None else argv)
    )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if threads := cap_thread_pools():
        log.debug("CPU quota: torch's and faiss's thread pools capped at %d", threads)
    try:
        args.func(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then the handler's below
    except AisleError as e:
        log.error("%s", e)
        return 2
    except BrokenPipeError:  # `aisle search ... | head`: the reader has what it wanted
        # Python would flush stdout again at exit and report the pipe once more.
        with contextlib.suppress(OSError, ValueError):  # a stdout with no descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # what a tool killed by SIGPIPE returns, without a word
    except OSError as e:  # a path that cannot be read or written: a file where a folder
        # must be, no permission, a full disk. The message names the path; -v: the traceback.
        log.error("%s", e, exc_info=args.verbose)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
