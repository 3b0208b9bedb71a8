"""Load test of the search service against a naive baseline, started in the same run.

    python bench/serve.py --index runs/cascade-index --data ../shared/data/homedepot

Starts `aisle serve` and bench/naive_server.py on loopback ports and sends the dev- and
test-split queries (queries.csv's `split` column) at concurrency 1 and 8, in two modes of aisle:
rows "aisle dense ..." (mode=dense) and "aisle hybrid ..." (mode=hybrid, the service's default;
--dense-only skips them), then "naive ..." (dense only: it has no other mode).

The service caches by the query text it searches (normalised, case-folded, spell-corrected):
one query-vector cache shared by every mode, and a per-index cache of finished results keyed by
(text, k, mode, partition). So, per mode:

- cold: every query is new to both caches: the request encodes the query (and, in hybrid
  mode, scores BM25 and fuses) and runs the ANN search. Each (mode, concurrency) cold phase
  gets its own slice of the queries, disjoint from every other phase's: the queries are
  deduplicated as the service folds them (whitespace runs collapsed, case folded) and shuffled
  with a fixed seed, then cut into four even slices (dense c=1, dense c=8, hybrid c=1,
  hybrid c=8), so no cold phase sends a query an earlier phase sent (in any mode), and the
  dense slices are the same whether or not hybrid runs. Two typed queries the speller corrects
  to one text still share a cache entry; the bench cannot see that without the model.
  A cold phase ends after --seconds or when its slice runs out.
- warm: the queries this mode sent in its own cold phases, cycled until --seconds is up: each
  request is a result-cache hit.

The naive server has no cache; it gets the dense slices, so it answers the same queries as
the "aisle dense" rows, and the ratio lines compare the two.

Prints p50 / p95 / p99 latency (ms) and QPS of the answered (200) requests, the failed
(non-200) ones apart, per row, and the CPU each phase cost: the server's cores busy (its CPU
seconds over the phase's wall seconds, out of os.cpu_count(); from /proc, so blank off Linux)
and its and the load generator's CPU ms per request sent. A server that answers slower than
the cores it leaves idle would allow is held up by something other than CPU (on CPython,
often the GIL). Then the targets
measured by this run (hybrid warm and cold p99 at c=8, hybrid/dense warm p99 ratio, failed
requests: printed numbers, not a pass/fail exit code), the floor under hybrid cold c=8's mean
latency that the CPU a request sets (8 clients x (server + client CPU ms a request) / cores:
the clients wait in a closed loop, so by Little's law the mean is about 8 / QPS), and ratios
naive / aisle.
--against KEY=VALUE (repeatable) runs every aisle phase again against a second aisle serve
with those ServeConfig overrides, in the same run, and prints aisle's p99 and server CPU a
request over its (e.g. --serve-option query_tower=static --against query_tower=transformer).
--rate R (repeatable) adds, after each mode's closed loops, an open loop ("aisle MODE open
R/s"): cold queries sent at R a second, Poisson arrivals, whether or not the ones before were
answered, each latency counted from its scheduled time (a closed loop's clients send less
while the server is slow, so its percentiles leave out that wait: coordinated omission). Its
queries come from the train split, none that a closed loop's slice holds, one slice a (mode,
rate); its row adds how late the load generator itself sent (p99), which says whether the
generator kept up.
The aisle servers run the aisle package this script imports, so `PYTHONPATH=<another
checkout> python bench/serve.py ...` measures that checkout's service (from any directory).
--rows-json writes the rows as JSON. A few responses of each aisle phase are checked to be
answered in the mode asked for. All traffic stays on 127.0.0.1; every loop is bounded and the
servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

log = logging.getLogger("bench.serve")
ROOT = Path(__file__).resolve().parents[1]
WARMUP_QUERY = "warmup"  # sent at start-up in each mode; never in a cold slice
MODES = ("dense", "hybrid")
CONCURRENCY = (1, 8)
CHECKED_BODIES = 3  # responses per phase whose `mode` is checked
SLICE_SEED = 0
OPEN_CONNECTIONS = 64  # an open loop's keep-alive connections (its most requests in flight)

Row = tuple[str, dict[str, float]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    cmd: list[str],
    port: int,
    env: dict[str, str] | None = None,
    warm: tuple[dict[str, str], ...] = ({},),
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` and wait until it answers; then one WARMUP_QUERY per params in ``warm``.
    A server that exits first is an error that quotes the end of its stderr."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the bench)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            errors.seek(0)
            tail = errors.read()[-2000:].decode("utf-8", "replace")
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before answering on "
                               f"port {port}:\n{tail}")
        try:
            for params in warm:
                url = f"http://127.0.0.1:{port}/search"
                httpx.get(url, params={"q": WARMUP_QUERY, **params}, timeout=30)
            return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not come up on port {port}")


def server_env() -> dict[str, str]:
    """This environment without the service's own settings (``AISLE_*``, ``REDIS_URL``): a
    Redis the shell names would answer a second run's cold queries (the slices are the same
    each run), and any setting would measure something other than the defaults. Settings go
    through --serve-option."""
    dropped = sorted(k for k in os.environ if k.startswith("AISLE_") or k == "REDIS_URL")
    if dropped:
        log.warning("not passed to the servers: %s (use --serve-option)", ", ".join(dropped))
    return {k: v for k, v in os.environ.items() if k not in dropped}


def aisle_command(*args: str) -> list[str]:
    """``aisle ARGS`` run with the aisle package this bench imported (so
    ``PYTHONPATH=../old python bench/serve.py ...`` measures ../old's service). Not ``python -m
    aisle.cli``: ``-m`` puts the working directory first on ``sys.path``, so from a checkout
    the servers would run that checkout's aisle whatever ``PYTHONPATH`` says."""
    root = str(aisle_root())
    boot = f"import sys; sys.path.insert(0, {root!r}); from aisle.cli import main; sys.exit(main())"
    return [sys.executable, "-c", boot, *args]


def aisle_root() -> Path:
    """The directory that holds the aisle package this bench imported."""
    import aisle

    return Path(aisle.__file__).resolve().parents[1]


def query_key(text: str) -> str:
    """``text`` as the service folds it before its caches: NFKC, each whitespace run one space,
    case folded ("Drill" and " drill" are one query to it). Spelling is not corrected here."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def cold_slices(queries: list[str], n: int, seed: int = SLICE_SEED) -> list[list[str]]:
    """``queries`` deduplicated by ``query_key`` (first spelling kept, blanks and the warm-up
    query dropped), shuffled with ``seed`` and cut into ``n`` disjoint slices whose sizes differ
    by at most one (fewer queries than wanted: still split evenly, some slices small)."""
    seen: set[str] = {query_key(WARMUP_QUERY)}
    unique: list[str] = []
    for q in queries:
        key = query_key(q)
        if key and key not in seen:
            seen.add(key)
            unique.append(q)
    random.Random(seed).shuffle(unique)
    size, extra = divmod(len(unique), n)
    slices, at = [], 0
    for i in range(n):
        end = at + size + (i < extra)
        slices.append(unique[at:end])
        at = end
    return slices


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


def search_request(query: str, params: dict[str, str]) -> bytes:
    """The GET /search request for ``query`` (top 10, with ``params``), encoded once, before
    any clock starts."""
    return Connection.request("/search?" + urlencode({"q": query, "k": "10", **params}))


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used; NaN where /proc
    cannot tell (not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # The fields after the command name, which may hold spaces and parentheses.
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def check_mode(bodies: list[bytes], mode: str) -> None:
    """Raise unless each of ``bodies`` (200 responses) says it was answered in ``mode``."""
    for body in bodies:
        answered = json.loads(body).get("mode")
        if answered != mode:
            raise RuntimeError(
                f"asked for mode={mode}, the service answered mode={answered!r}: the rows "
                "would measure the wrong mode"
            )


async def load(
    port: int,
    queries: list[str],
    concurrency: int,
    seconds: float,
    params: dict[str, str],
    sent: list[str],
    repeat: bool = False,
    server_pid: int | None = None,
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    bodies: list[bytes] = []  # the first few 200 bodies, checked after the clock stops
    # Cold: each query once per phase (a repeat would be a cache hit). Warm: cycle through
    # the cached queries until the phase's time is up, so the percentiles rest on many samples.
    # Requests are encoded before the clock starts: only the round trip is timed.
    encoded = [search_request(q, params) for q in queries]
    pairs = list(zip(queries, encoded, strict=True))
    it = itertools.cycle(pairs) if repeat else iter(pairs)
    deadline = time.monotonic() + seconds
    conns = [await Connection.open(port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal failures
        for q, request in it:  # shared iterator across the workers
            if time.monotonic() > deadline:
                return
            t = time.perf_counter()
            status, body = await conn.get(request)
            if status != 200:  # counted apart: a fast 503 is no latency, nor a cached query
                failures += 1
                continue
            latencies.append(time.perf_counter() - t)
            sent.append(q)
            if len(bodies) < CHECKED_BODIES:
                bodies.append(body)

    try:
        server_cpu = math.nan if server_pid is None else cpu_seconds(server_pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        # One bound for the phase (a per-request wait_for would cost the client a task each).
        await asyncio.wait_for(asyncio.gather(*(worker(c) for c in conns)), seconds + 60)
        wall = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        if server_pid is not None:
            server_cpu = cpu_seconds(server_pid) - server_cpu
    finally:
        for c in conns:
            c.close()
    if "mode" in params:
        check_mode(bodies, params["mode"])
    return summary(latencies, failures, wall, server_cpu, client_cpu)


def arrivals(n: int, rate: float, seconds: float, seed: int = SLICE_SEED) -> list[float]:
    """When an open loop sends its requests (seconds from the phase's start): a Poisson
    process of ``rate`` requests a second (exponential gaps, seeded), those within
    ``seconds``, at most ``n``."""
    if rate <= 0:
        raise ValueError(f"an open loop's rate must be > 0 requests a second, got {rate}")
    rng = random.Random(seed)
    times: list[float] = []
    t = rng.expovariate(rate)
    while len(times) < n and t <= seconds:
        times.append(t)
        t += rng.expovariate(rate)
    return times


async def open_load(
    port: int,
    queries: list[str],
    rate: float,
    seconds: float,
    params: dict[str, str],
    server_pid: int | None = None,
    connections: int = OPEN_CONNECTIONS,
) -> dict[str, float]:
    """An open loop: each request is sent at its time (``arrivals``) whether or not the ones
    before it were answered, as independent shoppers send theirs, and its latency counts from
    that time, so a server that falls behind shows in every request it delays (a closed loop
    sends less while it is slow, and its percentiles miss that wait). A request that finds all
    ``connections`` keep-alive connections busy waits for one, and the wait counts. The most
    recently used connection goes first (one idle past the server's keep-alive timeout is
    closed by it); a request whose connection the server has closed is sent once more on a
    new one, as browsers do, and its latency still counts from its time. Requests left
    unanswered 60 s past the phase count as failed. ``late_p99``: how long after its time the
    load generator sent a request (its own lag; large values mean it, not the server, fell
    behind); ``scheduled``: the requests the phase was to send."""
    loop = asyncio.get_running_loop()
    times = arrivals(len(queries), rate, seconds)
    if times and len(times) == len(queries) and times[-1] < 0.9 * seconds:
        log.warning("only %d queries for %g/s: the open loop sends for %.1f s, not %g",
                    len(times), rate, times[-1], seconds)
    encoded = [search_request(q, params) for q in queries[:len(times)]]
    latencies: list[float] = []
    late: list[float] = []
    failures = 0
    bodies: list[bytes] = []
    idle: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()
    for _ in range(connections):
        idle.put_nowait(await Connection.open(port))

    async def send(at: float, request: bytes) -> None:
        nonlocal failures
        await asyncio.sleep(max(0.0, at - loop.time()))
        late.append(loop.time() - at)
        conn = await idle.get()
        try:
            for tries in (1, 2):
                try:
                    status, body = await conn.get(request)
                    break
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    conn.close()  # closed by the server: a new connection takes its place
                    conn = await Connection.open(port)
                    if tries == 2:
                        failures += 1
                        return
        finally:
            idle.put_nowait(conn)
        if status != 200:
            failures += 1
            return
        latencies.append(loop.time() - at)
        if len(bodies) < CHECKED_BODIES:
            bodies.append(body)

    try:
        server_cpu = math.nan if server_pid is None else cpu_seconds(server_pid)
        client_cpu = time.process_time()
        begin = loop.time() + 0.05  # the tasks are made before the first is due
        tasks = [asyncio.create_task(send(begin + at, request))
                 for at, request in zip(times, encoded, strict=True)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + 60) if tasks else ((), set())
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d requests unanswered 60 s past the open loop: counted as failed",
                        len(pending))
            failures += len(pending)
            await asyncio.wait(pending)
        for task in tasks:  # a bug here, or the server gone
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        wall = loop.time() - begin
        client_cpu = time.process_time() - client_cpu
        if server_pid is not None:
            server_cpu = cpu_seconds(server_pid) - server_cpu
    finally:
        while not idle.empty():
            idle.get_nowait().close()
    if "mode" in params:
        check_mode(bodies, params["mode"])
    return summary(latencies, failures, wall, server_cpu, client_cpu,
                   late_p99=float(np.percentile(np.array(late) * 1000, 99)) if late else
                   math.nan, rate=rate, scheduled=len(times))


def summary(latencies: list[float], failures: int, wall: float, server_cpu: float,
            client_cpu: float, **extra: float) -> dict[str, float]:
    """A phase's row: latency percentiles (ms) and QPS of the answered requests, the failed
    ones counted apart, and the CPU the phase cost a request sent."""
    nan = math.nan
    if not latencies:  # an empty slice (a tiny data set): a row of NaN, not a crash
        return {"n": 0, "p50": nan, "p95": nan, "p99": nan, "qps": 0.0, "failed": failures,
                "server_cores": nan, "server_ms": nan, "client_ms": nan, **extra}
    ms = np.array(latencies) * 1000
    return {
        "n": len(ms),
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "qps": len(ms) / wall,
        "failed": failures,
        "server_cores": server_cpu / wall,
        # the phase's CPU over every request it sent, the failed ones too
        "server_ms": server_cpu * 1000 / (len(ms) + failures),
        "client_ms": client_cpu * 1000 / (len(ms) + failures),
        **extra,
    }


def run(coro: Any) -> Any:
    """Run one phase on uvloop (the servers' loop too) when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def phases(
    port: int, cold: list[list[str]], seconds: float, label: str, params: dict[str, str],
    server_pid: int | None = None, opened: tuple[tuple[float, list[str]], ...] = (),
) -> list[Row]:
    """Cold c=1 and c=8 on ``cold``'s two slices, then warm c=1 and c=8 cycling what they sent,
    then an open loop at each (rate, cold queries) of ``opened``; ``server_pid``: the server
    whose CPU each phase reports."""
    rows = []
    sent: list[str] = []
    for conc, queries in zip(CONCURRENCY, cold, strict=True):
        log.info("%s cold c=%d: %d queries", label, conc, len(queries))
        result = run(load(port, queries, conc, seconds, params, sent, server_pid=server_pid))
        rows.append((f"{label} cold c={conc}", result))
    for conc in CONCURRENCY:  # only queries this mode sent above: all in its result cache now
        log.info("%s warm c=%d: cycling %d queries", label, conc, len(sent))
        result = run(load(port, list(sent), conc, seconds, params, [], repeat=True,
                          server_pid=server_pid))
        rows.append((f"{label} warm c={conc}", result))
    for rate, queries in opened:  # after the closed loops, whose rows stay as they were
        log.info("%s open loop %g/s: up to %d queries", label, rate, len(queries))
        result = run(open_load(port, queries, rate, seconds, params, server_pid))
        rows.append((f"{label} open {rate:g}/s", result))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", required=True)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "homedepot"),
                        help="the queries' directory: canonical CSV or prepared (aisle prepare)")
    parser.add_argument("--seconds", type=float, default=20.0, help="cap per phase")
    parser.add_argument("--dense-only", action="store_true",
                        help="skip the aisle hybrid rows (dense and naive only)")
    parser.add_argument("--hybrid", action="store_true",
                        help="no-op, kept for old command lines: hybrid rows run by default")
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
    parser.add_argument(
        "--against", action="append", default=[], metavar="KEY=VALUE",
        help="also run every aisle phase against a second aisle serve with these ServeConfig "
        "overrides on top of --serve-option (rows 'against ...'; a fresh process, so its "
        "caches start empty), and print its p99 and CPU per request over aisle's, e.g. "
        "--against query_tower=transformer (repeatable)",
    )
    parser.add_argument(
        "--rerank", metavar="DIR",
        help="also run the hybrid phases against a second aisle serve that re-ranks with this "
        "cross-encoder (rows 'aisle hybrid+rerank'; a fresh process, so its caches start "
        "empty and hybrid's cold slices are cold to it)",
    )
    parser.add_argument(
        "--rate", action="append", type=float, default=[], metavar="R",
        help="also run, after each mode's closed-loop phases, an open loop of cold queries "
        "sent at R requests a second (Poisson arrivals; latency from each request's "
        "scheduled time; rows 'aisle MODE open R/s'); its queries are the train split's, "
        "none that a cold slice holds (repeatable)",
    )
    parser.add_argument("--rows-json", metavar="PATH",
                        help="also write the rows as JSON: phase -> {n, p50, p95, p99, qps, "
                        "failed}")
    args = parser.parse_args()
    if any(rate <= 0 for rate in args.rate):
        parser.error("--rate must be > 0 requests a second")
    if args.rerank and args.dense_only:
        parser.error("--rerank runs hybrid phases, which --dense-only skips: drop one")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per start-up request

    from aisle.data.dataset import load_dataset
    from aisle.retrieval.layout import resolve_index_dir
    from aisle.retrieval.store import read_index_manifest
    from aisle.serving.reloading import settle_heap
    from aisle.towers.model import resolve_model_ref

    q = load_dataset(Path(args.data)).queries
    queries = q.loc[q["split"].isin(["dev", "test"]), "query"].tolist()
    modes = MODES[:1] if args.dense_only else MODES
    # Always four slices, so the dense rows send the same queries with or without hybrid.
    slices = cold_slices(queries, len(MODES) * len(CONCURRENCY))
    cold = {m: slices[i * len(CONCURRENCY):(i + 1) * len(CONCURRENCY)] for i, m in enumerate(MODES)}
    sizes = [
        f"{m} c={c} {len(s)}" for m in MODES for c, s in zip(CONCURRENCY, cold[m], strict=True)
    ]
    log.info(
        "%d dev+test queries, %d distinct; cold slices: %s%s",
        len(queries),
        sum(map(len, slices)),
        ", ".join(sizes),
        " (hybrid's unused: --dense-only)" if args.dense_only else "",
    )
    opened = open_slices(q, slices, modes, args.rate)
    # The manifest, not the index: the load generator needs only the model and the version's
    # path, not the index's memory or its load time.
    index_root = resolve_index_dir(Path(args.index))
    model_dir = resolve_model_ref(read_index_manifest(index_root)["model"]["ref"])
    # An aisle model directory loads as a sentence-transformers Router (the naive server encodes
    # with its query route); one from before the Router layout keeps the query tower apart.
    for sub in ("shared", "query"):
        if (model_dir / "manifest.json").is_file() and (model_dir / sub).is_dir():
            model_dir = model_dir / sub
            break

    del q
    # What the load generator holds after start-up (the imports, the query slices) frozen out
    # of the collector, as the service does: a full collection during a phase is time the
    # generator sends late, which an open loop counts as the server's.
    settle_heap()
    results: list[Row] = []
    aisle_port = free_port()
    env = server_env()
    log.info("the aisle servers run the aisle package in %s", aisle_root())
    aisle = start(
        aisle_command("serve", "--index", args.index, "--port", str(aisle_port),
                      "watch_interval_s=0", *args.serve_option),
        aisle_port,
        env,
        warm=tuple({"mode": m} for m in modes),
    )
    try:
        for mode in modes:
            label = f"aisle {mode}"
            results += phases(aisle_port, cold[mode], args.seconds, label, {"mode": mode},
                              aisle.pid, opened[mode])
    finally:
        aisle.terminate()
        aisle.wait(timeout=30)
    if args.against:
        port = free_port()
        other = start(aisle_command("serve", "--index", args.index, "--port", str(port),
                                    "watch_interval_s=0", *args.serve_option, *args.against),
                      port, env, warm=tuple({"mode": m} for m in modes))
        try:
            for mode in modes:
                results += phases(port, cold[mode], args.seconds, f"against {mode}",
                                  {"mode": mode}, other.pid, opened[mode])
        finally:
            other.terminate()
            other.wait(timeout=30)
    if args.rerank:  # --dense-only is refused beside it
        port = free_port()
        reranking = start(
            aisle_command("serve", "--index", args.index, "--port", str(port), "--rerank",
                          args.rerank, "watch_interval_s=0", *args.serve_option),
            port, env, warm=({"mode": "hybrid"},),
        )
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/search",
                             params={"q": WARMUP_QUERY, "mode": "hybrid"}, timeout=30).json()
            log.info("re-ranking: the top %s of the first stage", body.get("reranked"))
            results += phases(port, cold["hybrid"], args.seconds, "aisle hybrid+rerank",
                              {"mode": "hybrid"}, reranking.pid)
            counts = {line.split()[0]: float(line.split()[1]) for line in httpx.get(
                f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines()
                if line.startswith(("aisle_reranked_total", "aisle_rerank_skipped_total"))}
            print(f"re-ranked queries {counts.get('aisle_reranked_total', 0):.0f}, past the "
                  f"budget (first-stage order) {counts.get('aisle_rerank_skipped_total', 0):.0f}")
        finally:
            reranking.terminate()
            reranking.wait(timeout=30)
    if not args.no_naive:
        naive_port = free_port()  # picked when it is used: minutes later it may be taken
        naive = start(
            [
                sys.executable,
                str(ROOT / "bench" / "naive_server.py"),
                "--index",
                str(args.naive_index or index_root),
                "--model",
                str(model_dir),
                "--port",
                str(naive_port),
            ],
            naive_port,
        )
        try:
            results += phases(naive_port, cold["dense"], args.seconds, "naive", {}, naive.pid)
        finally:
            naive.terminate()
            naive.wait(timeout=30)

    report(results)
    targets(results)
    if args.rows_json:
        write_rows(Path(args.rows_json), results)
    if args.against:
        against(results, " ".join(args.against))
    if args.no_naive:
        return
    by = dict(results)
    for phase in ("cold c=8", "warm c=8", "cold c=1", "warm c=1"):
        a, n = by[f"aisle dense {phase}"], by[f"naive {phase}"]
        print(
            f"ratio naive/aisle {phase}: p99 {n['p99'] / a['p99']:.2f}x, "
            f"QPS aisle/naive {a['qps'] / n['qps']:.2f}x"
        )


def open_slices(queries: Any, cold: list[list[str]], modes: tuple[str, ...],
                rates: list[float]) -> dict[str, tuple[tuple[float, list[str]], ...]]:
    """Per mode, (rate, cold queries) for each open loop: the train split's queries (the
    ``queries`` table's), none that a closed loop's ``cold`` slice holds as the service folds
    them, cut into one disjoint slice a (mode, rate)."""
    if not rates:
        return {m: () for m in modes}
    taken = {query_key(t) for s in cold for t in s}
    train = [t for t in queries.loc[queries["split"] == "train", "query"]
             if query_key(t) not in taken]
    slices = cold_slices(train, len(modes) * len(rates))
    log.info("open loops: %d train queries to send, %d a (mode, rate)",
             sum(map(len, slices)), min(map(len, slices)))
    return {m: tuple(zip(rates, slices[i * len(rates):(i + 1) * len(rates)], strict=True))
            for i, m in enumerate(modes)}


def report(results: list[Row]) -> None:
    cores = os.cpu_count() or 0
    print(
        f"{'phase':<24} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'QPS':>8} {'fail':>4}"
        f" {'srv cores':>9} {'srv CPU ms/req':>14} {'client ms/req':>13}"
    )
    for name, r in results:
        print(
            f"{name:<24} {r['n']:>5.0f} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f} "
            f"{r['qps']:>8.1f} {r['failed']:>4.0f} {r['server_cores']:>9.2f} "
            f"{r['server_ms']:>14.2f} {r['client_ms']:>13.2f}"
        )
    print(f"(srv cores: of the {cores} this machine has)")


def targets(results: list[Row]) -> None:
    """The service's latency targets, as this run measured them (aisle rows only)."""
    by = dict(results)
    hybrid_warm, hybrid_cold = by.get("aisle hybrid warm c=8"), by.get("aisle hybrid cold c=8")
    dense_warm = by.get("aisle dense warm c=8")
    if hybrid_warm is not None and hybrid_cold is not None:
        print(f"hybrid warm c=8 p99 {hybrid_warm['p99']:.2f} ms (target <= 5)")
        print(f"hybrid cold c=8 p99 {hybrid_cold['p99']:.2f} ms (target <= 20)")
        floor = cold_floor(hybrid_cold, CONCURRENCY[-1], os.cpu_count() or 0)
        if floor is not None:
            print(f"hybrid cold c=8 mean latency floor {floor:.2f} ms, mean 8 / QPS "
                  f"{CONCURRENCY[-1] * 1000 / hybrid_cold['qps']:.2f} ms (Little's law: the "
                  "clients' closed loop over the CPU a request; no arrangement of this work "
                  "on these cores goes under it)")
        if dense_warm is not None:
            ratio = hybrid_warm["p99"] / dense_warm["p99"]
            print(f"hybrid/dense warm c=8 p99 ratio {ratio:.2f} (target <= 1.5)")
    for name, r in results:
        if name.startswith("aisle ") and " open " in name:
            print(f"{name.removeprefix('aisle ')}: p99 {r['p99']:.2f} ms at {r['qps']:.1f} "
                  f"QPS (asked {r['rate']:g}); the load generator sent late by p99 "
                  f"{r['late_p99']:.2f} ms")
    failed = sum(r["failed"] for name, r in results if name.startswith("aisle "))
    print(f"failed requests: {failed:.0f}")


def cold_floor(row: dict[str, float], concurrency: int, cores: int) -> float | None:
    """The least mean latency ``concurrency`` closed-loop clients can see when each request
    costs the server and the client ``row``'s CPU ms on ``cores`` cores (Little's law: mean
    latency ~ concurrency / QPS, and QPS <= cores / CPU a request); None off Linux."""
    cpu = row["server_ms"] + row["client_ms"]
    if not cores or math.isnan(cpu):
        return None
    return concurrency * cpu / cores


def against(results: list[Row], options: str) -> None:
    """Each aisle phase's p99 and server CPU a request over the --against server's."""
    by = dict(results)
    for name, r in results:
        if not name.startswith("aisle "):
            continue
        other = by.get("against " + name.removeprefix("aisle "))
        if other is None:
            continue
        print(f"ratio aisle/against ({options}) {name.removeprefix('aisle ')}: p99 "
              f"{r['p99'] / other['p99']:.2f}x, server CPU ms/req "
              f"{r['server_ms'] / other['server_ms']:.2f}x")


def write_rows(path: Path, results: list[Row]) -> None:
    """``results`` as one JSON object, phase -> its numbers (NaN, an empty phase's, as null)."""
    rows = {
        name: {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for name, r in results
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    log.info("rows written to %s", path)


if __name__ == "__main__":
    main()
