"""Catalog embedding throughput: the index build's embedding job vs a plain encode, same run.

    nice -n 15 python bench/embed.py --data ../shared/data/homedepot --limit 2000
    python bench/embed.py --data ../shared/data/homedepot --limit 4000 --ray-nodes 1,2

Over the first ``--limit`` products of the catalog, in this order:

1. ``sentence-transformers``: ``SentenceTransformer(base model).encode(texts)`` with its
   defaults (batch 32, normalised), over the very texts the product tower embeds; then the
   same with the tower's batch size (64), which is what the job's encode call uses.
2. ``job, cold``: ``embed_catalog`` (aisle/indexing/embed_job.py) with an empty embedding
   cache and work dir: parquet blocks, tower encode, checkpoints, cache writes.
3. ``job, warm cache``: the same job again with a fresh work dir (a rebuild of an unchanged
   catalog): every vector comes from the cache.
4. ``job, ray`` (with ``--ray``): the cold job with the Ray Data engine, one local CPU actor.
   With ``--ray-nodes 1,2``: the cold job on a Ray cluster of that many nodes simulated on this
   machine (``ray.cluster_utils.Cluster``, one CPU a node, joined through ``--ray-address`` as
   ``aisle index`` joins one), one row per node count.
5. ``sentence-transformers`` again: on a shared machine the load drifts during a run, so the
   baseline is timed before and after, and ratios are against the mean of the two.

Prints seconds, products/s, and each row's throughput relative to the plain encode. Scratch
files go to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aisle.towers.model import TwoTowerModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="canonical CSV dir")
    parser.add_argument("--limit", type=int, default=2000, help="first N products")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--ray", action="store_true", help="also time the Ray Data engine")
    parser.add_argument("--ray-nodes", default="",
                        help="comma-separated node counts of simulated Ray clusters to time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    from sentence_transformers import SentenceTransformer

    from aisle.data.canonical import read_csv_strict
    from aisle.data.dataset import prepare
    from aisle.indexing.embed_cache import EmbeddingCache
    from aisle.indexing.embed_job import embed_catalog
    from aisle.towers.model import base_model_path, load_model

    products = read_csv_strict(args.data / "products.csv", "products").head(args.limit)
    model = load_model(None)
    texts = model.product_texts(products)
    plain = SentenceTransformer(str(base_model_path()), device="cpu")
    plain.encode(texts[:64])  # warm-up, both sides
    model.product.encode(texts[:64])

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="aisle-bench-embed-") as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "csv").mkdir()
        products.to_csv(tmp / "csv" / "products.csv", index=False)
        data = prepare(tmp / "csv", tmp / "data")

        started = time.perf_counter()
        reference = plain.encode(texts, normalize_embeddings=True)
        rows.append(("sentence-transformers encode", time.perf_counter() - started))

        # The same call with the product tower's batch size: separates batching from the job.
        started = time.perf_counter()
        plain.encode(texts, normalize_embeddings=True, batch_size=model.product.batch_size)
        rows.append((f"sentence-transformers encode, batch {model.product.batch_size}",
                     time.perf_counter() - started))

        cache = EmbeddingCache(tmp / "cache", model.fingerprint, model.dim)
        started = time.perf_counter()
        cold = embed_catalog(data, model, tmp / "work-cold", cache)
        rows.append(("job, cold (encode all)", time.perf_counter() - started))

        cache = EmbeddingCache(tmp / "cache", model.fingerprint, model.dim)
        started = time.perf_counter()
        warm = embed_catalog(data, model, tmp / "work-warm", cache)
        rows.append(("job, warm cache (rebuild)", time.perf_counter() - started))
        assert warm.encoded == 0

        if args.ray:
            import ray

            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
            started = time.perf_counter()
            embed_catalog(data, model, tmp / "work-ray", engine="ray")
            rows.append(("job, ray (1 actor, cold)", time.perf_counter() - started))
            ray.shutdown()

        for nodes in [int(n) for n in args.ray_nodes.split(",") if n.strip()]:
            seconds, vectors = on_cluster(nodes, data, model, tmp / f"work-ray-{nodes}")
            np.testing.assert_allclose(vectors, cold.vectors, atol=1e-5)  # the local job's
            rows.append((f"job, ray cluster of {nodes} node(s), 1 CPU each (cold)", seconds))

        started = time.perf_counter()
        plain.encode(texts, normalize_embeddings=True)
        rows.append(("sentence-transformers encode, again", time.perf_counter() - started))

    gap = float(np.abs(cold.vectors - reference).max())
    n = len(texts)
    base = n / ((rows[0][1] + rows[-1][1]) / 2)
    print(f"\n{n} products of {args.data.name}, torch threads {torch.get_num_threads()}")
    print("| method | seconds | products/s | vs plain encode (mean of both runs) |")
    print("|---|---:|---:|---:|")
    for name, seconds in rows:
        rate = n / seconds
        print(f"| {name} | {seconds:.1f} | {rate:,.0f} | {rate / base:.2f}x |")
    print(f"\nmax |job vector - plain vector| = {gap:.2e}")


def on_cluster(nodes: int, data: Path, model: TwoTowerModel, work: Path
               ) -> tuple[float, np.ndarray]:
    """The cold job on a simulated cluster of ``nodes`` one-CPU nodes: (seconds, vectors).
    The cluster starts before the clock; joining it and the job are timed."""
    import ray
    from ray.cluster_utils import Cluster

    from aisle.indexing.embed_job import embed_catalog
    from aisle.indexing.ray_engine import connect

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                            "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        started = time.perf_counter()
        connect(cluster.address)
        done = embed_catalog(data, model, work, engine="ray")
        return time.perf_counter() - started, done.vectors
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
