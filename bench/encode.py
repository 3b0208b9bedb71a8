"""Encoder speed: sentence-transformers ``encode`` vs our torch, ONNX fp32 and ONNX int8 towers.

Query latency at batch 1 on one thread (p50, p99) and catalog throughput on two threads, on
real homedepot queries and product texts, tokenisation included on every side. Every row is a
ratio to sentence-transformers ``encode`` measured in the same run, and the backends take turns
(``--turn`` queries, ``--block`` titles at a time) so load from other processes falls on all of
them alike.
Wall-clock p50 is the target; the CPU time per query is printed too, because on a shared
machine the wall clock also counts time spent waiting for a core.

    python bench/encode.py --model runs/onnx-int8/model --data ../shared/data/homedepot

``--model`` is a model directory exported with ``aisle export --int8``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

Encode = Callable[[Sequence[str]], Any]


def encoders(model_dir: Path, threads: int) -> dict[str, tuple[Encode, Encode]]:
    """name -> (query encode, product encode) on ``threads`` threads: an fp32 session's
    intra-op threads, an int8 tower's workers (aisle/towers/calls.py)."""
    from sentence_transformers import SentenceTransformer

    from aisle.towers.config import TowerConfig
    from aisle.towers.model import load_model

    manifest_file = model_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    if manifest.get("towers", "shared") != "shared":
        raise SystemExit(
            f"{model_dir} has untied towers: this bench times one shared encoder on each "
            "runtime; give it a model with shared towers (e.g. `aisle export --out DIR`)"
        )
    # A shared model is a sentence-transformers directory at its root (before the Router
    # layout: in shared/).
    root = model_dir / "shared" if (model_dir / "shared").is_dir() else model_dir
    config = TowerConfig(device="cpu", onnx_query_threads=threads, onnx_product_threads=threads)
    st = SentenceTransformer(str(root), device="cpu", local_files_only=True)
    out: dict[str, tuple[Encode, Encode]] = {}

    def st_encode(max_length: int) -> Encode:
        def run(texts: Sequence[str]) -> Any:
            st.max_seq_length = max_length  # the towers' lengths: only the runtime differs
            return st.encode(list(texts), batch_size=config.batch_size,
                             normalize_embeddings=True)

        return run

    out["sentence-transformers"] = (
        st_encode(config.max_query_length), st_encode(config.max_product_length)
    )
    for backend in ("torch", "onnx-fp32", "onnx-int8"):
        m = load_model(model_dir, replace(config, backend=backend))
        if m.backend != backend:
            raise SystemExit(f"{model_dir} has no {backend} export; run aisle export --int8")
        out[f"tower {backend}"] = (m.query.encode, m.product.encode)
    return out


def query_latency(encs: dict[str, tuple[Encode, Encode]], queries: list[str],
                  turn: int) -> dict[str, Any]:
    """Batch-1 latency per encoder; the encoders take turns of ``turn`` queries each.

    A turn of 1 query evicts each encoder's weights from the CPU caches before its every call
    (the other three encoders run in between), which no service sees: its query tower encodes
    query after query. Longer turns keep each encoder's weights as warm as a service keeps its
    own, while alternation still spreads load from other processes over all encoders alike.
    """
    torch.set_num_threads(1)
    wall: dict[str, list[float]] = {k: [] for k in encs}
    cpu: dict[str, list[float]] = {k: [] for k in encs}
    for enc, _ in encs.values():  # warm-up: first calls allocate and compile
        for q in queries[:20]:
            enc([q])
    for start in range(0, len(queries), turn):
        for name, (enc, _) in encs.items():
            for q in queries[start : start + turn]:
                w, c = time.perf_counter(), time.thread_time()
                enc([q])
                cpu[name].append(time.thread_time() - c)
                wall[name].append(time.perf_counter() - w)
    return {
        k: {
            "p50_ms": 1e3 * float(np.percentile(wall[k], 50)),
            "p99_ms": 1e3 * float(np.percentile(wall[k], 99)),
            "cpu_p50_ms": 1e3 * float(np.percentile(cpu[k], 50)),
        }
        for k in encs
    }


def throughput(
    encs: dict[str, tuple[Encode, Encode]], titles: list[str], block: int
) -> dict[str, tuple[float, float]]:
    """name -> (products per second, products per CPU-second)."""
    torch.set_num_threads(2)
    spent = dict.fromkeys(encs, 0.0)
    cpu = dict.fromkeys(encs, 0.0)
    for _, enc in encs.values():
        enc(titles[:block])  # warm-up
    for start in range(0, len(titles), block):
        part = titles[start : start + block]
        for name, (_, enc) in encs.items():
            t, c = time.perf_counter(), time.process_time()  # CPU of every thread
            enc(part)
            spent[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
    return {k: (len(titles) / spent[k], len(titles) / cpu[k]) for k in encs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="exported model dir (--int8)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/homedepot"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--titles", type=int, default=2048)
    parser.add_argument("--block", type=int, default=256, help="titles per timed turn")
    parser.add_argument("--turn", type=int, default=25,
                        help="queries per encoder turn (1 = alternate every query: cold caches)")
    parser.add_argument("--out", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    from aisle.towers.text import product_texts

    rng = np.random.default_rng(0)
    qs = pd.read_csv(args.data / "queries.csv", dtype=str, keep_default_na=False)["query"]
    queries = [qs.iloc[i] for i in rng.choice(len(qs), args.queries, replace=False)]
    products = pd.read_csv(args.data / "products.csv", dtype=str, keep_default_na=False)
    picked = products.iloc[np.sort(rng.choice(len(products), args.titles, replace=False))]
    titles = product_texts(picked)

    encs = encoders(args.model, threads=1)
    latency = query_latency(encs, queries, args.turn)
    encs = encoders(args.model, threads=2)
    rate = throughput(encs, titles, args.block)

    base = "sentence-transformers"
    rows = []
    print(f"{len(queries)} queries at batch 1 (1 thread, turns of {args.turn}); "
          f"{len(titles)} product texts, "
          f"batch 64 (2 threads); ratios are speed-ups over {base} encode in this run")
    print("| encoder | query p50 ms | p99 ms | CPU p50 ms | p50 speed-up | products/s | "
          "throughput speed-up | products/CPU-s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in encs:
        lat = latency[name]
        row = {
            "encoder": name,
            **{k: round(v, 3) for k, v in lat.items()},
            "p50_speedup": round(latency[base]["p50_ms"] / lat["p50_ms"], 2),
            "products_per_s": round(rate[name][0], 1),
            "throughput_speedup": round(rate[name][0] / rate[base][0], 2),
            "products_per_cpu_s": round(rate[name][1], 1),
        }
        rows.append(row)
        print(f"| {name} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} | {lat['cpu_p50_ms']:.2f} | "
              f"{row['p50_speedup']:.2f}x | {rate[name][0]:.0f} | "
              f"{row['throughput_speedup']:.2f}x | {rate[name][1]:.0f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
