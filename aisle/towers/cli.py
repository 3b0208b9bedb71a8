"""``aisle export``: ONNX Runtime versions of a model's towers, written into its directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """``--backend``: how the towers run, for any command that loads a model."""
    from aisle.towers.config import BACKENDS

    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help="torch, or the model's ONNX export (onnx-fp32, onnx-int8; `aisle export`); "
        "default: the model's tower config (auto: int8, else fp32, else torch)",
    )


def add_query_tower_argument(parser: argparse.ArgumentParser) -> None:
    """``--query-tower``: which query tower runs, for any command that embeds queries."""
    from aisle.towers.config import QUERY_TOWERS

    parser.add_argument(
        "--query-tower", choices=QUERY_TOWERS, default=None,
        help="transformer, or the model's static export (static; `aisle static-query`); "
        "default: the model's tower config (auto: static where the model has one and runs "
        "on ONNX, else transformer)",
    )


def cmd_export(args: argparse.Namespace) -> None:
    from aisle.artifacts import read_manifest
    from aisle.towers.export import Agreement, export_model
    from aisle.towers.model import KIND

    agreement = Agreement(min_mean_cosine=args.min_mean_cosine, min_p1_cosine=args.min_p1_cosine)
    out = export_model(args.model, args.out, int8=args.int8, data=args.data, agreement=agreement)
    section = read_manifest(out, KIND)["onnx"]
    summary = {
        "model": str(out),
        "towers": {name: t["files"] for name, t in section["towers"].items()},
        "fp32_max_abs_diff": section["fp32_max_abs_diff"],
        "int8_agreement": section.get("int8_agreement"),
    }
    print(json.dumps(summary, indent=2))


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write ONNX (fp32, optionally checked int8) towers into a model directory",
        description=(
            "Export the query and product towers (one file when shared) with their tokenizer to "
            "an onnx/ folder beside each tower's transformer (where sentence-transformers' ONNX "
            "backend finds model.onnx; the int8 file is model_qint8.onnx) and record them in "
            "the model manifest; the fingerprint is unchanged, so "
            "indexes built with the model still match. Towers then run on ONNX Runtime (tower "
            "config backend=auto: int8 if exported, else fp32). The built-in base model or a "
            "plain sentence-transformers directory is first copied to --out."
        ),
        epilog=(
            "example:\n  aisle export --model runs/cascade --int8 --data ../shared/data/homedepot\n"
            "  aisle export --out runs/base-onnx --int8 --data ../shared/data/homedepot"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None, help="model dir (default: the built-in base model)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="publish a copy of the model with its export here (required for the base model)",
    )
    p.add_argument("--int8", action="store_true", help="also write dynamic int8 towers")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="prepared or canonical CSV dir whose queries and products check int8 (needed "
        "with --int8)",
    )
    p.add_argument("--min-mean-cosine", type=float, default=0.99,
                   help="refuse int8 if mean cosine to fp32 is below this (queries, products)")
    p.add_argument("--min-p1-cosine", type=float, default=0.97,
                   help="refuse int8 if the 1st-percentile cosine to fp32 is below this")
    p.set_defaults(func=cmd_export)
