"""Index build time on CPU against GPU, on random unit vectors, with the GPU build's recall.

    python bench/gpu_build.py                           # 1M x 384: hnsw (default) and ivf_pq
    python bench/gpu_build.py --n 2000 --kinds flat,ivf_flat --queries 50

Each kind builds through ``aisle.indexing.ann.build_faiss_index``, once with ``device=cpu``
and once with ``device=gpu`` where faiss sees a GPU and the kind builds there (the IVF kinds:
faiss has no GPU HNSW build and a flat add is a copy, see ann.py). Without a GPU the GPU half
is skipped and said so. Reported per kind and device: build seconds, recall@10 against exact
search, and for GPU the speed-up (CPU s / GPU s) and recall@10 of its results against the
CPU-built index's (the two should find the same neighbours).

The vectors are isotropic Gaussian, normalised: no cluster structure, the hardest case for IVF
(its recall here is a floor, not what a real catalog gets; bench/ann.py measures that). What
this measures is build time, which depends on the count and dimension, not on the structure.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import faiss
import numpy as np

from aisle.indexing.ann import GPU_KINDS, build_faiss_index
from aisle.retrieval.config import APPROXIMATE, IndexConfig

K = 10


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def config_for(kind: str) -> IndexConfig:
    """The default config, or the million-scale one (APPROXIMATE) for ivf_pq."""
    return APPROXIMATE if kind == APPROXIMATE.kind else IndexConfig(kind=kind)  # type: ignore[arg-type]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def timed_build(config: IndexConfig, x: np.ndarray) -> tuple[faiss.Index, float]:
    started = time.perf_counter()
    index = build_faiss_index(config, x)
    return index, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--kinds", default=f"{IndexConfig().kind},{APPROXIMATE.kind}",
                   help="comma-separated index kinds (default: the default kind and ivf_pq)")
    args = p.parse_args()
    x = unit_vectors(args.n, args.dim, 0)
    q = unit_vectors(args.queries, args.dim, 1)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    truth = exact.search(q, K)[1]
    gpus = gpu_count()
    print(f"{args.n:,} x {args.dim} random unit vectors, {args.queries} queries, faiss "
          f"{faiss.__version__}, {gpus} GPU(s) visible")
    if not gpus:
        print("no GPU: faiss sees none (faiss-cpu, or no CUDA device); running the CPU half only")
    rows = []
    for kind in args.kinds.split(","):
        config = config_for(kind.strip())
        cpu_index, cpu_s = timed_build(replace(config, device="cpu"), x)
        cpu_ids = cpu_index.search(q, K)[1]
        rows.append((config.kind, "cpu", f"{cpu_s:.2f}", "", f"{recall(cpu_ids, truth):.3f}", ""))
        if not gpus or config.kind not in GPU_KINDS:
            why = "no GPU" if not gpus else "CPU-only kind"
            rows.append((config.kind, "gpu", "-", "-", "-", why))
            continue
        gpu_index, gpu_s = timed_build(replace(config, device="gpu"), x)
        gpu_ids = gpu_index.search(q, K)[1]
        rows.append((config.kind, "gpu", f"{gpu_s:.2f}", f"{cpu_s / gpu_s:.1f}x",
                     f"{recall(gpu_ids, truth):.3f}", f"{recall(gpu_ids, cpu_ids):.3f}"))
    header = ("kind", "device", "build_s", "speedup", "recall@10", "vs_cpu@10")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
