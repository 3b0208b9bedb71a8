"""Atomic publication of files and directories, manifests and content fingerprints."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aisle import __version__
from aisle.errors import ArtifactError

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temp directory next to ``out``; on success publish it as ``out``.

    On any error the temp directory is removed and ``out`` (if it existed) is untouched.
    Replacing an existing directory is two renames (old aside, new in), so a reader never
    sees a half-written directory.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    body = {"code_version": code_version(), **manifest}
    atomic_write_text(Path(directory) / MANIFEST, json.dumps(body, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: Path, kind: str) -> dict[str, Any]:
    """Read ``directory/manifest.json`` and check it describes an artifact of ``kind``."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a {kind} directory: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt ({e}); rebuild the {kind}") from e
    if manifest.get("kind") != kind:
        raise ArtifactError(
            f"{directory} holds a {manifest.get('kind')!r} artifact, expected a {kind!r}"
        )
    return dict(manifest)


def sha256_file(path: Path, h: Any = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return str(h.hexdigest())


def tree_fingerprint(root: Path, skip: frozenset[str] = frozenset({MANIFEST})) -> str:
    """sha256 over every file's relative path and bytes under ``root`` (sorted, stable)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in skip and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root).as_posix()).encode())
            h.update(b"\0")
            sha256_file(p, h)
    return h.hexdigest()


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__
