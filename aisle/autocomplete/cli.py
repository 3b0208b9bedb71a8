"""``aisle autocomplete build | suggest | pairs``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aisle.errors import AisleError


def _config(args: argparse.Namespace) -> Any:
    from aisle.autocomplete.config import AutocompleteConfig
    from aisle.configs import load_config

    return load_config(AutocompleteConfig, args.config, args.overrides)


def cmd_build(args: argparse.Namespace) -> None:
    from aisle.autocomplete.build import build_autocomplete
    from aisle.towers.model import load_model

    # De-duplication by meaning is offline: the transformer query tower, never a static one
    # (a mean of word pieces gives "light bulb" and "bulb light" one vector).
    model = load_model(args.model, query_tower="transformer")
    out = build_autocomplete(args.data, model, args.out, _config(args),
                             tune_threshold=args.tune_threshold)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    print(json.dumps({k: manifest[k] for k in ("counts", "threshold", "threshold_source",
                                               "tuning", "popularity_source", "cleaning")},
                     indent=2))


def cmd_suggest(args: argparse.Namespace) -> None:
    from aisle.autocomplete.lookup import Autocomplete

    prefix = " ".join(args.prefix)
    if not prefix.strip():
        raise AisleError("the prefix is empty; pass what the shopper typed, e.g. 'moen sh'")
    index = Autocomplete.load(args.index, args.threshold)
    for rank, s in enumerate(index.suggest(prefix, args.k), start=1):
        typo = f"  ({s.edits} edit{'s' if s.edits > 1 else ''})" if s.edits else ""
        print(f"{rank:>3}  {s.popularity:>6}  {s.source:<7}  {s.text}{typo}")


def cmd_pairs(args: argparse.Namespace) -> None:
    from aisle.autocomplete.build import tune
    from aisle.data.dataset import load_dataset
    from aisle.towers.model import load_model

    result = tune(load_dataset(args.data), _config(args),
                  load_model(args.model, query_tower="transformer"))
    if args.out:
        from aisle.artifacts import atomic_write_text

        atomic_write_text(Path(args.out), result["pairs"].to_csv(index=False))
    for name in ("train", "heldout"):
        print(f"# {name} pairs {json.dumps(result[f'{name}_counts'])}")
        print(result[name].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(json.dumps(result["summary"], indent=2))


def add_autocomplete_parsers(sub: Any) -> None:
    from aisle.cli import add_command

    top = add_command(sub, "autocomplete", "query suggestions with semantic de-duplication",
                      'aisle autocomplete suggest --index runs/hd-ac "moen sh"')
    asub = top.add_subparsers(dest="autocomplete_command", required=True)

    p = add_command(asub, "build", "suggestions from the query log and catalog, embedded",
                    "aisle autocomplete build --data ../shared/data/homedepot --out runs/hd-ac")
    p.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    p.add_argument("--model", default=None, help="model dir (default: the base model)")
    p.add_argument("--out", type=Path, required=True, help="autocomplete directory to publish")
    p.add_argument("--tune-threshold", action="store_true",
                   help="choose the dedup threshold on the data's labelled train pairs")
    p.add_argument("--config", type=Path, default=None, help="AutocompleteConfig TOML file")
    p.add_argument("overrides", nargs="*", help="AutocompleteConfig key=value overrides")
    p.set_defaults(func=cmd_build)

    p = add_command(asub, "suggest", "suggestions for a typed prefix",
                    'aisle autocomplete suggest --index runs/hd-ac "moen sh" -k 10')
    p.add_argument("--index", type=Path, required=True, help="autocomplete directory")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--threshold", type=float, default=None,
                   help="dedup cosine threshold (default: the artifact's)")
    p.add_argument("prefix", nargs="+")
    p.set_defaults(func=cmd_suggest)

    p = add_command(asub, "pairs", "labelled duplicate pairs and the threshold sweep",
                    "aisle autocomplete pairs --data ../shared/data/homedepot --out pairs.csv")
    p.add_argument("--data", type=Path, required=True, help="data with judgments")
    p.add_argument("--model", default=None, help="model dir (default: the base model)")
    p.add_argument("--out", type=Path, default=None, help="write the labelled pairs here")
    p.add_argument("--config", type=Path, default=None, help="AutocompleteConfig TOML file")
    p.add_argument("overrides", nargs="*", help="AutocompleteConfig key=value overrides")
    p.set_defaults(func=cmd_pairs)
