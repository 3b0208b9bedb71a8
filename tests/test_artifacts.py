"""Atomic publication: what an output path may replace, and the modes it publishes with."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisle.artifacts import (
    CANONICAL,
    LEFTOVER_AGE_S,
    atomic_dir,
    atomic_write_text,
    write_manifest,
)
from aisle.cli import main
from aisle.errors import ArtifactError


def _publish(out: Path, kind: str | None, text: str = "new") -> None:
    with atomic_dir(out, kind) as tmp:
        write_manifest(tmp, {"kind": kind or "private"})
        (tmp / "payload.txt").write_text(text)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_an_earlier_artifact_of_the_same_kind_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    _publish(out, "aisle.thing", "second")
    assert (out / "payload.txt").read_text() == "second"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("content", ["user", "other-kind", "file", "corrupt-manifest"])
def test_anything_else_at_the_output_path_is_refused_and_kept(
    tmp_path: Path, content: str
) -> None:
    out = tmp_path / "out"
    if content == "file":
        out.write_text("notes")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("notes")
        if content == "other-kind":
            write_manifest(out, {"kind": "aisle.other"})
        if content == "corrupt-manifest":
            (out / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"pick another output path \(or delete it yourself"):
        _publish(out, "aisle.thing")
    if content == "file":
        assert out.read_text() == "notes"
    else:
        assert (out / "notes.txt").read_text() == "notes"
    assert _leftovers(tmp_path) == []


def test_a_relative_output_path_publishes_beside_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    _publish(Path("../work/../out"), "aisle.thing", "first")
    _publish(Path("../out"), "aisle.thing", "second")
    assert (tmp_path / "out" / "payload.txt").read_text() == "second"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", [".", ".."])
def test_the_working_directory_or_one_that_holds_it_is_refused_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    (out / "sub").mkdir()
    monkeypatch.chdir(out if where == "." else out / "sub")
    with pytest.raises(ArtifactError, match="is the working directory or holds it"):
        _publish(Path(where), "aisle.thing", "second")
    assert (out / "payload.txt").read_text() == "first"
    assert _leftovers(tmp_path) == [] and _leftovers(out) == []


def test_the_working_directory_reached_through_a_link_is_refused_and_a_deleted_one_is_no_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    out = tmp_path / "real" / "out"
    _publish(out, "aisle.thing", "first")
    monkeypatch.chdir(out)
    with pytest.raises(ArtifactError, match="is the working directory or holds it"):
        _publish(tmp_path / "link" / "out", "aisle.thing", "second")
    assert (out / "payload.txt").read_text() == "first"
    # A working directory deleted under the process is no output path: publishing goes on.
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    _publish(tmp_path / "elsewhere", "aisle.thing", "third")
    assert (tmp_path / "elsewhere" / "payload.txt").read_text() == "third"


def test_a_failed_first_rename_leaves_the_output_as_it_was_and_no_temporary_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aisle.artifacts as artifacts

    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    real = os.replace

    def busy(src: str | Path, dst: str | Path) -> None:
        if Path(src) == out:
            raise OSError(16, "Device or resource busy")
        real(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", busy)
    with pytest.raises(OSError, match="busy"):
        _publish(out, "aisle.thing", "second")
    assert (out / "payload.txt").read_text() == "first"
    assert _leftovers(tmp_path) == []


def test_an_empty_directory_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    _publish(tmp_path / "out", "aisle.thing")
    assert (tmp_path / "out" / "payload.txt").is_file()


def test_a_canonical_directory_replaces_only_the_three_csvs(tmp_path: Path) -> None:
    out = tmp_path / "csv"
    out.mkdir()
    for name in ("queries.csv", "products.csv"):
        (out / name).write_text("old\n")
    _publish(out, CANONICAL)
    assert not (out / "queries.csv").exists()
    (out / "raw.parquet").write_text("source data")
    with pytest.raises(ArtifactError, match=r"more than a canonical CSV directory \(\[.manifest"):
        _publish(out, CANONICAL)


def test_a_private_path_is_always_replaced(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "state.pt").write_text("old")
    _publish(out, None)
    assert not (out / "state.pt").exists()


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_published_paths_follow_the_umask_not_private_to_the_owner(
    tmp_path: Path, umask_022: None
) -> None:
    _publish(tmp_path / "out", "aisle.thing")
    atomic_write_text(tmp_path / "report.json", "{}")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "manifest.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644


def test_prepare_over_its_own_input_is_refused_before_anything_is_lost(
    sample_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for f in sample_data.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    (data / "README.txt").write_text("where this data came from")
    before = sorted(p.name for p in data.iterdir())
    assert main(["prepare", "--data", str(data), "--out", str(data)]) == 2
    assert "holds no aisle artifact" in caplog.text
    assert sorted(p.name for p in data.iterdir()) == before
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "notes.txt").write_text("keep me")
    assert main(["prepare", "--data", str(data), "--out", str(runs)]) == 2
    assert (runs / "notes.txt").read_text() == "keep me"
    # A second prepare to the same place replaces the first: a rerun still works.
    assert main(["prepare", "--data", str(data), "--out", str(tmp_path / "prep")]) == 0
    assert main(["prepare", "--data", str(data), "--out", str(tmp_path / "prep")]) == 0


def test_a_manifest_that_is_not_a_json_object_is_refused(tmp_path: Path) -> None:
    from aisle.artifacts import read_manifest

    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match=r"is not a JSON object; rebuild the aisle\.index"):
        read_manifest(tmp_path, "aisle.index")


def test_a_manifest_is_never_written_into_a_directory_that_is_gone(tmp_path: Path) -> None:
    # tune-fusion rewrites a version's manifest; if prune deleted the version meanwhile, a
    # lone manifest.json must not bring back a directory that looks like a version.
    gone = tmp_path / "versions" / "v1"
    with pytest.raises(ArtifactError, match="does not exist"):
        write_manifest(gone, {"kind": "aisle.index"})
    assert not (tmp_path / "versions").exists()


@pytest.fixture
def disk_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Each fsync (by the path its descriptor names) and each rename, in order."""
    import aisle.artifacts as artifacts

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "fsync", fsync)
    monkeypatch.setattr(artifacts.os, "replace", replace)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_a_written_file_is_on_the_disk_before_its_rename_and_the_rename_after(
    tmp_path: Path, disk_log: list[tuple[str, str]]
) -> None:
    atomic_write_text(tmp_path / "CURRENT", "v2\n")
    kinds = [kind for kind, _ in disk_log]
    assert kinds == ["fsync", "replace", "fsync"]
    assert Path(disk_log[0][1]).name.startswith(".CURRENT.tmp-")  # the temp file's contents
    assert disk_log[2][1] == str(tmp_path)  # the directory entry of the rename
    assert (tmp_path / "CURRENT").read_text() == "v2\n"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_a_published_directory_is_on_the_disk_before_the_old_one_steps_aside(
    tmp_path: Path, disk_log: list[tuple[str, str]]
) -> None:
    out = tmp_path / "index"
    with atomic_dir(out, None) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "vectors.bin").write_bytes(b"x" * 10)
        (tmp / "manifest.json").write_text("{}")
    disk_log.clear()
    with atomic_dir(out, None) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "vectors.bin").write_bytes(b"y" * 10)
        (tmp / "manifest.json").write_text("{}")
    first_rename = next(i for i, (kind, _) in enumerate(disk_log) if kind == "replace")
    flushed = {Path(p).name for kind, p in disk_log[:first_rename] if kind == "fsync"}
    assert {"vectors.bin", "manifest.json", "sub"} <= flushed
    # The rename in is flushed (the directory entry) before the old tree is deleted.
    published = disk_log.index(("replace", str(out)))
    assert disk_log[published + 1] == ("fsync", str(tmp_path))
    assert (out / "sub" / "vectors.bin").read_bytes() == b"y" * 10


def _dead_pid() -> int:
    """The pid of a process that has finished: a publish killed by a signal leaves its own."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _killed_between_renames(out: Path, pid: int, ns: int = 123) -> Path:
    """The disk as a publish killed between its two renames leaves it: ``out`` set aside, the
    new tree (complete) beside it, no ``out``."""
    aside = out.parent / f".{out.name}.old-{pid}-{ns}"
    out.rename(aside)
    (out.parent / f".{out.name}.tmp-{pid}-{ns + 1}").mkdir()
    return aside


def test_a_publish_killed_between_its_renames_is_restored_by_the_next_publish(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    pid = _dead_pid()
    _killed_between_renames(out, pid)
    # An earlier kill's copy (an older ns): stale, out was published again after it.
    (tmp_path / f".out.old-{pid}-5").mkdir()
    # The kind check sees the restored artifact: a refusal keeps it, not a missing out.
    with caplog.at_level("INFO", logger="aisle.artifacts"), \
            pytest.raises(ArtifactError, match=r"not a 'aisle\.other' to replace"):
        _publish(out, "aisle.other")
    assert (out / "payload.txt").read_text() == "first"
    assert f"restored {out}" in caplog.text
    _publish(out, "aisle.thing", "second")
    assert (out / "payload.txt").read_text() == "second"
    # The killed job's temp tree: kept while it is young (its pid may be a live job's in
    # another pid namespace), removed by the next publish once it is over LEFTOVER_AGE_S old.
    tmp = tmp_path / f".out.tmp-{pid}-124"
    (tmp / "half-written.bin").write_bytes(b"x" * 1024)
    assert _leftovers(tmp_path) == [tmp.name]
    an_hour_ago = time.time() - LEFTOVER_AGE_S - 60
    mine = tmp_path / f".out.tmp-{os.getpid()}-7"  # a live publish's, however old
    mine.mkdir()
    for p in (tmp, mine):
        os.utime(p, (an_hour_ago, an_hour_ago))
    # Its folder is old, the file in it is not: a job still writing (a live one's, elsewhere).
    _publish(out, "aisle.thing", "third")
    assert _leftovers(tmp_path) == sorted([tmp.name, mine.name])
    os.utime(tmp / "half-written.bin", (an_hour_ago, an_hour_ago))
    os.utime(tmp, (an_hour_ago, an_hour_ago))
    _publish(out, "aisle.thing", "fourth")
    assert (out / "payload.txt").read_text() == "fourth"
    assert _leftovers(tmp_path) == [mine.name]


def test_a_copy_set_aside_beside_a_present_output_is_stale_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    # Killed after both renames, before the old tree was deleted.
    (tmp_path / f".out.old-{_dead_pid()}-9").mkdir()
    (tmp_path / f".out.old-{os.getpid()}-10").mkdir()  # a live publish's: not ours to touch
    _publish(out, "aisle.thing", "second")
    assert (out / "payload.txt").read_text() == "second"
    assert _leftovers(tmp_path) == [f".out.old-{os.getpid()}-10"]


def test_a_loader_restores_an_output_a_killed_publish_set_aside(
    sample_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aisle.artifacts import read_manifest
    from aisle.data.dataset import load_dataset, prepare, prepared_dir

    out = tmp_path / "out"
    _publish(out, "aisle.thing")
    _killed_between_renames(out, _dead_pid())
    with caplog.at_level("WARNING", logger="aisle.artifacts"):
        assert read_manifest(out, "aisle.thing")["kind"] == "aisle.thing"
    assert f"restored {out}" in caplog.text
    prep = prepare(sample_data, tmp_path / "prep")
    pid = _dead_pid()
    _killed_between_renames(prep, pid)
    assert len(load_dataset(prep).products) == 300
    _killed_between_renames(prep, pid, 200)
    with prepared_dir(prep) as found:
        assert found == prep  # the prepared directory itself, not a preparation of nothing
    # A model directory (here a link to the base model, as a save may replace a link).
    from aisle.towers.model import base_model_path, model_runtime

    model = tmp_path / "model"
    model.symlink_to(base_model_path(), target_is_directory=True)
    _killed_between_renames(model, pid)
    assert model_runtime(model) == "torch" and model.is_symlink()
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        read_manifest(tmp_path / "never-published", "aisle.thing")


def test_an_error_between_the_two_renames_puts_the_old_output_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    _interrupt_publishing(monkeypatch, out, put_back_fails=False)
    with pytest.raises(KeyboardInterrupt):
        _publish(out, "aisle.thing", "second")
    assert (out / "payload.txt").read_text() == "first"
    assert _leftovers(tmp_path) == []


def _interrupt_publishing(monkeypatch: pytest.MonkeyPatch, out: Path, put_back_fails: bool
                          ) -> None:
    """A Ctrl-C at ``out``'s second rename, after the old tree stepped aside; and, with
    ``put_back_fails``, a disk that refuses to move the old tree back too."""
    import aisle.artifacts as artifacts

    real = os.replace

    def interrupted(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == out and Path(src).name.startswith(f".{out.name}.tmp-"):
            raise KeyboardInterrupt
        if put_back_fails and Path(dst) == out and Path(src).name.startswith(f".{out.name}.old-"):
            raise OSError("the disk said no")
        real(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", interrupted)


def test_when_the_old_output_cannot_go_back_the_first_error_is_raised_and_kept_for_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aisle.artifacts as artifacts

    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    with monkeypatch.context() as patched:
        _interrupt_publishing(patched, out, put_back_fails=True)
        with pytest.raises(KeyboardInterrupt):  # not the OSError of putting it back
            _publish(out, "aisle.thing", "second")
    assert not out.exists()
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == [".out.old"]  # no tmp
    # The set-aside copy's process is this one, still alive: only a later process restores
    # it. Stand in for that process's death by renaming the copy with a pid that is gone.
    (copy,) = tmp_path.iterdir()
    _, _, stamp = copy.name.rpartition("-")
    copy.rename(tmp_path / f".out.old-{_dead_pid()}-{stamp}")
    assert artifacts.recover_publish(out)
    assert (out / "payload.txt").read_text() == "first"


def test_a_publish_killed_while_deleting_the_old_output_leaves_nothing_to_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting the old tree is the slow part of a publish (gigabytes): a kill there used to
    leave a half-deleted ``.out.old-<pid>-<ns>``, which recover_publish then moved back as
    ``out`` once ``out`` went missing (deleted or moved away by its owner): an artifact the
    user removed came back, half of it gone. Set aside under another name first, it cannot."""
    import shutil

    import aisle.artifacts as artifacts
    from aisle.artifacts import read_manifest

    out = tmp_path / "out"
    _publish(out, "aisle.thing", "first")
    real = shutil.rmtree

    def killed(path: str | Path, *args: object, **kwargs: object) -> None:
        if Path(path).name.startswith(".out."):  # the old tree, half deleted, then a kill
            (Path(path) / "payload.txt").unlink()
            raise KeyboardInterrupt
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(artifacts.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        _publish(out, "aisle.thing", "second")
    monkeypatch.undo()
    assert (out / "payload.txt").read_text() == "second"
    # What the killed job left, as a later process sees it (its pid gone).
    pid = _dead_pid()
    for p in tmp_path.iterdir():
        if p.name.startswith(".out."):
            p.rename(p.with_name(p.name.replace(f"-{os.getpid()}-", f"-{pid}-")))
    real(out)  # its owner deletes it
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        read_manifest(out, "aisle.thing")  # nothing half-deleted comes back
    assert not out.exists()
    _publish(out, "aisle.thing", "third")  # and the next publish clears what was left
    assert (out / "payload.txt").read_text() == "third"
    assert _leftovers(tmp_path) == []
