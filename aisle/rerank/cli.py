"""``aisle rerank train|export`` and the ``--rerank`` flags of the commands that search."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aisle.errors import AisleError


def add_rerank_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rerank DIR``, ``--rerank-depth N``, ``--rerank-backend``: a re-ranking stage."""
    from aisle.rerank.config import RERANK_BACKENDS

    parser.add_argument("--rerank", type=Path, default=None, metavar="DIR",
                        help="re-rank the first stage's top products with this cross-encoder "
                        "(aisle rerank train writes one; default: no re-ranking)")
    parser.add_argument("--rerank-depth", type=int, default=None, metavar="N",
                        help="first-stage products the cross-encoder re-ranks (default: the "
                        "depth it was tuned with; 0 = off)")
    parser.add_argument("--rerank-weight", type=float, default=None, metavar="W",
                        help="the cross-encoder's share of the fusion with the first stage, in "
                        "[0, 1) (default: the weight chosen on dev when it was trained)")
    parser.add_argument("--rerank-backend", choices=RERANK_BACKENDS, default=None,
                        help="torch, or its ONNX export (default auto: int8 when exported)")


def open_reranker(args: argparse.Namespace) -> Any:
    """The ``--rerank`` cross-encoder with ``--rerank-weight`` applied; None without one."""
    if args.rerank is None:
        for flag, value in (("--rerank-weight", args.rerank_weight),
                            ("--rerank-backend", args.rerank_backend)):
            if value is not None:
                raise AisleError(f"{flag} needs --rerank DIR")
        return None
    from aisle.rerank.model import load_reranker

    return load_reranker(args.rerank, args.rerank_backend or "auto", weight=args.rerank_weight)


def cmd_rerank_train(args: argparse.Namespace) -> None:
    from aisle.configs import load_config
    from aisle.rerank.config import RerankTrainConfig
    from aisle.rerank.train import train_reranker

    config = load_config(RerankTrainConfig, args.config, args.overrides)
    summary = train_reranker(args.data, args.index, args.out, config, resume=args.resume,
                             work=args.work)
    print(json.dumps(summary, indent=2))


def cmd_rerank_export(args: argparse.Namespace) -> None:
    from aisle.rerank.export import export_reranker

    section = export_reranker(args.model, int8=args.int8, data=args.data)
    print(json.dumps(section, indent=2))


def add_rerank_parsers(sub: Any) -> None:
    top = sub.add_parser(
        "rerank",
        help="train or export a cross-encoder that re-ranks search results",
        epilog="example:\n  aisle rerank train --data runs/demo/data --index runs/demo/index "
        "--out runs/demo/reranker\n  aisle search --index runs/demo/index --rerank "
        "runs/demo/reranker 'cordless drill'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = top.add_subparsers(dest="rerank_command", required=True)
    p = rsub.add_parser(
        "train",
        help="train a cross-encoder on the judgments over an index's first stage",
        epilog="example:\n  aisle rerank train --data runs/demo/data --index runs/demo/index "
        "--out runs/demo/reranker epochs=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    p.add_argument("--index", type=Path, required=True,
                   help="the first stage: its default mode ranks the train and dev queries")
    p.add_argument("--out", type=Path, required=True, help="cross-encoder directory to publish")
    p.add_argument("--config", type=Path, default=None, help="RerankTrainConfig TOML file")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--work", type=Path, default=None,
                   help="work dir for first-stage lists and checkpoints (default: <out>.work)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=2")
    p.set_defaults(func=cmd_rerank_train)

    p = rsub.add_parser(
        "export",
        help="write ONNX (fp32, --int8) versions of a cross-encoder into its directory",
        epilog="example:\n  aisle rerank export runs/demo/reranker --int8 --data runs/demo/data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="cross-encoder directory (aisle rerank train)")
    p.add_argument("--int8", action="store_true", help="also int8, checked against fp32")
    p.add_argument("--data", type=Path, default=None,
                   help="data whose judged pairs int8 is checked on (needed with --int8)")
    p.set_defaults(func=cmd_rerank_export)
