"""Versioned index roots: CURRENT, list/promote/rollback/prune, partitions, CLI, serving."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from aisle.cli import main
from aisle.errors import AisleError, ArtifactError
from aisle.indexing.build import build_version
from aisle.indexing.versions import list_versions, promote, prune, rollback
from aisle.retrieval.layout import CURRENT, current_id, resolve_index_dir
from aisle.retrieval.retriever import Retriever, query_preparer
from aisle.retrieval.store import index_is_current, load_index
from aisle.serving.app import create_app
from aisle.serving.cache import LRUCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine
from aisle.serving.snapshot import load_snapshot
from aisle.towers.model import TwoTowerModel
from tests.indexing.conftest import CountingEncoder


@pytest.fixture
def three_versions(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> tuple[Path, list[str]]:
    """A root with versions over 40, 80 and 120 products, built in that order."""
    root = tmp_path / "root"
    ids = []
    for n in (40, 80, 120):
        path = build_version(prepare_catalog(catalog.iloc[:n], f"d{n}"), base_model, root, keep=5)
        ids.append(path.name)
    return root, ids


def test_builds_publish_versions_and_switch_current(three_versions: tuple[Path, list[str]]) -> None:
    root, ids = three_versions
    assert [v.id for v in list_versions(root)] == ids
    assert current_id(root) == ids[-1]
    assert (root / CURRENT).read_text() == ids[-1] + "\n"
    assert resolve_index_dir(root) == root / "versions" / ids[-1]
    index = load_index(root)
    assert index.version == ids[-1] and index.manifest["count"] == 120
    # A version directory loads on its own too.
    assert load_index(root / "versions" / ids[0]).manifest["count"] == 40


def test_promote_rollback_and_prune(three_versions: tuple[Path, list[str]]) -> None:
    root, ids = three_versions
    promote(root, ids[0])
    assert load_index(root).manifest["count"] == 40
    assert rollback(root) == ids[2]
    assert rollback(root) == ids[1]
    assert load_index(root).manifest["count"] == 80
    with pytest.raises(ArtifactError, match="no version 'nope'"):
        promote(root, "nope")
    # keep=1 keeps the current version; ids[2], newer and rolled back from, waits for a
    # promote; ids[0], older and not current, goes.
    assert prune(root, keep=1) == [ids[0]]
    assert [v.id for v in list_versions(root)] == ids[1:]
    assert current_id(root) == ids[1]
    with pytest.raises(ArtifactError, match="no earlier version"):
        rollback(root)


def _version(root: Path, vid: str, created: float) -> None:
    """A version directory as list_versions reads it (nothing is loaded from it here)."""
    d = root / "versions" / vid
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"kind": "aisle.index", "created": created,
                                                 "model": {"ref": "m", "fingerprint": "f"}}))


def test_keep_counts_the_versions_rollback_returns_to_not_ones_never_served(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    for i, vid in enumerate(["a", "b", "c"]):
        _version(root, vid, i + 1)
        promote(root, vid)
    # A nightly job's version, written while an operator rolled back from c: never current.
    assert rollback(root) == "b"
    _version(root, "d", 4)
    # keep=2: b (current) and a, what the next rollback needs; c (rolled back from) and d
    # are newer than b and stay for `aisle index promote`, counted in no keep.
    assert prune(root, keep=2) == []
    assert rollback(root) == "a"
    promote(root, "b")
    # e is current now. d was never served and c was rolled back from: nothing returns to
    # them, and e supersedes both. a, b: the versions rollback walks back to.
    _version(root, "e", 5)
    promote(root, "e")
    assert prune(root, keep=3) == ["c", "d"]
    assert [v.id for v in list_versions(root)] == ["a", "b", "e"]
    assert prune(root, keep=2) == ["a"]
    assert rollback(root) == "b"


def test_index_cli_build_list_promote_rollback(
    three_versions: tuple[Path, list[str]],
    base_model: TwoTowerModel,
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, ids = three_versions
    # `aisle index --data --out` is `aisle index build`: an unchanged catalog is reused.
    data = prepare_catalog(catalog.iloc[:120], "cli")
    assert main(["index", "--data", str(data), "--out", str(root), "kind=hnsw"]) == 0
    assert current_id(root) == ids[2]
    capsys.readouterr()
    assert main(["index", "list", "--out", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line[2:].split()[0] for line in out] == ids and out[-1].startswith("*")
    assert all(f" {base_model.runtime} " in line for line in out)  # what embedded each
    assert main(["index", "promote", "--out", str(root), ids[0]]) == 0
    assert current_id(root) == ids[0]
    assert main(["index", "rollback", "--out", str(root)]) == 0
    assert current_id(root) == ids[2]
    assert main(["index", "promote", "--out", str(root), "missing"]) == 2
    assert main(["search", "--index", str(root), "drill", "-k", "2"]) == 0


def test_partitions_are_searched_by_name(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    build_version(prepare_catalog(catalog, "day1"), base_model, root)
    index = load_index(root)
    assert index.partition_names == ["store 2", "store-1"]
    query = base_model.encode_query(["cordless drill"]).numpy()
    for name in index.partition_names:
        members = set(catalog.loc[catalog["partition"] == name, "product_id"])
        part = index.partition(name)
        assert set(part.product_ids) == members and len(members) == 40
        hits = part.search(query, 100)[0]
        assert {h.product_id for h in hits} == members
        title = catalog.loc[catalog["partition"] == name, "title"].iloc[0]
        lexical = part.lexical.search([title], 100)[0]
        assert lexical and {pid for pid, _ in lexical} <= members
    assert len(index.search(query, 200)[0]) == 120  # no partition: the whole catalog


def test_a_partitioned_index_of_another_int8_export_warns_once_not_once_a_partition(
    caplog: pytest.LogCaptureFixture, catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path], base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    version = build_version(prepare_catalog(catalog, "day1"), base_model, tmp_path / "root")
    for manifest in version.glob("**/manifest.json"):  # as if one int8 export embedded it
        record = json.loads(manifest.read_text())
        record["model"].update(backend="onnx-int8", runtime="onnx-int8.00000000")
        manifest.write_text(json.dumps(record))

    class AnotherExport:  # the same weights' query tower, from another int8 export
        runtime = "onnx-int8.11111111"

        def __getattr__(self, name: str) -> object:
            return getattr(base_model, name)

    index = load_index(version)
    model = AnotherExport()
    with caplog.at_level(logging.WARNING, logger="aisle.retrieval.store"):
        retriever = Retriever(model, index, query_preparer(index.titles, model, False))  # type: ignore[arg-type]
        for name in index.partition_names:
            assert retriever.partition(name).search_texts(["garden hose"], 3, "dense")[0].hits
    warned = [r.getMessage() for r in caplog.records if "another int8 export" in r.getMessage()]
    assert len(warned) == 1 and str(version) in warned[0]


def test_service_searches_partitions_and_follows_current(
    three_versions: tuple[Path, list[str]],
    catalog: pd.DataFrame,
    base_model: TwoTowerModel,
) -> None:
    root, ids = three_versions
    config = ServeConfig(index=str(root), admin_token="t", watch_interval_s=0.05)
    engine = Engine(config, LRUCache(100), load_snapshot(config))
    with TestClient(create_app(config, engine)) as client:
        assert client.get("/readyz").json()["index_version"] == ids[2]
        store1 = set(catalog.loc[catalog["partition"] == "store-1", "product_id"])
        for mode in ("dense", "lexical", "hybrid"):
            r = client.post("/search", json={"query": "drill", "k": 50, "mode": mode,
                                             "partition": "store-1"})
            assert r.status_code == 200, r.text
            got = {x["product_id"] for x in r.json()["results"]}
            assert got and got <= store1
            assert r.json()["index_version"] == ids[2]
        r = client.post("/search", json={"query": "drill", "partition": "store-9"})
        assert r.status_code == 404 and "store-1" in r.json()["detail"]

        promote(root, ids[0])  # the watcher sees CURRENT change and swaps
        deadline = time.monotonic() + 20
        while engine.snapshot.version != ids[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        r = client.get("/search", params={"q": "drill", "k": 100})
        assert r.json()["index_version"] == ids[0] and len(r.json()["results"]) == 40
        rollback(root)
        r = client.post("/admin/reload", headers={"Authorization": "Bearer t"})
        assert r.json()["index_version"] == ids[2]


def test_a_second_build_of_a_busy_root_is_refused_and_the_lock_dies_with_its_holder(
    three_versions: tuple[Path, list[str]],
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
) -> None:
    import subprocess
    import sys

    from aisle.indexing.update import update_version

    root, ids = three_versions
    data = prepare_catalog(catalog.iloc[:30], "d30")
    # Another process holds the build lock, as a running `aisle index build` would.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from aisle.indexing.versions import BUILD_LOCK, locked\n"
         "with locked(sys.argv[1], BUILD_LOCK, 'aisle index build', wait=False):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(60)\n",
         str(root)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for job in (lambda: build_version(data, base_model, root),
                    lambda: update_version(data, root, base_model)):
            with pytest.raises(ArtifactError, match=r"busy: aisle index build \(pid \d+\)"):
                job()
        assert current_id(root) == ids[-1]  # nothing was published
        promote(root, ids[0])  # pointer changes take the other lock: not blocked by a build
        assert current_id(root) == ids[0]
    finally:
        holder.kill()  # killed, not released: the OS frees the lock with the process
        holder.wait()
    assert build_version(data, base_model, root).name == current_id(root)


def test_pointer_commands_on_a_missing_root_fail_and_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    for command in (lambda: prune(missing), lambda: rollback(missing),
                    lambda: promote(missing, "v1")):
        with pytest.raises(ArtifactError, match="does not exist"):
            command()
    assert not missing.exists()


def test_a_keep_below_one_is_refused_before_any_work(
    three_versions: tuple[Path, list[str]],
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    from aisle.indexing.update import update_version

    root, ids = three_versions
    data = prepare_catalog(catalog.iloc[:30], "d30")
    fresh = tmp_path / "fresh"
    for job in (lambda: build_version(data, base_model, fresh, keep=0),
                lambda: build_version(data, base_model, root, keep=0),
                lambda: update_version(data, root, base_model, keep=0),
                lambda: prune(root, keep=0)):
        with pytest.raises(ArtifactError, match=r"keep must be an integer >= 1 \(got 0\)"):
            job()
    assert not fresh.exists() and not counting.texts  # nothing embedded, nothing created
    assert [v.id for v in list_versions(root)] == ids and current_id(root) == ids[-1]
    for argv in (["index", "--data", str(data), "--out", str(root), "--keep", "0"],
                 ["index", "update", "--data", str(data), "--out", str(root), "--keep", "-1"],
                 ["index", "prune", "--out", str(root), "--keep", "0"]):
        with pytest.raises(SystemExit) as exited:  # argparse: usage error, exit status 2
            main(argv)
        assert exited.value.code == 2
    assert [v.id for v in list_versions(root)] == ids


def test_a_current_that_names_a_missing_version_is_replaced_by_the_next_build(
    three_versions: tuple[Path, list[str]],
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, ids = three_versions
    shutil.rmtree(root / "versions" / ids[-1])  # deleted by hand, CURRENT still names it
    with pytest.raises(ArtifactError, match="is missing or incomplete"):
        load_index(root)
    data = prepare_catalog(catalog, "again")  # the very catalog of the lost version
    with caplog.at_level("WARNING"):
        path = build_version(data, base_model, root)  # no --force needed
    assert "Building a new version to replace it" in caplog.text
    assert path.name not in ids and current_id(root) == path.name
    assert load_index(root).manifest["count"] == 120
    promote(root, ids[0])
    assert current_id(root) == ids[0]


def test_a_version_with_an_unreadable_manifest_is_skipped_not_fatal(
    three_versions: tuple[Path, list[str]],
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, ids = three_versions
    (root / "versions" / ids[0] / "manifest.json").write_text('{"kind": "aisle.index", "count": ')
    (root / "versions" / ids[1] / "manifest.json").write_text("[1, 2]")
    with caplog.at_level("WARNING"):
        assert [v.id for v in list_versions(root)] == [ids[2]]
    assert all(f"skipping version {v}" in caplog.text for v in ids[:2])
    with pytest.raises(ArtifactError, match=f"version '{ids[0]}' of .* has an unreadable"):
        promote(root, ids[0])
    # A build publishes and prunes (keep=1) past them; they are left for a person to look at.
    path = build_version(prepare_catalog(catalog.iloc[:50], "d50"), base_model, root, keep=1)
    assert current_id(root) == path.name
    assert [v.id for v in list_versions(root)] == [path.name]
    assert (root / "versions" / ids[0]).is_dir() and (root / "versions" / ids[1]).is_dir()


def test_prune_removes_the_leftovers_of_killed_jobs_only(
    three_versions: tuple[Path, list[str]], base_model: TwoTowerModel
) -> None:
    import os
    import subprocess
    import sys
    import time

    from aisle.indexing.embed_cache import cache_key
    from aisle.indexing.versions import BUILD_LOCK, locked

    root, ids = three_versions
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid, live_pid = int(dead.stdout), os.getpid()
    versions = root / "versions"
    key_dir = root / "embed-cache" / cache_key(base_model.fingerprint, base_model.runtime)
    assert key_dir.is_dir()  # the versions' own cache
    stale = [
        versions / f".20250101T000000Z-abcdef.tmp-{dead_pid}-123",  # a killed build's version
        versions / f".{ids[0]}.deleting",  # a prune killed mid-delete (no pid then)
        versions / f".{ids[0]}.deleting-{dead_pid}-5",
        root / f".CURRENT.tmp-{dead_pid}-99",  # a file: a killed pointer write
        key_dir / f".0001-aa.vecs.npy.tmp-{dead_pid}",  # a killed cache write
        root / "embed-cache" / f".old-torch.deleting-{dead_pid}-3",  # a killed cache removal
    ]
    live = [
        versions / f".20250101T000000Z-fedcba.tmp-{live_pid}-123",  # a build still running
        root / f".HISTORY.tmp-{live_pid}-7",
        key_dir / f".0002-bb.keys.npy.tmp-{live_pid}",
    ]
    # A dead pid's path written a minute ago may be a live job's in another pid namespace;
    # so may an old folder with a file written in it a minute ago.
    young = versions / f".20250101T000000Z-0a0b0c.tmp-{dead_pid}-7"
    writing = versions / f".20250101T000000Z-0d0e0f.tmp-{dead_pid}-8"
    for path in stale + live + [young, writing]:
        if path.name.startswith(".CURRENT") or ".npy" in path.name or ".HISTORY" in path.name:
            path.write_text("partial")
        else:
            (path / "bm25").mkdir(parents=True)
        if path not in (young, writing):  # the whole tree: as young as its newest file
            two_hours_ago = time.time() - 7200
            for p in (*path.glob("*"), path):
                os.utime(p, (two_hours_ago, two_hours_ago))
    # While a build holds the root, nothing of anyone's is removed.
    with locked(root, BUILD_LOCK, "a build elsewhere", wait=False):
        assert prune(root, keep=5) == []
    assert all(p.exists() for p in stale + live + [young, writing])
    os.utime(writing, (time.time() - 7200, time.time() - 7200))  # its bm25/ stays new
    assert prune(root, keep=5) == []
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in live) and young.exists() and writing.exists()
    assert [v.id for v in list_versions(root)] == ids and current_id(root) == ids[-1]
    assert load_index(root).manifest["count"] == 120


def test_prune_removes_the_embedding_caches_no_version_uses_once_the_versions_pass_them(
    three_versions: tuple[Path, list[str]], base_model: TwoTowerModel, tmp_path: Path,
    counting: CountingEncoder,
) -> None:
    import os

    from aisle.indexing.embed_cache import cache_key
    from aisle.indexing.versions import BUILD_LOCK, locked

    root, ids = three_versions
    cache = root / "embed-cache"
    own = cache_key(base_model.fingerprint, base_model.runtime)
    oldest = min(v.created for v in list_versions(root))
    # Models no version uses any more, last written before the oldest version was made; and
    # a killed build's cache, written since: it may resume, so it stays for now.
    retired = ["retired-torch", "retired-onnx-int8.12345678-percall"]
    killed = cache_key("killed", "onnx-int8.0a0b0c0d")
    for name in [*retired, killed]:
        (cache / name).mkdir()
        (cache / name / "0001-aa.keys.npy").write_text("x")
    for name in retired:
        os.utime(cache / name, (oldest - 86400, oldest - 86400))
    with locked(root, BUILD_LOCK, "a build elsewhere", wait=False):
        prune(root, keep=5)
    assert len(list(cache.iterdir())) == 4  # a build may be using any of them
    # A version whose manifest cannot be read may use any cache: none is removed.
    manifest = root / "versions" / ids[0] / "manifest.json"
    text = manifest.read_text()
    manifest.write_text("{not json")
    prune(root, keep=5)
    assert len(list(cache.iterdir())) == 4
    manifest.write_text(text)
    prune(root, keep=5)
    assert sorted(p.name for p in cache.iterdir()) == sorted([own, killed])
    assert [v.id for v in list_versions(root)] == ids
    # The cache kept is the one a rebuild reads: it embeds nothing again.
    build_version(tmp_path / "d120", base_model, root, force=True, keep=5)
    assert counting.texts == []


def test_an_index_embedded_with_another_backend_is_not_up_to_date(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    import json

    root = tmp_path / "root"
    data = prepare_catalog(catalog.iloc[:40], "d40")
    first = build_version(data, base_model, root)
    assert build_version(data, base_model, root) == first  # same model, backend, catalog
    manifest_path = first / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    products = manifest["data"]["products_fingerprint"]

    def current(recorded: dict[str, str], runtime: str) -> bool:
        """Whether the version is current for ``runtime`` once its manifest records ``recorded``."""
        manifest["model"] = {k: v for k, v in manifest["model"].items()
                             if k not in ("backend", "runtime")} | recorded
        manifest_path.write_text(json.dumps(manifest))
        return index_is_current(first, base_model.fingerprint, products, runtime=runtime)

    # An index from before runtimes were recorded names its backend only: its int8 export
    # cannot be told apart, a torch one can.
    assert current({"backend": "torch"}, "torch")
    assert not current({"backend": "onnx-int8"}, "onnx-int8.aaaaaaaa")
    int8 = {"backend": "onnx-int8", "runtime": "onnx-int8.aaaaaaaa"}
    assert not current(int8, "onnx-int8.bbbbbbbb")  # another int8 export of the weights
    assert not current(int8, "torch")
    assert current(int8, "onnx-int8.aaaaaaaa")  # left recorded: an int8 export embedded it
    second = build_version(data, base_model, root)  # a torch model: its vectors differ
    assert second != first and current_id(root) == second.name
    assert json.loads((second / "manifest.json").read_text())["model"]["backend"] == "torch"


def test_an_eagerly_loaded_index_keeps_serving_every_mode_after_its_version_is_pruned(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    from aisle.retrieval.config import IndexConfig

    root = tmp_path / "root"
    data = prepare_catalog(catalog, "day1")
    old = build_version(data, base_model, root)
    eager = load_index(root, base_model.fingerprint, eager=True)
    lazy = load_index(root, base_model.fingerprint)
    title = catalog.loc[catalog["partition"] == "store-1", "title"].iloc[0]
    expected = eager.partition("store-1").lexical.search([title], 5)
    assert expected
    build_version(data, base_model, root, IndexConfig(bm25_k1=0.7), keep=1)  # prunes `old`
    assert not old.exists()
    assert eager.lexical.search([title], 5)
    assert eager.partition("store-1").lexical.search([title], 5) == expected
    query = base_model.encode_query([title]).numpy()
    assert eager.partition("store 2").search(query, 3)[0]
    for read_later in (lambda: lazy.partition("store-1"), lambda: lazy.lexical):
        with pytest.raises(ArtifactError, match="was deleted after this index was loaded"):
            read_later()  # what a lazily loaded snapshot meets
    # has_lexical answers from the manifest, not the disk: the default mode stays hybrid, and
    # its search meets the error above rather than quietly dropping to dense.
    assert lazy.has_lexical


def test_a_directory_holding_something_else_is_not_made_an_index_root(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    counting: CountingEncoder,
    tmp_path: Path,
) -> None:
    from aisle.artifacts import write_manifest
    from aisle.cli import main

    data = prepare_catalog(catalog.iloc[:30], "d30")
    model_dir = tmp_path / "model"  # a model directory (not saving the session's model)
    model_dir.mkdir()
    (model_dir / "shared").mkdir()
    write_manifest(model_dir, {"kind": "aisle.model"})
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "notes.txt").write_text("keep me")
    # A CURRENT file or a versions/ folder is no proof of an index root: a LevelDB keeps a
    # CURRENT (a build overwrote it), a model registry versions/ (a build pruned them all).
    leveldb = tmp_path / "leveldb"
    leveldb.mkdir()
    (leveldb / "CURRENT").write_text("MANIFEST-000005\n")
    (leveldb / "MANIFEST-000005").write_bytes(b"\x00")
    registry = tmp_path / "registry"
    for v in ("v1", "v2"):
        (registry / "versions" / v).mkdir(parents=True)
        write_manifest(registry / "versions" / v, {"kind": "aisle.model"})
    (registry / "README.md").write_text("models")
    for out, match in ((model_dir, "holds a 'aisle.model' artifact, not an index root"),
                       (data, "holds a 'aisle.dataset' artifact, not an index root"),
                       (runs, "holds files that are not an index, not an index root"),
                       (leveldb, "holds files that are not an index, not an index root"),
                       (registry, "holds files that are not an index, not an index root")):
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(ArtifactError, match=match):
            build_version(data, base_model, out)
        assert sorted(p.name for p in out.iterdir()) == before  # nothing added
    assert not counting.texts  # refused before any product was encoded
    assert main(["index", "--data", str(data), "--out", str(runs)]) == 2
    # A first build killed before publishing leaves only the root's own entries: it resumes.
    root = tmp_path / "root"
    (root / "work").mkdir(parents=True)
    (root / ".build.lock").write_text("")
    assert load_index(build_version(data, base_model, root)).manifest["count"] == 30
    # An index root with its owner's notes beside it is still one; a folder that is not an
    # index, put under its versions/, is never listed, so never pruned.
    (root / "README.md").write_text("the shop's index")
    stray = root / "versions" / "00000000T000000Z-model"
    stray.mkdir()
    write_manifest(stray, {"kind": "aisle.model"})
    (stray / "weights.bin").write_bytes(b"w")
    first = current_id(root)
    assert load_index(build_version(prepare_catalog(catalog.iloc[:31], "d31"), base_model, root,
                                    keep=1)).manifest["count"] == 31
    assert [v.id for v in list_versions(root)] == [current_id(root)] != [first]
    assert (stray / "weights.bin").read_bytes() == b"w"


def test_the_ray_engine_without_ray_is_refused_before_the_root_is_touched(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    data = prepare_catalog(catalog.iloc[:10], "d10")
    with pytest.raises(AisleError, match=r"--engine ray needs Ray.*pip install 'aisle\[ray\]'"):
        build_version(data, base_model, tmp_path / "root", engine="ray")
    assert not (tmp_path / "root").exists()
