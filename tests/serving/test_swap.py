"""Hot index swaps under a stream of requests: zero failures, mismatches refused."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from aisle.artifacts import atomic_dir
from aisle.data.synthetic import write_sample
from aisle.indexing import build_index
from aisle.serving.app import create_app
from aisle.serving.cache import LRUCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine, load_snapshot
from aisle.towers import TowerConfig, TwoTowerModel, load_model


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
        engine.config = config_foreign
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
