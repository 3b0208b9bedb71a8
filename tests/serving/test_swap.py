"""Hot index swaps under a stream of requests: zero failures, mismatches refused."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aisle.artifacts import MANIFEST, atomic_dir
from aisle.data.synthetic import write_sample
from aisle.indexing.build import build_index
from aisle.serving.app import create_app
from aisle.serving.cache import LRUCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine
from aisle.serving.snapshot import load_snapshot
from aisle.towers.config import TowerConfig
from aisle.towers.model import TwoTowerModel, load_model
from tests.serving.conftest import engine_over


def publish(src: Path, dst: Path) -> None:
    """What a new index build does to the served directory: an atomic replace."""
    with atomic_dir(dst, None) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def test_index_swap_during_a_stream_of_requests(sample_index: Path, tmp_path: Path,
                                                base_model: TwoTowerModel) -> None:
    served = tmp_path / "served"
    shutil.copytree(sample_index, served)
    other_data = write_sample(tmp_path / "other-data", n_products=120, seed=7)
    new_index = build_index(other_data, base_model, tmp_path / "new-index")
    foreign = build_index(other_data, load_model(None, TowerConfig(pooling="cls")),
                          tmp_path / "foreign-index")

    config = ServeConfig(index=str(served), admin_token="t", watch_interval_s=0.1)
    engine = Engine(config, LRUCache(1000), load_snapshot(config))
    first = engine.snapshot.version
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    with TestClient(create_app(config, engine)) as client:

        def stream() -> None:
            n = 0
            while not stop.is_set():
                r = client.get("/search", params={"q": f"ladder {n % 7}", "k": 5})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["index_version"])
                n += 1

        worker = threading.Thread(target=stream)
        worker.start()
        time.sleep(0.5)
        publish(new_index, served)  # the watcher notices and swaps in the background
        deadline = time.monotonic() + 20
        while engine.snapshot.version == first and time.monotonic() < deadline:
            time.sleep(0.05)
        second = engine.snapshot.version
        assert second != first
        assert engine.snapshot.index.searcher.count == 120
        time.sleep(0.5)

        # An index built by another model is refused; the current one keeps serving.
        config_foreign = ServeConfig(index=str(foreign), model=engine.snapshot.model.ref)
        engine.holder.config = config_foreign  # what a reload loads
        r = client.post("/admin/reload", headers={"Authorization": "Bearer t"})
        assert r.status_code == 409 and "rebuild the index" in r.json()["detail"]
        assert "fingerprint" in r.json()["detail"]
        assert engine.snapshot.version == second
        time.sleep(0.3)
        stop.set()
        worker.join(timeout=30)
        metrics = client.get("/metrics").text

    assert len(statuses) > 5
    assert statuses == [200] * len(statuses)
    assert versions == {first, second}
    assert "aisle_reload_failures_total 0.0" not in metrics


def reload_failures(client: TestClient) -> float:
    text = client.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("aisle_reload_failures_total"))
    return float(line.split()[-1])


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_watcher_survives_a_bad_publish_and_takes_the_next_good_one(
    sample_index: Path, tmp_path: Path, base_model: TwoTowerModel
) -> None:
    served = tmp_path / "served"
    shutil.copytree(sample_index, served)
    good = json.loads((served / MANIFEST).read_text())
    config = ServeConfig(index=str(served), watch_interval_s=0.05)
    engine = engine_over(config, base_model, speller=False)
    first = engine.snapshot.version
    with TestClient(create_app(config, engine)) as client:
        # a half-copied directory: the manifest disagrees with the vectors
        (served / MANIFEST).write_text(json.dumps(dict(good, count=good["count"] + 1)))
        assert wait_for(lambda: reload_failures(client) >= 1, 10)
        time.sleep(0.5)  # ten more intervals: the same broken publish is not tried again
        assert reload_failures(client) == 1
        assert client.get("/readyz").json()["index_version"] == first
        assert client.get("/search", params={"q": "drill"}).status_code == 200

        (served / MANIFEST).write_text(json.dumps(dict(good, version="v2-fixed")))
        assert wait_for(lambda: engine.snapshot.version == "v2-fixed", 10), "watcher died"
        assert client.get("/readyz").json()["index_version"] == "v2-fixed"
        assert reload_failures(client) == 1


def test_any_reload_error_is_a_409_and_counted(
    serve_config: ServeConfig, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aisle.serving.snapshot as snapshot_module

    def broken(*args: object) -> object:
        raise KeyError("model")  # e.g. a manifest without its "model" object

    monkeypatch.setattr(snapshot_module, "load_snapshot", broken)
    before = engine.snapshot.version
    with TestClient(create_app(serve_config, engine)) as client:
        r = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 409, r.text
        assert r.json()["detail"] == (
            f"reload refused, still serving {before}: the index on disk could not be loaded "
            "(KeyError: 'model'); republish it"
        )
        assert reload_failures(client) == 1
        assert client.get("/search", params={"q": "drill"}).status_code == 200
    assert engine.snapshot.version == before


def test_a_reload_onto_another_model_lets_the_old_one_go(
    sample_index: Path, tmp_path: Path, base_model: TwoTowerModel
) -> None:
    """Start-up and each reload freeze the heap out of the collector's view (settle_heap);
    the model a reload replaces must still be freed, or each new model leaks the last."""
    import gc
    import weakref

    served = tmp_path / "served"
    shutil.copytree(sample_index, served)
    other = write_sample(tmp_path / "other-data", n_products=60, seed=3)
    foreign = build_index(other, load_model(None, TowerConfig(pooling="cls")), tmp_path / "f")
    config = ServeConfig(index=str(served), admin_token="t", watch_interval_s=0)
    with TestClient(create_app(config)) as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        first = weakref.ref(engine.snapshot.model.query.model)
        publish(foreign, served)
        r = client.post("/admin/reload", headers={"Authorization": "Bearer t"})
        assert r.status_code == 200, r.text
        assert engine.snapshot.model.fingerprint != base_model.fingerprint
        assert client.get("/search", params={"q": "drill"}).status_code == 200
        del engine
        gc.collect()
        assert first() is None, "the replaced model is still alive"


def test_an_index_published_while_the_service_starts_is_taken(
    sample_index: Path, tmp_path: Path, base_model: TwoTowerModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aisle.serving.snapshot as snapshot_module
    from aisle.serving.snapshot import SnapshotHolder

    served = tmp_path / "served"
    shutil.copytree(sample_index, served)
    load = snapshot_module.load_snapshot

    def slow_load(config: ServeConfig, current: object = None) -> object:
        loaded = load(config)
        # A build publishes while the first load is still running.
        manifest = json.loads((served / MANIFEST).read_text())
        publish_dir = tmp_path / "next"
        shutil.copytree(served, publish_dir)
        (publish_dir / MANIFEST).write_text(json.dumps(dict(manifest, version="v2")))
        publish(publish_dir, served)
        return loaded

    monkeypatch.setattr(snapshot_module, "load_snapshot", slow_load)
    holder = SnapshotHolder(ServeConfig(index=str(served)))
    assert holder.changed_on_disk()  # the watcher will load v2
    monkeypatch.setattr(snapshot_module, "load_snapshot", load)
    assert holder.reload() == ("v2", True) and not holder.changed_on_disk()


def test_a_reload_during_shut_down_is_a_503_with_retry_after_and_no_failure(
    serve_config: ServeConfig, engine: Engine
) -> None:
    """An admin reload that got past its dependencies as the service shut its threads met
    RuntimeError("cannot schedule new futures after shutdown"): a 409, counted as a failed
    reload. It is told the service is shutting down, as a search is."""
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as client:
        client.app.state.executor.shutdown()  # type: ignore[attr-defined]
        r = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["detail"] == "the service is shutting down; retry shortly"
        assert reload_failures(client) == 0


def test_the_watcher_loads_nothing_that_already_serves(
    sample_index: Path, tmp_path: Path, base_model: TwoTowerModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watcher sees a publish, and waits for the reload lock while an admin reload loads
    that very publish: its turn must not load it again (twice the memory and load time), nor
    run the heap settle (a full collection on the event loop) for a swap that did not
    happen."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import aisle.serving.snapshot as snapshot_module
    from aisle.serving import reloading
    from aisle.serving.metrics import Metrics

    served = tmp_path / "served"
    shutil.copytree(sample_index, served)
    config = ServeConfig(index=str(served), watch_interval_s=0)
    engine = engine_over(config, base_model, speller=False)
    manifest = json.loads((served / MANIFEST).read_text())

    def republish(version: str) -> None:
        build = tmp_path / f"build-{len(list(tmp_path.glob('build-*')))}"
        shutil.copytree(served, build)
        (build / MANIFEST).write_text(json.dumps(dict(manifest, version=version)))
        publish(build, served)

    settled: list[str] = []
    monkeypatch.setattr(reloading, "settle_heap",
                        lambda: settled.append(engine.snapshot.index.version))

    async def reload(unless_served: bool) -> str:
        with ThreadPoolExecutor(1) as pool:
            return await reloading.reload(engine, pool, Metrics(), unless_served=unless_served)

    republish("v2")
    assert engine.changed_on_disk()  # what the watcher saw: it reloads next...
    assert asyncio.run(reload(False)) == "v2"  # ...but an admin reload took the lock first
    loaded = engine.snapshot
    assert asyncio.run(reload(True)) == "v2"  # the watcher's turn
    assert engine.snapshot is loaded

    # The same build published again (new files, the same manifest): nothing new to load,
    # and no longer a change the watcher sees. Anything else on disk is loaded.
    republish("v2")
    assert engine.changed_on_disk()
    assert asyncio.run(reload(True)) == "v2" and engine.snapshot is loaded
    assert not engine.changed_on_disk()
    republish("v3")
    assert asyncio.run(reload(True)) == "v3" and engine.snapshot.index.version == "v3"
    loaded = engine.snapshot
    assert asyncio.run(reload(False)) == "v3" and engine.snapshot is not loaded  # as asked
    assert settled == ["v2", "v3", "v3"]  # one a swap, none for the watcher's two skips

    # At once: the watcher waits for the lock while the admin reload loads; it settles nothing.
    settled.clear()
    republish("v4")
    gate, load = threading.Event(), snapshot_module.load_snapshot

    def gated(*args: Any) -> Any:
        assert gate.wait(10)
        return load(*args)

    monkeypatch.setattr(snapshot_module, "load_snapshot", gated)

    async def race() -> list[str]:
        with ThreadPoolExecutor(2) as pool:
            admin = asyncio.create_task(reloading.reload(engine, pool, Metrics()))
            await asyncio.sleep(0.1)  # the admin reload holds the lock, loading
            watcher = asyncio.create_task(
                reloading.reload(engine, pool, Metrics(), unless_served=True))
            await asyncio.sleep(0.1)  # the watcher waits for the lock
            gate.set()
            return list(await asyncio.gather(admin, watcher))

    assert asyncio.run(race()) == ["v4", "v4"]
    assert settled == ["v4"]
