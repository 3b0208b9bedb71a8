"""``aisle serve`` and ``aisle cache warm``."""

from __future__ import annotations

import argparse
import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisle.errors import AisleError

if TYPE_CHECKING:
    from aisle.serving.config import ServeConfig

log = logging.getLogger(__name__)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--batch 0`` was a traceback, ``--batch -1``
    warmed nothing and said it had)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _config(args: argparse.Namespace) -> Any:
    from aisle.configs import load_config
    from aisle.serving.config import ServeConfig, env_overrides

    # The config file, then the environment (AISLE_<KEY>, REDIS_URL), then the command line.
    overrides = [*env_overrides(os.environ), f"index={args.index}", *args.overrides]
    if getattr(args, "model", None):
        overrides.append(f"model={args.model}")
    for name in ("host", "port", "autocomplete", "backend", "query_tower", "rerank"):
        if getattr(args, name, None) is not None:
            overrides.append(f"{name}={getattr(args, name)}")
    return load_config(ServeConfig, args.config, overrides)


def _check_index(config: ServeConfig) -> None:
    """A missing or mistyped index is a clear error (exit 2) here, not a traceback from the
    app's start-up inside uvicorn."""
    from aisle.artifacts import read_manifest
    from aisle.retrieval.layout import resolve_index_dir
    from aisle.retrieval.store import KIND

    if not config.index:
        raise AisleError("give the index to serve: aisle serve --index DIR (or index = ... in "
                         "the config, or AISLE_INDEX)")
    read_manifest(resolve_index_dir(Path(config.index)), KIND)


def _check_paths(config: ServeConfig) -> None:
    """A missing ``--model`` or ``--rerank`` directory is a clear error (exit 2) here too,
    not a traceback from the app's start-up and uvicorn's exit 3."""
    from aisle.artifacts import restore_missing

    for flag, value in (("--model", config.model), ("--rerank", config.rerank)):
        if value and not value.startswith("builtin:"):
            restore_missing(Path(value))  # as loading would: a publish killed mid-way
        if value and not value.startswith("builtin:") and not Path(value).is_dir():
            raise AisleError(f"{flag} {value}: no such directory")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from aisle.serving.app import create_app

    config = _config(args)
    _check_index(config)
    _check_paths(config)
    # No per-request access log: /metrics counts requests, and a log line per search costs
    # more than a cached search itself.
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info",
                access_log=False)


def head_queries(path: Path, top: int, same: Callable[[str], str] = str) -> list[str]:
    """The ``top`` most frequent queries of a file: a queries.csv/parquet (``count`` column if
    present, else one vote per row) or a plain text file with one query per line. Queries the
    service would refuse (blank, no letters or digits) are left out; queries ``same`` maps to
    one text (the text the service encodes for them) count as one, under that text."""
    import pandas as pd

    from aisle.retrieval.querytext import query_problem

    if not path.is_file():
        raise AisleError(f"{path}: no such file; pass a query log (csv, parquet or text)")
    if path.suffix in (".csv", ".parquet"):
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(
            path, dtype=str, keep_default_na=False
        )
        if "query" not in frame.columns:
            raise AisleError(f"{path}: needs a 'query' column; found {list(frame.columns)}")
        counts: Counter[str] = Counter()
        weights: Any = [1] * len(frame)
        if "count" in frame.columns:
            counted = pd.to_numeric(frame["count"], errors="coerce")
            bad = (counted.isna() | (counted % 1 != 0) | (counted < 0)).to_numpy()
            if bad.any():
                row = int(bad.nonzero()[0][0])  # a position: a parquet may keep any index
                raise AisleError(f"{path}: the count column must hold whole numbers >= 0; "
                                 f"row {row + 1} holds {frame['count'].iloc[row]!r}")
            weights = counted.astype(int)
        for q, w in zip(frame["query"], weights, strict=True):
            counts[str(q)] += int(w)
    else:
        counts = Counter(path.read_text(encoding="utf-8").splitlines())
    merged: Counter[str] = Counter()
    for q, n in counts.items():
        if query_problem(q) is None:
            merged[same(q)] += n
    return [q for q, _ in merged.most_common(top)]


def cmd_cache_warm(args: argparse.Namespace) -> None:
    from aisle.serving.cache import RedisCache
    from aisle.serving.engine import Engine

    config = _config(args)
    if not config.redis_url:
        raise AisleError("set REDIS_URL (or redis_url=...) to warm a Redis cache")
    cache = RedisCache(config.redis_url, config.cache_ttl_s, 2.0, config.redis_backoff_s)
    engine = Engine(config, cache)
    snapshot = engine.snapshot
    queries = head_queries(args.queries, args.top, lambda q: snapshot.preparer.prepare(q).text)
    for start in range(0, len(queries), args.batch):
        # The service's own path (Engine.embed): the same text preparation, spelling and keys.
        batch = snapshot.preparer.prepare_all(queries[start : start + args.batch])
        engine.embed(snapshot, batch)
    if cache.errors:
        raise AisleError(f"{cache.errors} Redis write(s) failed; is Redis at {config.redis_url}?")
    print(f"warmed {len(queries)} query embeddings into {config.redis_url}")


def add_serve_parsers(sub: Any, add_command: Any) -> None:
    from aisle.towers.cli import add_backend_argument, add_query_tower_argument

    p = add_command(sub, "serve", "the HTTP search service",
                    "REDIS_URL=redis://127.0.0.1:6379/0 aisle serve --index runs/hd-index")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--model", default=None, help="model dir (default: the index's model)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--autocomplete", default=None,
                   help="autocomplete dir for GET /autocomplete (aisle autocomplete build)")
    add_backend_argument(p)
    add_query_tower_argument(p)
    p.add_argument("--rerank", default=None, metavar="DIR",
                   help="re-rank each search's first products with this cross-encoder (aisle "
                   "rerank train); rerank_depth, rerank_budget_ms, rerank_backend and "
                   "rerank_threads tune it")
    p.add_argument("--config", type=Path, default=None, help="ServeConfig TOML file")
    p.add_argument("overrides", nargs="*", help="ServeConfig key=value overrides")
    p.set_defaults(func=cmd_serve)

    cache = add_command(sub, "cache", "query-embedding cache tools",
                        "aisle cache warm --index runs/hd-index --queries queries.csv --top 1000")
    csub = cache.add_subparsers(dest="cache_command", required=True)
    p = add_command(csub, "warm", "precompute head queries' embeddings into Redis",
                    "REDIS_URL=redis://127.0.0.1:6379/0 aisle cache warm --index runs/hd-index "
                    "--queries ../shared/data/homedepot/queries.csv --top 1000")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--queries", type=Path, required=True, help="query log: csv, parquet or text")
    p.add_argument("--top", type=positive_int, default=1000, help="how many head queries")
    p.add_argument("--batch", type=positive_int, default=256,
                   help="queries per encoder/pipeline batch")
    add_backend_argument(p)  # must match the service's: the cache keys hold the backend
    add_query_tower_argument(p)  # and the query tower
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_cache_warm)
