"""``aisle train`` argument parsing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def cmd_train(args: argparse.Namespace) -> None:
    from aisle.configs import load_config
    from aisle.training.cascade import train_cascade
    from aisle.training.config import TrainConfig

    config = load_config(TrainConfig, args.config, args.overrides)
    summary = train_cascade(args.data, args.out, config, resume=args.resume, work=args.work)
    print(json.dumps(summary, indent=2))


def add_train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="two-step cascade training of the towers",
        epilog=(
            "example:\n  aisle train --data ../shared/data/homedepot --out runs/cascade "
            "--config aisle/configs/cascade.toml step2.alpha=0"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    p.add_argument("--out", type=Path, required=True, help="model directory to publish")
    p.add_argument("--config", type=Path, default=None, help="TrainConfig TOML file")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted step from its last checkpoint",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="work dir for checkpoints and finished steps (default: <out>.work); "
        "runs sharing it reuse identical steps",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. step1.epochs=2")
    p.set_defaults(func=cmd_train)


def cmd_soup(args: argparse.Namespace) -> None:
    from aisle.training.soup import soup_command

    print(json.dumps(soup_command(args.models, args.out, args.weights), indent=2))


def add_soup_parser(sub: Any) -> None:
    p = sub.add_parser(
        "soup",
        help="average the weights of trained models into one model (a model soup)",
        description="Average the towers of models fine-tuned from the same base model with the "
        "same tower config, e.g. cascades that differ only in their seed. The result is an "
        "ordinary model directory: index, evaluate and serve it like any other.",
        epilog=(
            "example:\n  aisle soup --models runs/seed13 runs/seed14 runs/seed15 "
            "--out runs/soup"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", nargs="+", required=True, help="two or more model dirs")
    p.add_argument("--out", type=Path, required=True, help="model directory to publish")
    p.add_argument(
        "--weights",
        nargs="+",
        type=float,
        default=None,
        help="one non-negative weight per model, normalised to sum to 1 (default: equal)",
    )
    p.set_defaults(func=cmd_soup)


def cmd_static_query(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from aisle.training.static import StaticConfig, export_static

    given = {"seed": args.seed, "epochs": args.epochs, "min_mean_cosine": args.min_mean_cosine}
    cfg = replace(StaticConfig(), **{k: v for k, v in given.items() if v is not None})
    print(json.dumps(export_static(args.model, args.data, cfg), indent=2))


def add_static_query_parser(sub: Any) -> None:
    p = sub.add_parser(
        "static-query",
        help="learn a static query tower (50x cheaper queries) into a model directory",
        description="Distil the model's query tower (its int8 export where it has one) into a "
        "static one: a mean of learnt word-piece vectors, about 0.03 ms a query against ~1.2 ms "
        "for int8 MiniLM. It learns from the data's train queries and catalog titles (no "
        "judgments) and is written into the model directory as a plain sentence-transformers "
        "model (a static_query-<hash>/ folder, which the manifest names). The product tower "
        "is untouched: indexes built with the model still serve. Searches then run it where "
        "the tower config's query_tower is auto (on an ONNX backend) or static; "
        "--query-tower transformer keeps the transformer. It costs about 0.003 of dev hybrid "
        "nDCG@10 on homedepot (docs/results.md).",
        epilog="example:\n  aisle static-query --model runs/demo/model "
        "--data runs/demo/data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="an aisle model directory")
    p.add_argument("--data", type=Path, required=True,
                   help="prepared or canonical CSV dir: its train queries and titles")
    p.add_argument("--seed", type=int, default=None, help="default 13")
    p.add_argument("--epochs", type=int, default=None, help="default 3")
    p.add_argument("--min-mean-cosine", type=float, default=None,
                   help="refuse a tower whose held-out mean cosine to the query tower is "
                   "below this (default 0.85)")
    p.set_defaults(func=cmd_static_query)
