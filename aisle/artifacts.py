"""Atomic publication of files and directories, manifests and content fingerprints."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aisle import __version__
from aisle.errors import AisleError, ArtifactError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


# What an existing ``out`` may be for ``atomic_dir`` to replace it without asking: a canonical
# CSV directory (what importers and the sample write; it has no manifest).
CANONICAL = "canonical-csv"
_CANONICAL_FILES = frozenset({"queries.csv", "products.csv", "judgments.csv"})


def sibling_temp(path: Path, tag: str) -> Path:
    """``.<name>.<tag>-<pid>-<ns>`` beside ``path``: a temporary path of this process (what
    ``aisle index prune``, and the next publish to ``path``, recognise as a killed job's
    leftover once that pid is gone and it is over ``LEFTOVER_AGE_S`` old)."""
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{time.time_ns()}"


# A temporary path younger than this is never a leftover, whatever its pid says: the same
# pid may belong to a live job in another pid namespace.
LEFTOVER_AGE_S = 3600.0


def older_than(path: Path, seconds: float) -> bool:
    """Whether nothing in ``path`` (the path itself, and each file and folder under it when
    it is a folder) was modified in the last ``seconds``: a job that is still writing into
    a file of its tree leaves the folder's own mtime as it was. False once it is gone."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                try:
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
                except FileNotFoundError:
                    continue
    return time.time() - newest > seconds


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still run (this one, or one this process cannot signal)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or an absurd pid): leave its files alone
    return True


def fsync_path(path: Path) -> None:
    """Flush ``path``'s contents (a file) or entries (a directory) to the disk.

    A platform or filesystem that cannot open or flush a directory (Windows; some network
    filesystems answer EINVAL) is let be: there the rename is as durable as it gets."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            if not os.path.islink(os.path.join(directory, name)):
                fsync_path(Path(directory, name))
        fsync_path(Path(directory))


def publish(tmp: Path, path: Path) -> None:
    """``os.replace(tmp, path)`` that survives a power loss: ``tmp`` (a file, or a directory
    with everything in it) reaches the disk before the rename does, and the rename before this
    returns, so ``path`` then holds the old contents or the new, never a torn or empty file."""
    if Path(tmp).is_dir():
        _fsync_tree(Path(tmp))
    else:
        fsync_path(Path(tmp))
    os.replace(tmp, path)
    fsync_path(Path(path).parent)


def manifest_kind(directory: Path) -> str | None:
    """The ``kind`` that ``directory``'s manifest declares; None if it has no readable one."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def check_replaceable(out: Path, kind: str) -> None:
    """Refuse an ``out`` that exists and is not an earlier artifact of ``kind``.

    Publishing replaces ``out`` whole, so a mistyped ``--out`` (a runs folder, the input data,
    a file) would delete whatever is there. It may be absent, an empty directory, a directory
    whose manifest says ``kind``, or, for ``CANONICAL``, a directory of the canonical CSVs only.
    Callers of long jobs call this first, before the work, so nothing is spent on a refusal.
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    hint = "pick another output path (or delete it yourself if nothing in it is needed)"
    if not out.is_dir():
        raise ArtifactError(f"{out} exists and is not a directory; {hint}")
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    if kind == CANONICAL:
        if entries <= _CANONICAL_FILES:
            return
        extra = sorted(entries - _CANONICAL_FILES)[:3]
        raise ArtifactError(
            f"{out} exists and holds more than a canonical CSV directory ({extra}); {hint}"
        )
    found = manifest_kind(out)
    if found != kind:
        what = f"a {found!r} artifact" if found else "no aisle artifact"
        raise ArtifactError(f"{out} exists and holds {what}, not a {kind!r} to replace; {hint}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _discard(path: Path, out: Path) -> None:
    """Delete ``path``, a copy of ``out`` set aside, renaming it ``.<name>.deleting-...`` first:
    a kill while a large tree is deleted then leaves no half-deleted ``.old-`` copy, which
    ``recover_publish`` would move back as ``out``."""
    doomed = sibling_temp(out, "deleting")
    try:
        os.replace(path, doomed)
    except FileNotFoundError:
        return  # deleted meanwhile
    _remove(doomed)


def recover_publish(out: Path) -> bool:
    """Undo what an ``atomic_dir`` publish killed between its two renames left behind.

    The old ``out`` was set aside as ``.<name>.old-<pid>-<ns>`` and the new one never moved
    in, so ``out`` is missing. With ``out`` missing, the newest such copy of a process that
    no longer runs is moved back (logged; True); the killed job did not finish, so its
    previous output stands. Any other such copy is stale (``out`` was published after it)
    and is removed, as is what a killed delete left (``.<name>.deleting-<pid>-<ns>``: a copy
    is renamed so before it is deleted, so a half-deleted one is never moved back). A copy
    whose process still runs is left alone: it may be between its two renames right now.
    A killed job's temporary tree (``.<name>.tmp-<pid>-<ns>``, whole or half written: never
    moved in) is removed once it is over ``LEFTOVER_AGE_S`` old as well, as ``aisle index
    prune`` removes an index root's (a younger one's pid may be a live job's in another pid
    namespace).
    """
    out = Path(out)
    pattern = re.compile(re.escape(f".{out.name}.") + r"(old|deleting|tmp)-(\d+)-(\d+)$")
    found = []
    try:
        entries = list(out.parent.iterdir()) if out.parent.is_dir() else []
    except OSError:  # a parent this user cannot list: nothing here to recover
        entries = []
    for p in entries:
        m = pattern.match(p.name)
        if m is None or pid_alive(int(m[2])):
            continue
        if m[1] == "deleting":  # a killed delete's: never a whole copy
            _remove(p)
            log.info("removed %s: what a killed publish was deleting", p)
        elif m[1] == "tmp":
            if older_than(p, LEFTOVER_AGE_S):
                _remove(p)
                log.info("removed %s: what a killed publish of %s was writing", p, out.name)
        else:
            found.append((int(m[3]), p))
    aside = [p for _, p in sorted(found)]
    restored = False
    if aside and not out.exists() and not out.is_symlink():
        newest = aside.pop()
        try:
            os.replace(newest, out)
        except OSError as e:
            raise ArtifactError(
                f"{out} is missing: a publish was killed between its two renames and left "
                f"the previous {out.name} at {newest}, which cannot be moved back ({e}); "
                f"rename it to {out} yourself"
            ) from e
        fsync_path(out.parent)
        log.warning("restored %s from %s: a publish was killed between its two renames, "
                    "so the previous %s stands", out, newest.name, out.name)
        restored = True
    for stale in aside:
        _discard(stale, out)
        log.info("removed %s: a copy of %s that a killed publish set aside", stale, out.name)
    return restored


def restore_missing(path: Path) -> None:
    """For a loader: put back ``path`` when it is missing because a publish was killed
    between its two renames (``recover_publish``); a present ``path`` is left as it is."""
    if not Path(path).exists():
        recover_publish(Path(path))


def _check_not_working_dir(out: Path) -> None:
    """Refuse to publish over the working directory or a folder that holds it: replacing it
    would leave this process, and the shell that started it, in a deleted directory."""
    try:
        here = Path(os.getcwd())  # its real path
    except OSError:  # deleted under this process: no output path can be it
        return
    # The parents' real paths, not out's own: a link at out is replaced, not followed.
    out = Path(os.path.realpath(out.parent)) / out.name
    if out == here or out in here.parents:
        raise ArtifactError(
            f"{out} is the working directory or holds it; give another output path, or run "
            "the command from another directory"
        )


@contextlib.contextmanager
def atomic_dir(out: Path, kind: str | None) -> Iterator[Path]:
    """Yield a temp directory next to ``out``; on success publish it as ``out``.

    On any error the temp directory is removed and ``out`` (if it existed) is untouched.
    Replacing an existing directory is two renames (old aside, new in), so a reader never
    sees a half-written directory; a process killed between them leaves ``out`` missing, and
    the next ``atomic_dir`` on ``out`` (or a loader that finds it missing) puts the old one
    back (``recover_publish``). Not for two processes publishing one ``out`` at once. An
    existing ``out`` must pass ``check_replaceable(out, kind)``, checked before anything is
    written; ``kind=None`` is for a caller's own private paths (checkpoints, a model's export
    folder), which are always replaced. The directory is created with the process umask,
    like any other, not private to its owner.
    """
    # Absolute: "." or "out/.." would name no sibling to publish beside.
    out = Path(os.path.abspath(out))
    _check_not_working_dir(out)
    recover_publish(out)
    if kind is not None:
        check_replaceable(out, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_temp(out, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_tree(tmp)  # the new tree is on the disk before the old one steps aside
    old = None
    if out.exists() or out.is_symlink():
        old = sibling_temp(out, "old")
        try:
            os.replace(out, old)
        except BaseException:  # out is as it was; the new tree is not published
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    try:
        os.replace(tmp, out)
    except BaseException:  # an error or Ctrl-C between the renames: the old one goes back
        try:
            if old is not None:
                os.replace(old, out)
        except OSError:  # the first error is what to report; recover_publish tries again
            log.warning("could not put %s back as %s", old, out, exc_info=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(out.parent)
    if old is not None:
        _discard(old, out)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and ``os.replace`` (mode as umask allows)."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory; give a file path to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_temp(path, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_not_input(out: Path, inputs: Sequence[Path | None], flag: str = "--out") -> None:
    """Refuse an output file that is one of the command's inputs or lies inside an input
    directory, before any work: `aisle qrels --out DATA/judgments.csv` replaced the judgments
    it read, and `aisle report --out RUN` one of the runs it compared."""
    target = Path(os.path.realpath(out))
    for given in inputs:
        if given is None:
            continue
        source = Path(os.path.realpath(given))
        if target == source or source in target.parents:
            what = "overwrite" if target == source else "write into"
            raise AisleError(f"{flag} {out} would {what} {given}, which this command reads; "
                             "write it elsewhere")


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``directory``'s manifest; the directory must exist (a manifest alone in a
    directory that was deleted meanwhile, e.g. a pruned version, would look like an artifact)."""
    if not Path(directory).is_dir():
        raise ArtifactError(f"{directory} does not exist (deleted meanwhile?); nothing written")
    body = {"code_version": code_version(), **manifest}
    atomic_write_text(Path(directory) / MANIFEST, json.dumps(body, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: Path, kind: str) -> dict[str, Any]:
    """Read ``directory/manifest.json`` and check it describes an artifact of ``kind``."""
    path = Path(directory) / MANIFEST
    restore_missing(directory)
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a {kind} directory: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt ({e}); rebuild the {kind}") from e
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} is not a JSON object; rebuild the {kind}")
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


def manifest_fingerprint(manifest: Mapping[str, Any]) -> str:
    """A short stable hash of a manifest (key order ignored): what identifies the artifact
    it describes, e.g. an index's model, data, fusion and version."""
    text = json.dumps(manifest, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tree_files(root: Path, skip: frozenset[str] = frozenset({MANIFEST}),
               hidden_dirs: bool = True) -> list[Path]:
    """The files under ``root`` that ``tree_fingerprint`` hashes, sorted: all but those named
    in ``skip`` and those under ``__pycache__`` (and, without ``hidden_dirs``, those in a
    folder under ``root`` whose name starts with a dot)."""
    root = Path(root)
    return [p for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and "__pycache__" not in p.parts
            and (hidden_dirs or not any(part.startswith(".")
                                        for part in p.relative_to(root).parts[:-1]))]


def tree_fingerprint(root: Path, skip: frozenset[str] = frozenset({MANIFEST}),
                     hidden_dirs: bool = True) -> str:
    """sha256 over each ``tree_files`` file's relative path and bytes (sorted, stable)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in tree_files(root, skip, hidden_dirs):
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
