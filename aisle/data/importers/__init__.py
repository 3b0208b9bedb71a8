"""Importers: public relevance datasets -> the canonical CSV layout (see ``aisle.data.schema``).

Each importer writes ``queries.csv``, ``products.csv`` and ``judgments.csv`` atomically and
checks that the result loads with ``aisle.data.load_dataset`` before publishing it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

# The ESCI marketplaces (``esci.import_esci``'s locales); here so that registering the commands
# does not import pandas.
LOCALES = ("us", "es", "jp")

log = logging.getLogger(__name__)

ESCI_EPILOG = """\
The input is the ESCI examples table merged with its products table (one parquet file):
  ex = pd.read_parquet("shopping_queries_dataset_examples.parquet")
  pr = pd.read_parquet("shopping_queries_dataset_products.parquet")
  ex.merge(pr, on=["product_locale", "product_id"], how="left").to_parquet("esci.parquet")

example:
  aisle import esci --src esci.parquet --out data/esci-us --locale us
  aisle import esci --src esci.parquet --out data/esci-us-small --small-version
"""

WANDS_EPILOG = """\
The input is the WANDS dataset/ directory (product.csv, query.csv, label.csv, tab-separated).

example:
  aisle import wands --src WANDS/dataset --out data/wands
"""


def _run_esci(args: argparse.Namespace) -> int:
    from aisle.data.importers.esci import import_esci

    locale = None if args.locale == "all" else args.locale
    out = import_esci(Path(args.src), Path(args.out), locale=locale,
                      small_version=args.small_version)
    log.info("imported ESCI into %s", out)
    return 0


def _run_wands(args: argparse.Namespace) -> int:
    from aisle.data.importers.wands import import_wands

    out = import_wands(Path(args.src), Path(args.out))
    log.info("imported WANDS into %s", out)
    return 0


def add_import_parser(subparsers: Any) -> None:
    """Register ``aisle import esci`` and ``aisle import wands`` on ``subparsers``.

    ``subparsers`` is what ``ArgumentParser.add_subparsers()`` returns. Each leaf command sets
    ``func``: a callable taking the parsed args and returning an exit code.
    """
    fmt = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        "import",
        help="convert a public dataset into the canonical CSV layout",
        description="Convert a public relevance dataset into the canonical CSV layout.",
        epilog="examples:\n  aisle import esci --src esci.parquet --out data/esci-us\n"
        "  aisle import wands --src WANDS/dataset --out data/wands",
        formatter_class=fmt,
    )
    datasets = parser.add_subparsers(dest="dataset", metavar="{esci,wands}", required=True)

    esci = datasets.add_parser(
        "esci",
        help="Amazon Shopping Queries Dataset (ESCI), merged parquet",
        description="Import Amazon ESCI: grades E=3, S=2, C=1, I=0; ~10% of train -> dev.",
        epilog=ESCI_EPILOG,
        formatter_class=fmt,
    )
    esci.add_argument("--src", required=True, metavar="FILE", help="merged ESCI parquet file")
    esci.add_argument("--out", required=True, metavar="DIR", help="canonical CSV dir to write")
    esci.add_argument(
        "--locale",
        choices=[*LOCALES, "all"],
        default="us",
        help="keep one marketplace (default: us); 'all' keeps every locale",
    )
    esci.add_argument(
        "--small-version",
        action="store_true",
        help="keep only the rows marked small_version = 1: the reduced task-1 set the "
        "dataset's paper reports its baselines on (default: every row)",
    )
    esci.set_defaults(func=_run_esci)

    wands = datasets.add_parser(
        "wands",
        help="Wayfair WANDS, the dataset/ directory",
        description="Import Wayfair WANDS: grades Exact=2, Partial=1, Irrelevant=0; "
        "80/10/10 train/dev/test by query-text hash.",
        epilog=WANDS_EPILOG,
        formatter_class=fmt,
    )
    wands.add_argument("--src", required=True, metavar="DIR", help="WANDS dataset/ directory")
    wands.add_argument("--out", required=True, metavar="DIR", help="canonical CSV dir to write")
    wands.set_defaults(func=_run_wands)


def __getattr__(name: str) -> Any:
    """``import_esci`` and ``import_wands``, imported on first use (they need pandas)."""
    if name == "import_esci":
        from aisle.data.importers.esci import import_esci

        return import_esci
    if name == "import_wands":
        from aisle.data.importers.wands import import_wands

        return import_wands
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOCALES", "add_import_parser", "import_esci", "import_wands"]
