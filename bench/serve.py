"""Load test of the search service against a naive baseline, started in the same run.

    python bench/serve.py --index runs/cascade-index --data ../shared/data/homedepot

Starts `aisle serve` and bench/naive_server.py on loopback ports, then for each of them sends
the test-split queries at concurrency 1 and 8, cold (every query new to the cache) and warm
(every query already cached, cycled until --seconds is up); a cold phase ends after --seconds
or when its queries run out.
Prints p50 / p95 / p99 latency (ms) and QPS per row, and ratios naive / aisle. All traffic
stays on 127.0.0.1; every loop is bounded and the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads the whole response.

    The load generator shares the machine with the servers, so it must cost little per request:
    a general client (httpx) spends more CPU per request than a warm search takes, and that time
    would show up in both servers' latencies. This speaks just enough HTTP for uvicorn's
    responses (a status line, headers with content-length, a body).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @staticmethod
    def request(target: str) -> bytes:
        return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    async def get(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(
    port: int,
    queries: list[str],
    concurrency: int,
    seconds: float,
    params: dict[str, str],
    sent: list[str],
    repeat: bool = False,
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    # Cold: each query once per phase (a repeat would be a cache hit). Warm: cycle through
    # the cached queries until the phase's time is up, so the percentiles rest on many samples.
    # Requests are encoded before the clock starts: only the round trip is timed.
    encoded = [
        Connection.request("/search?" + urlencode({"q": q, "k": "10", **params}))
        for q in queries
    ]
    pairs = list(zip(queries, encoded, strict=True))
    it = itertools.cycle(pairs) if repeat else iter(pairs)
    deadline = time.monotonic() + seconds
    conns = [await Connection.open(port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal failures
        for q, request in it:  # shared iterator across the workers
            if time.monotonic() > deadline:
                return
            sent.append(q)
            t = time.perf_counter()
            status, _ = await conn.get(request)
            latencies.append(time.perf_counter() - t)
            failures += status != 200

    try:
        started = time.perf_counter()
        # One bound for the phase (a per-request wait_for would cost the client a task each).
        await asyncio.wait_for(asyncio.gather(*(worker(c) for c in conns)), seconds + 60)
        wall = time.perf_counter() - started
    finally:
        for c in conns:
            c.close()
    ms = np.array(latencies) * 1000
    return {
        "n": len(ms),
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "qps": len(ms) / wall,
        "failed": failures,
    }


def run(coro: Any) -> Any:
    """Run one phase on uvloop (the servers' loop too) when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def phases(
    port: int, queries: list[str], seconds: float, label: str, params: dict[str, str]
) -> list[tuple[str, dict[str, float]]]:
    half = len(queries) // 2
    rows = []
    sent: list[str] = []
    for conc, cold in ((1, queries[:half]), (8, queries[half:])):
        result = run(load(port, cold, conc, seconds, params, sent))
        rows.append((f"{label} cold c={conc}", result))
    for conc in (1, 8):  # only queries sent above: all cached now (aisle has no other cache)
        result = run(load(port, list(sent), conc, seconds, params, [], repeat=True))
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
    parser.add_argument("--no-naive", action="store_true",
                        help="skip the naive baseline (no ratios): for quick iterations")
    parser.add_argument(
        "--naive-index",
        help="flat index (version) directory for the naive server (default: --index's current "
        "version; pass a flat one when --index is approximate)",
    )
    parser.add_argument(
        "--serve-option", action="append", default=[], metavar="KEY=VALUE",
        help="a ServeConfig override for aisle serve, e.g. query_spelling=false (repeatable)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import pandas as pd

    from aisle.retrieval.store import load_index
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
            *args.serve_option,
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
    if args.no_naive:
        report(results)
        return
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

    report(results)
    by = dict(results)
    for phase in ("cold c=8", "warm c=8", "cold c=1", "warm c=1"):
        a, n = by[f"aisle dense {phase}"], by[f"naive {phase}"]
        print(
            f"ratio naive/aisle {phase}: p99 {n['p99'] / a['p99']:.2f}x, "
            f"QPS aisle/naive {a['qps'] / n['qps']:.2f}x"
        )


def report(results: list[tuple[str, dict[str, float]]]) -> None:
    print(
        f"{'phase':<24} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'QPS':>8} {'fail':>4}"
    )
    for name, r in results:
        print(
            f"{name:<24} {r['n']:>5.0f} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f} "
            f"{r['qps']:>8.1f} {r['failed']:>4.0f}"
        )


if __name__ == "__main__":
    main()
