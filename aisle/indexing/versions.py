"""Versioned index roots: immutable ``versions/<id>/`` directories and an atomic ``CURRENT``.

Layout of a root::

    ROOT/CURRENT              the served version's id (one line, replaced with os.replace)
    ROOT/HISTORY              ids promoted so far, oldest first (what rollback walks back)
    ROOT/versions/<id>/       manifest.json, index.faiss, rows.parquet, bm25/, partitions/
    ROOT/embed-cache/         product embeddings by (model fingerprint, text hash)
    ROOT/work/                checkpoints of an unfinished build (resume)
    ROOT/.build.lock          held by the one build or update writing into ROOT
    ROOT/.pointer.lock        held while CURRENT / HISTORY / versions are changed

A plain index directory (a version directory, or one written before versions existed) is
accepted wherever a root is: it is its own current version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisle.artifacts import (
    LEFTOVER_AGE_S,
    MANIFEST,
    atomic_write_text,
    manifest_kind,
    older_than,
    pid_alive,
    sibling_temp,
)
from aisle.errors import ArtifactError
from aisle.retrieval.layout import (
    CURRENT,
    INDEX_KIND,
    VERSIONS,
    current_id,
    version_dir,
)

log = logging.getLogger(__name__)

HISTORY = "HISTORY"
EMBED_CACHE = "embed-cache"
WORK = "work"
DEFAULT_KEEP = 3
BUILD_LOCK = ".build.lock"
POINTER_LOCK = ".pointer.lock"


@contextlib.contextmanager
def locked(root: Path, name: str, what: str, wait: bool,
           create: bool = False) -> Iterator[None]:
    """Hold ``ROOT/<name>`` exclusively (an OS file lock: released when the process dies).

    ``wait=False``: fail at once, saying who holds it. Builds use that, because two builds
    into one root would share its work directory and embedding cache. Pointer changes are
    short and wait their turn. ``create``: make ``root`` first (a first build); otherwise a
    missing root is an error, not a new empty directory.
    """
    root = Path(root)
    if create:
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        raise ArtifactError(f"{root} does not exist; pass the --out of an `aisle index` build")
    path = root / name
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ArtifactError(
                f"{root} is busy: {holder} is writing it. Wait for that job to finish, or "
                "build into another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{what} (pid {os.getpid()})")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def check_index_root(root: Path) -> None:
    """Refuse to make ``root`` an index root when it already holds something else.

    A build writes ``versions/``, ``CURRENT`` and its caches into the root it is given, so
    ``--out`` naming a model directory, prepared data or a runs folder would mix an index into
    it. ``root`` may be absent, empty, an index root already, or a single index directory.
    """
    root = Path(root)
    if not root.exists():
        return
    hint = "pick an empty or new --out for the index"
    if not root.is_dir():
        raise ArtifactError(f"{root} exists and is not a directory; {hint}")
    names = {p.name for p in root.iterdir()}
    # What a build puts in a root (a first build killed before publishing leaves its locks,
    # work directory and embedding cache, and must resume), temp paths included.
    own = {CURRENT, HISTORY, VERSIONS, EMBED_CACHE, WORK}
    if all(n in own or n[:1] == "." for n in names):
        return
    # A root with files of its owner's beside it (a README) is one when it holds an index
    # version: a CURRENT file or a versions/ folder alone is no proof (a LevelDB keeps a
    # CURRENT, a model registry may keep versions/), and a build would overwrite the one and
    # prune the other's folders. What is not an index under versions/ is never listed, so
    # never pruned.
    if (CURRENT in names or VERSIONS in names) and INDEX_KIND in _version_kinds(root):
        return
    kind = manifest_kind(root)
    if kind == INDEX_KIND:
        return
    what = f"a {kind!r} artifact" if kind else "files that are not an index"
    raise ArtifactError(f"{root} holds {what}, not an index root; {hint}")


def _version_kinds(root: Path) -> set[str | None]:
    """The manifest kinds of ``root/versions/*`` (temporary paths left out)."""
    base = Path(root) / VERSIONS
    if not base.is_dir():
        return set()
    return {manifest_kind(d) for d in base.iterdir() if d.is_dir() and d.name[:1] != "."}


@dataclass(frozen=True)
class VersionInfo:
    id: str
    path: Path
    created: float
    count: int
    model: str
    current: bool
    runtime: str | None = None  # what embedded its vectors (None: unknown, or not recorded)
    fingerprint: str = ""  # of the model that embedded them ("" where the manifest lacks it)


def check_keep(keep: int) -> None:
    """Refuse a ``keep`` below 1 (builds call this before any work, not after publishing)."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ArtifactError(
            f"keep must be an integer >= 1 (got {keep!r}): the current version always stays"
        )


def new_version_id() -> str:
    """``20250101T120000Z-1a2b3c``: sorts by build time, unique across concurrent builds."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)










def _history(root: Path) -> list[str]:
    path = Path(root) / HISTORY
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_history(root: Path, ids: list[str]) -> None:
    atomic_write_text(Path(root) / HISTORY, "".join(f"{i}\n" for i in ids))


def _switch(root: Path, vid: str) -> None:
    # One os.replace: a reader sees the old id or the new one, never a torn file.
    atomic_write_text(Path(root) / CURRENT, vid + "\n")


def _read_version_manifest(path: Path) -> dict[str, Any] | None:
    """A version's manifest as a dict, or None (logged) when it is unreadable or not an object:
    one damaged version must not break listing, promoting or pruning the others."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("skipping version %s: its %s is unreadable (%s); delete that directory",
                    path.parent.name, MANIFEST, e)
        return None
    if not isinstance(manifest, dict):
        log.warning("skipping version %s: its %s is not a JSON object; delete that directory",
                    path.parent.name, MANIFEST)
        return None
    return manifest


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _runtime(model: object) -> str | None:
    """What embedded a version's vectors, from its manifest's ``model`` record."""
    from aisle.retrieval.store import recorded_runtime

    return recorded_runtime({"model": model}) if isinstance(model, dict) else None


def list_versions(root: Path) -> list[VersionInfo]:
    """Every complete version under ``root``, oldest first; a version whose manifest cannot be
    read is left out (and logged), never deleted."""
    root = Path(root)
    cur = current_id(root)
    out = []
    base = root / VERSIONS
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        path = d / MANIFEST
        if d.name.startswith(".") or not path.is_file():
            continue  # a build in progress (atomic_dir temp) or a broken leftover
        m = _read_version_manifest(path)
        if m is None:
            continue
        if m.get("kind") != INDEX_KIND:  # never listed, so never pruned
            log.warning("skipping %s: its %s says kind %r, not an index; move it out of %s",
                        d, MANIFEST, m.get("kind"), base)
            continue
        model = m.get("model")
        out.append(
            VersionInfo(
                id=d.name,
                path=d,
                created=_number(m.get("created"), path.stat().st_mtime),
                count=int(_number(m.get("count"), 0)),
                model=str(model.get("ref", "")) if isinstance(model, dict) else "",
                current=d.name == cur,
                runtime=_runtime(model),
                fingerprint=str(model.get("fingerprint") or "") if isinstance(model, dict)
                else "",
            )
        )
    return sorted(out, key=lambda v: (v.created, v.id))


def promote(root: Path, vid: str, replacing: str | None = None) -> bool:
    """Make ``vid`` the current version (atomically) and push it on the history; True.
    ``replacing``: only if the current version is still that one (an update made ``vid``
    from it); else ``vid`` stays as it is, not current, and False says so."""
    with locked(root, POINTER_LOCK, f"promote {vid}", wait=True):
        if replacing is not None and current_id(root) != replacing:
            return False
        _promote(root, vid)
        return True


def _promote(root: Path, vid: str) -> None:
    target = version_dir(root, vid)
    if not (target / MANIFEST).is_file():
        known = ", ".join(v.id for v in list_versions(root)) or "none"
        raise ArtifactError(f"{root} has no version {vid!r}; versions: {known}")
    if _read_version_manifest(target / MANIFEST) is None:
        raise ArtifactError(
            f"version {vid!r} of {root} has an unreadable {MANIFEST}; promote another one "
            f"(aisle index list --out {root}) or delete {target}"
        )
    _switch(root, vid)
    history = _history(root)
    if not history or history[-1] != vid:
        _write_history(root, [*history, vid])
    log.info("%s: current version is now %s", root, vid)


def rollback(root: Path) -> str:
    """Switch back to the version promoted before the current one; return its id."""
    with locked(root, POINTER_LOCK, "rollback", wait=True):
        return _rollback(root)


def _rollback(root: Path) -> str:
    cur = current_id(root)
    history = [h for h in _history(root) if (version_dir(root, h) / MANIFEST).is_file()]
    while history and history[-1] == cur:
        history.pop()
    if cur is None or not history:
        raise ArtifactError(
            f"{root}: no earlier version to roll back to (current: {cur}); "
            f"`aisle index list --out {root}` shows what exists"
        )
    previous = history[-1]
    # History first: a kill between the two writes leaves CURRENT on the version rolled back
    # from and a history without it, and the rollback run again moves back to ``previous``.
    # (CURRENT first would leave that version last in the history, and the next rollback
    # would switch forward onto it.)
    _write_history(root, history)
    _switch(root, previous)
    log.info("%s: rolled back from %s to %s", root, cur, previous)
    return previous


def prune(root: Path, keep: int = DEFAULT_KEEP, holds_build_lock: bool = False) -> list[str]:
    """Delete the versions that ``keep`` does not cover; the current one is never deleted.

    ``keep`` counts what a rollback needs: the current version and the ``keep - 1`` versions
    promoted most recently before it (``HISTORY``, newest first: the order rollback walks).
    A version that is not in ``HISTORY`` (never made current, such as a job's version written
    while an operator rolled back, or one rolled back from) counts toward no ``keep``: it
    stays while it is newer than the current version, for ``aisle index promote``, and goes
    once a newer one is current, since no rollback returns to it. Counted among the newest
    (as before), such a version could push out the one a rollback needs.

    Also removes what killed jobs left behind (``remove_leftovers``) and the embedding caches
    that no remaining version uses (``unused_caches``), but only while no build or update can
    be running: with ``ROOT/.build.lock`` held, by the caller (a build that publishes,
    ``holds_build_lock``) or taken here without waiting. A build in another container or host
    has a pid this process cannot see, so a pid alone cannot tell. The locks are held while
    caches are set aside (renamed), not while their files are deleted.
    """
    check_keep(keep)
    doomed: list[Path] = []
    with locked(root, POINTER_LOCK, f"prune --keep {keep}", wait=True), \
            contextlib.ExitStack() as held:
        removed = _prune(root, keep)
        idle = holds_build_lock
        if not idle:
            try:
                held.enter_context(locked(root, BUILD_LOCK, "aisle index prune", wait=False))
                idle = True
            except ArtifactError:
                log.info("%s: a build is running; its temporary files and embedding caches "
                         "are left alone", root)
        if idle:
            remove_leftovers(root)
            for cache in unused_caches(root):
                doomed.append(sibling_temp(cache, "deleting"))
                cache.rename(doomed[-1])
    for path in doomed:  # a delete killed here is a leftover for the next prune
        shutil.rmtree(path, ignore_errors=True)
    if doomed:
        log.info("%s: removed %d embedding cache(s) no version uses", root, len(doomed))
    return removed


def unused_caches(root: Path) -> list[Path]:
    """The embedding caches (``ROOT/embed-cache/<model>-<runtime>``) that no version of
    ``root`` embeds with and that were last written before its oldest version was made: a new
    model or int8 export starts a new cache, and the old one (15 GB for 10M 384-d products)
    would stay for good. A cache written since (a build that was killed, and may resume) is
    kept until the versions move past it; nothing is removed while a version's manifest cannot
    be read (it may use any). Call with ``ROOT/.build.lock`` held."""
    from aisle.indexing.embed_cache import cache_key

    cache = Path(root) / EMBED_CACHE
    versions = list_versions(root)
    if not cache.is_dir() or not versions:
        return []
    used = set()
    for v in versions:
        if not v.fingerprint:
            log.info("%s: version %s does not say what embedded it; embedding caches are kept",
                     root, v.id)
            return []
        if v.runtime is not None:  # None: vectors from a file, in no cache
            used.add(cache_key(v.fingerprint, v.runtime))
    listed = {v.id for v in versions}
    if any(not d.name.startswith(".") and d.name not in listed
           for d in (Path(root) / VERSIONS).iterdir()):
        log.info("%s: a version cannot be read; embedding caches are kept", root)
        return []
    oldest = min(v.created for v in versions)
    return [d for d in sorted(cache.iterdir())
            if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
            and d.name not in used and d.stat().st_mtime < oldest]


def _kept(versions: list[VersionInfo], history: list[str], keep: int) -> set[str]:
    """The ids of ``versions`` (oldest first) that ``prune(root, keep)`` keeps."""
    listed = {v.id for v in versions}
    current = next((i for i, v in enumerate(versions) if v.current), None)
    kept = set() if current is None else {versions[current].id}
    for vid in reversed(history):
        if len(kept) >= keep:
            break
        if vid in listed:
            kept.add(vid)
    # Without a readable current version, every version never served is newer than it.
    newer = versions if current is None else versions[current + 1:]
    return kept | {v.id for v in newer if v.id not in history}


def _prune(root: Path, keep: int) -> list[str]:
    versions = list_versions(root)
    kept = _kept(versions, _history(root), keep)
    removed = []
    for v in versions:
        if v.id in kept or v.current:
            continue
        # Rename first so a half-deleted directory never looks like a version.
        doomed = sibling_temp(v.path, "deleting")
        v.path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(v.id)
    if removed:
        _write_history(root, [h for h in _history(root) if h not in removed])
        log.info("%s: pruned %d old version(s): %s", root, len(removed), ", ".join(removed))
    return removed


# Temporary paths of this package: ``aisle.artifacts.sibling_temp``'s ``.<name>.<tag>-<pid>-<ns>``
# (tags tmp, old, deleting) and the embedding cache's ``.<name>.tmp-<pid>``; before pids were
# recorded prune wrote ``.<id>.deleting``.
_LEFTOVER = re.compile(r"^\..+\.(?:tmp|old|deleting)-(?P<pid>\d+)(?:-\d+)?$")
_OLD_DELETING = re.compile(r"^\..+\.deleting$")


def remove_leftovers(root: Path) -> list[Path]:
    """Delete the temporary files and directories of jobs that were killed: those whose
    recorded pid is no longer running and that are over ``LEFTOVER_AGE_S`` old (and pid-less
    ``.deleting`` directories, which only an earlier prune, holding the pointer lock, could have
    made). Returns what was removed.

    Called by ``prune`` with ``ROOT/.pointer.lock`` and ``ROOT/.build.lock`` held, so no build
    or update of this root is running."""
    root = Path(root)
    places = [root, root / VERSIONS]
    cache = root / EMBED_CACHE
    if cache.is_dir():  # a cache being deleted, and each cache's shards
        places += [cache, *(d for d in cache.iterdir() if d.is_dir() and not d.is_symlink())]
    removed = []
    for place in places:
        if not place.is_dir():
            continue
        for p in place.iterdir():
            m = _LEFTOVER.match(p.name)
            if m is not None:
                if pid_alive(int(m["pid"])) or not older_than(p, LEFTOVER_AGE_S):
                    continue
            elif not (place.name == VERSIONS and _OLD_DELETING.match(p.name)):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.info("%s: removed %d leftover(s) of killed jobs: %s", root, len(removed),
                 ", ".join(p.name for p in removed))
    return removed
