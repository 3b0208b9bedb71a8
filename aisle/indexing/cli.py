"""``aisle index [build] | update | list | promote | rollback | prune | export-vectors``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUBCOMMANDS = ("build", "update", "list", "promote", "rollback", "prune", "export-vectors")


def with_default_subcommand(argv: Sequence[str]) -> list[str]:
    """``aisle index --data D --out R`` means ``aisle index build --data D --out R``."""
    args = list(argv)
    for i, token in enumerate(args):
        if token.startswith("-"):
            continue
        if token == "index":
            nxt = args[i + 1] if i + 1 < len(args) else ""
            if nxt not in (*SUBCOMMANDS, "-h", "--help", ""):
                args.insert(i + 1, "build")
        break
    return args


def join_ray(args: argparse.Namespace) -> None:
    """Join the cluster ``--ray-address`` names before the job (the Ray engine's embedding
    actors then run on its nodes)."""
    if args.ray_address is None:
        return
    from aisle.errors import AisleError

    if args.engine != "ray":
        raise AisleError("--ray-address is the cluster of --engine ray; add --engine ray")
    from aisle.indexing.embed_job import check_engine
    from aisle.indexing.ray_engine import connect

    check_engine("ray")
    connect(args.ray_address)


def cmd_build(args: argparse.Namespace) -> None:
    from aisle.configs import load_config
    from aisle.indexing.build import build_version
    from aisle.retrieval.config import IndexConfig
    from aisle.towers.model import load_model

    config = load_config(IndexConfig, args.config, args.overrides)
    model = load_model(args.model, backend=args.backend)
    join_ray(args)
    path = build_version(args.data, model, args.out, config, force=args.force,
                         engine=args.engine, keep=args.keep, vectors=args.vectors)
    if path.resolve() == Path(args.out).resolve():
        # A plain index directory (what aisle demo writes) is its own current version, and
        # build_version returns it when it is up to date: it holds no version to promote.
        print(f"index {args.out} is up to date (same model, backend, catalog and config)")
        return
    report_version(args.out, path.name, "build")


def cmd_export_vectors(args: argparse.Namespace) -> None:
    from aisle.indexing.vectors import export_vectors

    print(f"wrote the catalog vectors of {args.index} to {export_vectors(args.index, args.out)}")


def cmd_update(args: argparse.Namespace) -> None:
    from aisle.indexing.update import update_version

    # The model is loaded once the current version is known: by default with the backend
    # that embedded it, so new vectors match the old ones.
    join_ray(args)
    path = update_version(args.data, args.out, engine=args.engine, keep=args.keep,
                          model_ref=args.model, backend=args.backend)
    report_version(args.out, path.name, "update")


def report_version(root: Path, vid: str, job: str) -> None:
    """Say whether the version a build or update wrote is current: not when a rollback or
    promote while it ran (it stands; the log said so)."""
    from aisle.indexing.versions import current_id

    if current_id(root) == vid:
        print(f"index version {vid} is current in {root}")
    else:
        print(f"index version {vid} is written in {root}, not current: the current version "
              f"changed while the {job} ran; aisle index promote --out {root} {vid} makes it "
              "current")


def _check_root(out: Path) -> None:
    """Refuse an ``--out`` that is no versioned index root: ``list`` said any folder (a typo,
    a plain index directory) held no versions, and ``prune`` wrote its lock files into it."""
    from aisle.artifacts import MANIFEST
    from aisle.errors import AisleError
    from aisle.retrieval.layout import VERSIONS, is_versioned

    if is_versioned(out) or (out / VERSIONS).is_dir():
        return
    if (out / MANIFEST).is_file():
        raise AisleError(f"{out} is a plain index directory, not a versioned root: it has no "
                         "versions (aisle index build --out ROOT writes them)")
    raise AisleError(f"{out} is not an index root (no {VERSIONS}/ folder, no CURRENT file); "
                     "give the --out an index build wrote")


def cmd_list(args: argparse.Namespace) -> None:
    from aisle.indexing.versions import list_versions

    _check_root(args.out)
    versions = list_versions(args.out)
    if not versions:
        print(f"{args.out} holds no index versions; build one: aisle index --data ... --out ...")
    for v in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created))
        print(f"{'*' if v.current else ' '} {v.id}  {created}  {v.count:>10} products  "
              f"{v.runtime or 'runtime unknown':<18}  {v.model}")


def cmd_promote(args: argparse.Namespace) -> None:
    from aisle.indexing.versions import promote

    promote(args.out, args.version)
    print(f"{args.version} is now current in {args.out}")


def cmd_rollback(args: argparse.Namespace) -> None:
    from aisle.indexing.versions import rollback

    print(f"{rollback(args.out)} is now current in {args.out}")


def cmd_prune(args: argparse.Namespace) -> None:
    from aisle.indexing.versions import prune

    _check_root(args.out)
    removed = prune(args.out, args.keep)
    print(f"removed {len(removed)} version(s): {' '.join(removed) or '-'}")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--keep``: the current version always stays)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be >= 1 (got {value}): the current version always stays"
        )
    return value


def _root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="index root (holds versions/, CURRENT)")


def _job(p: argparse.ArgumentParser) -> None:
    from aisle.indexing.versions import DEFAULT_KEEP

    p.add_argument("--data", type=Path, required=True, help="prepared or canonical CSV dir")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="run the embedding step in this process or as a Ray Data job")
    p.add_argument("--ray-address", default=None,
                   help="with --engine ray: the Ray cluster to join (host:port, ray://host:port "
                   "or auto; default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--keep", type=positive_int, default=DEFAULT_KEEP,
                   help="versions to keep after publishing: the current one and the keep-1 "
                   "promoted most recently before it (see aisle index prune --help)")


def add_index_parsers(sub: Any, add_command: Any) -> None:
    from aisle.towers.cli import add_backend_argument
    from aisle.towers.config import BACKENDS

    index = add_command(sub, "index", "build and manage versioned FAISS indexes",
                        "aisle index --data runs/hd --out runs/hd-index   # = aisle index build")
    isub = index.add_subparsers(dest="index_command", required=True)

    p = add_command(isub, "build", "embed the catalog and publish a new current version",
                    "aisle index build --data runs/hd --out runs/hd-index --keep 3")
    _job(p)
    _root(p)
    p.add_argument("--model", default=None, help="model dir (default: the base model)")
    add_backend_argument(p)
    p.add_argument("--config", type=Path, default=None, help="IndexConfig TOML file")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--vectors", type=Path, default=None,
                   help="precomputed product vectors (parquet: product_id, vector; made by "
                   "--model, see aisle index export-vectors); nothing is embedded")
    p.add_argument("overrides", nargs="*", help="IndexConfig key=value overrides")
    p.set_defaults(func=cmd_build)

    p = add_command(isub, "update",
                    "new version from the current one: add, re-embed changed, remove deleted",
                    "aisle index update --data runs/hd-today --out runs/hd-index")
    _job(p)
    _root(p)
    p.add_argument("--model", default=None, help="model dir (default: the current version's)")
    # Not add_backend_argument: its default (the model's tower config) is wrong here.
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="how the towers run (as for build); default: the backend that embedded "
                   "the current version (another one is refused: vectors must not mix)")
    p.set_defaults(func=cmd_update)

    p = add_command(isub, "list", "the versions of an index root (* = current)",
                    "aisle index list --out runs/hd-index")
    _root(p)
    p.set_defaults(func=cmd_list)

    p = add_command(isub, "promote", "make a version current",
                    "aisle index promote --out runs/hd-index 20250101T120000Z-1a2b3c")
    _root(p)
    p.add_argument("version", help="version id, from aisle index list")
    p.set_defaults(func=cmd_promote)

    p = add_command(isub, "rollback", "make the previously current version current again",
                    "aisle index rollback --out runs/hd-index")
    _root(p)
    p.set_defaults(func=cmd_rollback)

    p = add_command(isub, "prune",
                    "delete the versions neither current nor ones rollback returns to",
                    "aisle index prune --out runs/hd-index --keep 3")
    _root(p)
    p.add_argument("--keep", type=positive_int, required=True,
                   help="versions to keep (>= 1): the current one and the keep-1 promoted "
                   "most recently before it, what rollback returns to. A version never made "
                   "current counts in no keep: it stays while newer than the current one (for "
                   "aisle index promote), then goes")
    p.set_defaults(func=cmd_prune)

    p = add_command(isub, "export-vectors",
                    "write a built index's catalog vectors as aisle index --vectors takes them",
                    "aisle index export-vectors --index runs/hd-index --out runs/hd-vec.parquet")
    p.add_argument("--index", type=Path, required=True, help="index root or index directory")
    p.add_argument("--out", type=Path, required=True, help="parquet file to write")
    p.set_defaults(func=cmd_export_vectors)
