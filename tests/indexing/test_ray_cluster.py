"""``aisle index --engine ray --ray-address ADDR`` on a two-node Ray cluster simulated on this
machine (``ray.cluster_utils.Cluster``: a head and a worker node, one CPU each, separate
raylets and object stores). The model directory reaches the workers through the object store,
not the driver's file system."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aisle.cli import main
from aisle.indexing.ray_engine import ProductEmbedder, pack_directory
from aisle.retrieval.layout import resolve_index_dir
from aisle.retrieval.store import ROWS_FILE
from aisle.towers.model import load_model


def _vectors(root: Path) -> pd.Series:
    import faiss

    from aisle.indexing.vectors import stored_vectors
    from aisle.retrieval.store import INDEX_FILE

    directory = resolve_index_dir(root)
    rows = pd.read_parquet(directory / ROWS_FILE, columns=["product_id", "label"])
    vectors = stored_vectors(faiss.read_index(str(directory / INDEX_FILE)), rows["label"])
    return pd.Series(list(vectors), index=rows["product_id"]).sort_index()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory, as `aisle train` publishes one: a fresh copy of the base model saved
    (saving repoints a model at its new directory, so never the session's shared one)."""
    return load_model(None).save(tmp_path / "model")


def test_a_worker_loads_the_model_it_was_sent_not_a_path_on_its_node(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model(model_dir)
    packed = pack_directory(model_dir)
    node_tmp = tmp_path / "node-tmp"
    node_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(node_tmp))
    # set, not deleted: monkeypatch then restores the variable the embedder sets, after the test
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    # The ref names a directory this "node" does not have: only the packed copy can be loaded.
    embedder = ProductEmbedder(str(tmp_path / "elsewhere"), {"device": "auto"},
                               model.fingerprint, packed)
    # An actor reserves a CPU, not a GPU: its tower runs there whatever the node holds, and
    # it tokenizes on that CPU too, not on a thread per core of the node.
    assert embedder.model.config.device == "cpu"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    # The unpacked copy is gone once loaded: every actor of every job unpacks one.
    assert list(node_tmp.iterdir()) == []
    texts = np.array(["DEWALT cordless drill", "white subway tile"], dtype=object)
    got = embedder({"pos": np.arange(2), "text": texts})["vector"]
    np.testing.assert_allclose(got, model.product.encode(list(texts)).numpy(), atol=1e-5)


@pytest.fixture
def two_node_cluster() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_a_two_node_cluster_publishes_the_local_builds_index(
    two_node_cluster: str,
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    from aisle.indexing import ray_engine

    # Batches of 16: each catalog block is several Ray blocks, so both nodes' actors (one CPU
    # each) embed some of it.
    monkeypatch.setattr(ray_engine, "RAY_BATCH", 16)
    data = prepare_catalog(catalog, "cat")
    common = ["index", "--data", str(data), "--model", str(model_dir)]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--engine", "ray",
                 "--ray-address", two_node_cluster]) == 0
    assert len(ray.nodes()) == 2 and ray.cluster_resources()["CPU"] == 2
    local, remote = _vectors(tmp_path / "local"), _vectors(tmp_path / "ray")
    assert list(remote.index) == list(local.index) and len(local) == len(catalog)
    np.testing.assert_allclose(np.stack(remote.to_list()), np.stack(local.to_list()), atol=1e-5)


def test_a_ray_address_without_the_ray_engine_is_refused(
    catalog: pd.DataFrame, prepare_catalog: Callable[[pd.DataFrame, str], Path],
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    data = prepare_catalog(catalog.iloc[:5], "tiny")
    assert main(["index", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--ray-address", "127.0.0.1:6380"]) == 2
    assert "add --engine ray" in caplog.text and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_batch_that_kills_its_worker_every_time_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that dies once is replaced and its batch tried again; one that dies on every
    try (out of memory, a native crash) must end the job, not restart actors forever."""

    ray = pytest.importorskip("ray")
    from aisle.errors import AisleError
    from aisle.indexing import ray_engine

    model = load_model(None)
    deaths = tmp_path / "deaths"
    deaths.mkdir()

    class Dying(ProductEmbedder):
        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            died = len(list(deaths.iterdir()))
            if died >= 10:  # retried past any bound: let it finish rather than hang the test
                return super().__call__(batch)
            (deaths / str(died)).touch()
            os._exit(1)

    monkeypatch.setattr(ray_engine, "ProductEmbedder", Dying)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(AisleError, match="died"):
            ray_engine.RayEncoder(model)(["cordless drill"])
    finally:
        ray.shutdown()
    assert len(list(deaths.iterdir())) == ray_engine.RAY_RETRIES + 1


def test_a_finished_job_waits_for_ray_datas_threads_before_returning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ray Data's own shutdown waits 2 s for its scheduling thread; on a loaded machine that
    thread can outlive it and call into Ray after ``ray.shutdown()``, which ends the process.
    The encoder waits for such threads, and says so when one will not end."""

    import threading
    import time

    from aisle.indexing.ray_engine import settle_ray_data

    release = threading.Event()
    slow = threading.Thread(target=time.sleep, args=(0.5,), name="StreamingExecutor-test",
                            daemon=True)
    stuck = threading.Thread(target=release.wait, name="ray-data-metadata-prefetch",
                             daemon=True)
    other = threading.Thread(target=release.wait, name="someone-else", daemon=True)
    for thread in (slow, stuck, other):
        thread.start()
    try:
        started = time.monotonic()
        settle_ray_data(timeout=2.0)
        waited = time.monotonic() - started
        assert not slow.is_alive()
        assert stuck.is_alive() and "ray-data-metadata-prefetch still runs" in caplog.text
        assert waited < 5.0  # one deadline for all threads, and a thread not Ray Data's is let be
        assert "someone-else" not in caplog.text
    finally:
        release.set()


def test_a_failed_job_waits_for_iter_batches_prefetcher_too() -> None:
    """iter_batches' prefetch thread ("iter_threaded") can still fetch blocks when a failed
    job's error reaches the caller; a CI run whose test then shut Ray down died at exit 1."""
    import threading
    import time

    from aisle.indexing.ray_engine import settle_ray_data

    prefetch = threading.Thread(target=time.sleep, args=(0.5,), name="iter_threaded",
                                daemon=True)
    prefetch.start()
    settle_ray_data(timeout=5.0)
    assert not prefetch.is_alive()
