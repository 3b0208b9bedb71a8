"""The embedding step as a Ray Data job (``aisle index --engine ray``).

``RayEncoder(model)(texts)`` runs ``ray.data.from_pandas`` -> ``map_batches(ProductEmbedder)``:
a pool of actors, each loading the product tower once (by the model's ref and tower config)
and encoding batches of texts. Rows carry their position, so the vectors come back in input
order whatever order Ray finishes them in. ``connect(address)`` joins an existing cluster
(``aisle index --engine ray --ray-address ADDR``); without an address Ray joins the cluster
``RAY_ADDRESS`` names, or starts a local one. A model directory travels to the workers through
Ray's object store, so a worker node needs neither the driver's working directory nor a shared
file system; the packaged base model is installed on every node with aisle. One actor runs per
CPU of the cluster. Only this module imports ray: the local engine never does.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aisle.configs import from_dict, to_dict
from aisle.cores import available_cores
from aisle.errors import AisleError
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)

# Texts per Ray batch: large enough to amortise scheduling, small enough to stream.
RAY_BATCH = 256
# Times a batch is tried again on a new actor after its actor died (a node lost, a worker
# killed). Ray Data's default is forever: a batch that kills its worker every time (out of
# memory, a crash in a native library) would restart actors without end, the job never
# finishing nor failing.
RAY_RETRIES = 3
# Ray Data's background threads for one job: its scheduling loop, its metadata fetcher and
# iter_batches' prefetcher (which still fetches blocks when a failed job's error reaches the
# caller). The job's own shutdown waits 2 s for the first; on a loaded machine they can
# outlive that and then call into Ray after ``ray.shutdown()``, which makes Ray end the whole
# process (a CI run died so at exit 1, in the test that fails a job and then shuts Ray down).
RAY_DATA_THREADS = ("StreamingExecutor-", "ray-data-metadata-prefetch", "iter_threaded")
RAY_SETTLE_SECONDS = 60.0


# Ray's usage collection: Ray Data's starts a thread in the driver that polls a Prometheus
# server every 10 s for the life of the process, reading Ray's worker each time (a read that
# lands in ray.shutdown() would end the process), and Ray's own reports usage to its makers.
# aisle sends nothing anywhere at run time: off, unless the user's environment turns it on.
USAGE_OFF = {"RAY_DATA_USAGE_DISABLED": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def quiet_usage() -> None:
    """Turn Ray's usage collection off for this process where the environment has not chosen
    (before a job: Ray Data reads the switch as each job starts)."""
    for name, value in USAGE_OFF.items():
        os.environ.setdefault(name, value)


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (``host:port``, ``ray://host:port`` or ``auto``);
    None: the cluster ``RAY_ADDRESS`` names, else a local one of the cores this process may use."""
    import ray

    quiet_usage()
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        elif os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:  # "local": a Ray of this process's own, never a cluster left running here
            ray.init(address="local", num_cpus=available_cores(), include_dashboard=False,
                     log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise AisleError(f"could not join the Ray cluster at {address or 'RAY_ADDRESS'}: {e}; "
                         "start one with `ray start --head` or check the address") from e
    log.info("Ray cluster: %s", ray.cluster_resources())


def pack_directory(path: Path) -> bytes:
    """``path`` as an uncompressed tar (weights do not compress) of its contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(path), arcname="model")
    return buffer.getvalue()


@contextmanager
def unpacked(packed: bytes) -> Iterator[Path]:
    """A private copy of a ``pack_directory`` tar on this node, as its directory; removed on
    exit (a model holds what it read once loaded, and each actor of each job unpacks one)."""
    where = Path(tempfile.mkdtemp(prefix="aisle-model-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r") as tar:
            tar.extractall(where, filter="data")
        yield where / "model"
    finally:
        shutil.rmtree(where, ignore_errors=True)


class ProductEmbedder:
    """Ray Data UDF holding the product tower; ``__call__`` maps a batch of texts to vectors.
    ``packed``: the model directory as ``pack_directory`` bytes (or an object-store ref to
    them), unpacked on the worker's node; None loads ``ref`` as it is (the packaged model)."""

    def __init__(self, ref: str, tower_config: dict[str, Any], fingerprint: str,
                 packed: Any = None, runtime: str = "") -> None:
        from aisle.towers.config import TowerConfig
        from aisle.towers.model import load_model

        # One thread an actor: Ray runs an actor per CPU, so an int8 tower's workers (one per
        # core by default, towers/calls.py) would put cores x cores busy threads on a node.
        # And the CPU: an actor reserves one CPU and no GPU, and a node's GPU, which Ray no
        # longer hides from such actors, would take every actor's tower under device=auto.
        # Neither changes what the towers output (the fingerprint).
        config = replace(from_dict(TowerConfig, tower_config), onnx_product_threads=1,
                         device="cpu")
        # The fast tokenizer's own pool too (a thread per core of the node, on every actor):
        # it reads this variable on each batch, in this process (an actor's own).
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        if packed is None:
            self.model = load_model(ref, config)
        else:
            import ray

            data = ray.get(packed) if isinstance(packed, ray.ObjectRef) else packed
            with unpacked(data) as local:
                self.model = load_model(str(local), config)
        if self.model.backend == "torch":
            import torch

            # Ray gives an actor OMP_NUM_THREADS=1 only when its driver left it unset, and
            # the CLI sets it under a CPU quota (aisle.cores.cap_thread_pools).
            torch.set_num_threads(1)
        if self.model.fingerprint != fingerprint:
            raise AisleError(
                f"the Ray worker loaded model {ref} with fingerprint {self.model.fingerprint}, "
                f"not {fingerprint}: the workers must see the same model directory"
            )
        if runtime and self.model.runtime != runtime:
            raise AisleError(
                f"the Ray worker runs model {ref} on {self.model.runtime}, the driver on "
                f"{runtime}: their vectors would differ; the workers must see the same export"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.product.encode([str(t) for t in batch["text"]]).numpy()
        return {"pos": batch["pos"], "vector": vectors.astype(np.float32)}


class RayEncoder:
    """``encoder(texts) -> (n, D)`` float32, computed by a Ray Data actor pool."""

    def __init__(self, model: TwoTowerModel, actors: int | None = None,
                 address: str | None = None) -> None:
        import ray

        connect(address)
        local = Path(model.ref)
        packed = ray.put(pack_directory(local)) if local.is_dir() else None
        # The backend that runs here, not the config's ``auto``, which a worker on another
        # node (a GPU, no ONNX export) could resolve another way.
        config = to_dict(replace(model.config, backend=model.backend))
        self.args = (model.ref, config, model.fingerprint, packed, model.runtime)
        self.dim = model.dim
        self.actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import ray
        import ray.data

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        quiet_usage()
        frame = pd.DataFrame({"pos": np.arange(len(texts)), "text": list(texts)})
        # One block per batch, so that every actor (one per CPU, across nodes) gets work.
        blocks = [frame.iloc[i : i + RAY_BATCH] for i in range(0, len(frame), RAY_BATCH)]
        out = ray.data.from_pandas(blocks).map_batches(
            ProductEmbedder,
            fn_constructor_args=self.args,
            batch_size=RAY_BATCH,
            batch_format="numpy",
            concurrency=min(self.actors, len(blocks)),
            max_restarts=RAY_RETRIES,
            max_task_retries=RAY_RETRIES,
        )
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        seen = 0
        batches = out.iter_batches(batch_format="numpy", batch_size=None)
        try:
            for batch in batches:
                vectors[batch["pos"]] = batch["vector"]
                seen += len(batch["pos"])
        except ray.exceptions.ActorDiedError as e:
            if e.actor_init_failed:  # its own error (another model, say): not a lost worker
                raise
            raise AisleError(
                f"a Ray embedding worker died, and died again on each of {RAY_RETRIES} retries "
                f"({e}); the finished blocks are checkpointed: find the cause (memory?) and "
                "build again"
            ) from e
        finally:
            # Ended early (an error, an interrupt): stop the job's threads before waiting.
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            settle_ray_data()
        if seen != len(texts):
            raise AisleError(f"the Ray job returned {seen} vectors for {len(texts)} texts")
        return vectors


def settle_ray_data(timeout: float = RAY_SETTLE_SECONDS) -> None:
    """Wait (up to ``timeout`` seconds in all) for Ray Data's background threads to end, so
    that a ``ray.shutdown()`` after a job, finished or failed, never races them."""

    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is threading.current_thread() or not thread.name.startswith(RAY_DATA_THREADS):
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("Ray Data thread %s still runs %.0f s after its job", thread.name,
                        timeout)
