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
