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
            "--config configs/cascade.toml step2.alpha=0"
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
