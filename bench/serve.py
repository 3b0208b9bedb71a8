"""Load test of the search service against a naive baseline, started in the same run.

    python bench/serve.py --index runs/cascade-index --data ../shared/data/homedepot

Starts `aisle serve` and bench/naive_server.py on loopback ports, then for each of them sends
the test-split queries at concurrency 1 and 8, cold (every query new to the cache) and warm
(every query already cached), each phase bounded by --seconds and by the number of queries.
Prints p50 / p95 / p99 latency (ms) and QPS per row, and ratios naive / aisle. All traffic
stays on 127.0.0.1; every loop is bounded and the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

log = logging.getLogger("bench.serve")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/search", params={"q": "warmup"}, timeout=30)
            return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not come up on port {port}")


async def load(
    port: int,
    queries: list[str],
    concurrency: int,
    seconds: float,
    params: dict[str, str],
    sent: list[str],
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    it = iter(queries)
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        async def worker() -> None:
            nonlocal failures
            for q in it:  # shared iterator: each query is sent once per phase
                if time.monotonic() > deadline:
                    return
                sent.append(q)
                t = time.perf_counter()
                r = await client.get("/search", params={"q": q, "k": "10", **params})
                latencies.append(time.perf_counter() - t)
                failures += r.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "n": len(ms),
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "qps": len(ms) / wall,
        "failed": failures,
    }


def phases(
    port: int, queries: list[str], seconds: float, label: str, params: dict[str, str]
) -> list[tuple[str, dict[str, float]]]:
    half = len(queries) // 2
    rows = []
    sent: list[str] = []
    for conc, cold in ((1, queries[:half]), (8, queries[half:])):
        result = asyncio.run(load(port, cold, conc, seconds, params, sent))
        rows.append((f"{label} cold c={conc}", result))
    for conc in (1, 8):  # only queries sent above: all cached now (aisle has no other cache)
        result = asyncio.run(load(port, list(sent), conc, seconds, params, []))
        rows.append((f"{label} warm c={conc}", result))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", required=True)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "homedepot"))
    parser.add_argument("--seconds", type=float, default=20.0, help="cap per phase")
    parser.add_argument("--hybrid", action="store_true", help="add aisle rows in hybrid mode")
    parser.add_argument(
        "--naive-index",
        help="flat index (version) directory for the naive server (default: --index's current "
        "version; pass a flat one when --index is approximate)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import pandas as pd

    from aisle.indexing import load_index
    from aisle.towers.model import resolve_model_ref

    q = pd.read_csv(Path(args.data) / "queries.csv", dtype=str, keep_default_na=False)
    queries = q.loc[q["split"] == "test", "query"].drop_duplicates().tolist()
    index = load_index(Path(args.index))
    model_dir = resolve_model_ref(index.model_ref)
    if (model_dir / "manifest.json").is_file():  # an aisle model dir: the query tower's weights
        sub = "shared" if (model_dir / "shared").is_dir() else "query"
        model_dir = model_dir / sub

    results: list[tuple[str, dict[str, float]]] = []
    aisle_port, naive_port = free_port(), free_port()
    env = dict(os.environ)
    aisle = start(
        [
            sys.executable,
            "-m",
            "aisle.cli",
            "serve",
            "--index",
            args.index,
            "--port",
            str(aisle_port),
            "watch_interval_s=0",
        ],
        aisle_port,
        env,
    )
    try:
        results += phases(aisle_port, queries, args.seconds, "aisle dense", {})
        if args.hybrid:
            results += phases(aisle_port, queries, args.seconds, "aisle hybrid", {"mode": "hybrid"})
    finally:
        aisle.terminate()
        aisle.wait(timeout=30)
    naive = start(
        [
            sys.executable,
            str(ROOT / "bench" / "naive_server.py"),
            "--index",
            str(args.naive_index or index.root),
            "--model",
            str(model_dir),
            "--port",
            str(naive_port),
        ],
        naive_port,
    )
    try:
        results += phases(naive_port, queries, args.seconds, "naive", {})
    finally:
        naive.terminate()
        naive.wait(timeout=30)

    print(
        f"{'phase':<24} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'QPS':>8} {'fail':>4}"
    )
    for name, r in results:
        print(
            f"{name:<24} {r['n']:>5.0f} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f} "
            f"{r['qps']:>8.1f} {r['failed']:>4.0f}"
        )
    by = dict(results)
    for phase in ("cold c=8", "warm c=8", "cold c=1", "warm c=1"):
        a, n = by[f"aisle dense {phase}"], by[f"naive {phase}"]
        print(
            f"ratio naive/aisle {phase}: p99 {n['p99'] / a['p99']:.2f}x, "
            f"QPS aisle/naive {a['qps'] / n['qps']:.2f}x"
        )


if __name__ == "__main__":
    main()
