"""Where a versioned index root keeps its served version (``aisle.indexing.versions``
writes the layout; this is what a reader needs to find the index to load)."""

from __future__ import annotations

from pathlib import Path

from aisle.artifacts import MANIFEST
from aisle.errors import ArtifactError

CURRENT = "CURRENT"
VERSIONS = "versions"
# What an index directory's manifest says it is (here, not in store.py, which imports faiss).
INDEX_KIND = "aisle.index"


def is_versioned(root: Path) -> bool:
    return (Path(root) / CURRENT).is_file()


def current_id(root: Path) -> str | None:
    path = Path(root) / CURRENT
    if not path.is_file():
        return None
    vid = path.read_text(encoding="utf-8").strip()
    return vid or None


def version_dir(root: Path, vid: str) -> Path:
    if not vid or "/" in vid or vid.startswith("."):
        raise ArtifactError(f"{vid!r} is not a version id; see `aisle index list --out {root}`")
    return Path(root) / VERSIONS / vid


def resolve_index_dir(path: Path) -> Path:
    """The directory holding the index: ``ROOT/versions/<CURRENT>`` for a versioned root, else
    ``path`` itself (a plain or legacy index directory)."""
    path = Path(path)
    vid = current_id(path)
    if vid is None:
        if is_versioned(path):  # emptied by hand, or by a full disk before publishing was safe
            raise ArtifactError(
                f"{path}/{CURRENT} is empty; it must name the version to serve: "
                f"aisle index list --out {path}, then aisle index promote --out {path} <id>"
            )
        return path
    target = version_dir(path, vid)
    if not (target / MANIFEST).is_file():
        raise ArtifactError(
            f"{path}/{CURRENT} names version {vid!r}, but {target} is missing or incomplete; "
            f"promote another one: aisle index promote --out {path} <id>"
        )
    return target
