"""``aisle qrels | compare | report``: the parsers and what each command prints."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisle.evaluation.stats import RESAMPLES


def _split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    p.add_argument("--split", choices=["train", "dev", "test"], default="test")


def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=Path,
                   help="TREC run files (aisle evaluate --run-out); the first is the baseline")
    p.add_argument("--resamples", type=int, default=RESAMPLES,
                   help="bootstrap resamples and randomisation-test trials")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling")


def cmd_qrels(args: argparse.Namespace) -> None:
    from aisle.evaluation.runs import qrels_command

    scale = qrels_command(args.data, args.split, args.out)
    print(f"wrote {args.out} (grades x {scale}, as integers)")


def cmd_compare(args: argparse.Namespace) -> None:
    from aisle.evaluation.compare import format_table, summaries_json
    from aisle.evaluation.runs import compare_command

    summaries = compare_command(args.data, args.split, args.runs, args.resamples, args.seed)
    if args.json:
        print(json.dumps(summaries_json(summaries), indent=2))
    else:
        print(format_table(summaries))


def cmd_report(args: argparse.Namespace) -> None:
    from aisle.evaluation.runs import report_command

    path = report_command(args.data, args.split, args.runs, args.out, args.resamples, args.seed)
    print(f"wrote {path}; open it in a browser (it needs no network)")


def add_evaluation_parsers(sub: Any, add_command: Callable[..., argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "qrels",
        "write a split's judgments as a TREC qrels file",
        "aisle qrels --data runs/hd --split test --out runs/hd-test.qrels",
    )
    _split_args(p)
    p.add_argument("--out", type=Path, required=True, help="qrels file to write")
    p.set_defaults(func=cmd_qrels)

    p = add_command(
        sub,
        "compare",
        "runs on one split: means, intervals, paired tests against the first",
        "aisle compare --data runs/hd --split test runs/bm25.trec runs/hybrid.trec",
    )
    _split_args(p)
    _stats_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=cmd_compare)

    p = add_command(
        sub,
        "report",
        "runs on one split as a self-contained HTML page with plots",
        "aisle report --data runs/hd --split test runs/bm25.trec runs/hybrid.trec "
        "--out runs/report.html",
    )
    _split_args(p)
    _stats_args(p)
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.set_defaults(func=cmd_report)
