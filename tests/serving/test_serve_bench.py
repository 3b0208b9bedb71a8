"""bench/serve.py's open loop: requests sent on a schedule, whatever the server does, and each
latency counted from its scheduled time. Against a stub server that answers one request at a
time, an offered load above what it can serve must show as a growing wait (a closed loop's
latency would stay at the service time)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serve.py"
SERVICE_S = 0.02  # the stub's time a request, one at a time


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arrivals_are_a_seeded_poisson_schedule_within_the_phase(bench: ModuleType) -> None:
    times = bench.arrivals(10_000, 1000.0, 2.0)
    assert times == bench.arrivals(10_000, 1000.0, 2.0)  # seeded
    assert times == sorted(times) and times[0] > 0 and times[-1] <= 2.0
    assert abs(len(times) - 2000) < 4 * 2000**0.5  # Poisson: mean rate x seconds
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert abs(sum(gaps) / len(gaps) - 0.001) < 0.0002
    assert len(bench.arrivals(50, 1000.0, 2.0)) == 50  # no more than the queries
    with pytest.raises(ValueError, match="rate must be > 0"):
        bench.arrivals(10, 0.0, 1.0)


class SerialHandler(socketserver.StreamRequestHandler):
    """Answers each GET on its connection after SERVICE_S, one request at a time across all
    connections (one core's worth of service)."""

    turn = threading.Lock()

    def handle(self) -> None:
        while self.answer():
            pass

    def answer(self) -> bool:
        """One request read and answered; False when the client has closed."""
        if not self.rfile.readline():
            return False
        while self.rfile.readline() not in (b"\r\n", b""):
            pass  # the headers
        with self.turn:
            time.sleep(SERVICE_S)
        body = b'{"results": []}'
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(body), body))
        return True


class ClosingHandler(SerialHandler):
    """Closes each connection after answering two requests on it, as a server does to a
    keep-alive connection idle past its timeout."""

    def handle(self) -> None:
        for _ in range(2):
            if not self.answer():
                return


@contextlib.contextmanager
def serving(handler: type[socketserver.StreamRequestHandler]) -> Iterator[int]:
    """A stub HTTP/1.1 server on its own threads (not the load generator's loop): its port."""

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        request_queue_size = 128  # the open loop opens its 64 connections at once

    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def serial_port() -> Iterator[int]:
    with serving(SerialHandler) as port:
        yield port


def test_a_connection_the_server_closes_is_replaced_and_its_request_sent_again(
    bench: ModuleType,
) -> None:
    async def scenario() -> dict[str, float]:
        with serving(ClosingHandler) as port:
            return await bench.open_load(port, [f"q{i}" for i in range(60)], 50.0, 1.0, {},
                                         connections=2)

    row = asyncio.run(scenario())
    assert row["failed"] == 0 and row["n"] == row["scheduled"] > 30


def test_an_open_loop_counts_the_wait_a_closed_loop_leaves_out(bench: ModuleType,
                                                              serial_port: int) -> None:
    queries = [f"q{i}" for i in range(400)]

    async def scenario() -> list[dict[str, float]]:
        port = serial_port
        closed = await bench.load(port, queries[:40], 1, 5.0, {}, [])
        light = await bench.open_load(port, queries[:100], 5.0, 2.0, {})
        # twice what the stub can serve (1 / SERVICE_S = 50 a second), for one second; then
        # again through one connection: the wait for it counts too
        heavy = await bench.open_load(port, queries[100:250], 100.0, 1.0, {})
        one = await bench.open_load(port, queries[250:], 100.0, 1.0, {}, connections=1)
        return [closed, light, heavy, one]

    closed, light, heavy, one = asyncio.run(scenario())
    assert all(row["failed"] == 0 for row in (closed, light, heavy, one))
    assert closed["p50"] < 5 * SERVICE_S * 1000  # one client: about the service time
    assert light["p50"] < 5 * SERVICE_S * 1000  # well under capacity: the same
    assert light["rate"] == 5.0 and light["late_p99"] < 100
    # Over capacity the queue grows through the phase: the median request waits behind
    # tens of others (about half a second here), and the answers come at the stub's rate.
    for row in (heavy, one):
        assert row["p50"] > 10 * SERVICE_S * 1000
        assert row["qps"] < 1.2 / SERVICE_S
        assert row["n"] >= 60  # about 100 sent, every one answered


def test_the_servers_run_the_aisle_the_bench_imported_not_the_working_directorys(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``python -m aisle.cli`` would import a checkout in the working directory first, so a
    comparison against another checkout on ``PYTHONPATH`` would measure one service twice."""
    (tmp_path / "aisle").mkdir()
    (tmp_path / "aisle" / "__init__.py").write_text("")
    (tmp_path / "aisle" / "cli.py").write_text("def main():\n    print('the wrong aisle')\n")
    monkeypatch.chdir(tmp_path)
    out = subprocess.run(bench.aisle_command("--help"), capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert "the wrong aisle" not in out and "usage: aisle" in out
    assert bench.aisle_root() == BENCH.parents[1]


@pytest.mark.slow
def test_the_bench_runs_end_to_end_against_real_servers(
    sample_index: Path, sample_data: Path, tmp_path: Path,
) -> None:
    """bench/serve.py as it is run, short phases, on a versioned index root: aisle serve in
    each mode, closed and open loops, the naive server over the root's current version, every
    row written, and no request failed."""
    import json
    import shutil
    import sys

    from aisle.retrieval.layout import CURRENT

    # A versioned root, as `aisle index` publishes: the naive server gets its current version.
    root = tmp_path / "index"
    shutil.copytree(sample_index, root / "versions" / "v1")
    (root / CURRENT).write_text("v1\n")
    rows_file = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--index", str(root), "--data", str(sample_data),
         "--seconds", "0.5", "--rate", "40", "--rows-json", str(rows_file)],
        capture_output=True, text=True, timeout=600, cwd=BENCH.parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(rows_file.read_text())
    phases = [f"{m} {p}" for m in ("aisle dense", "aisle hybrid")
              for p in ("cold c=1", "cold c=8", "warm c=1", "warm c=8", "open 40/s")]
    phases += [f"naive {p}" for p in ("cold c=1", "cold c=8", "warm c=1", "warm c=8")]
    assert sorted(rows) == sorted(phases)
    for name, row in rows.items():
        assert row["failed"] == 0, name
        assert row["n"] > 0, name
    for mode in ("dense", "hybrid"):  # every request an open loop scheduled was answered
        assert rows[f"aisle {mode} open 40/s"]["n"] == rows[f"aisle {mode} open 40/s"]["scheduled"]
    assert "ratio naive/aisle cold c=8" in done.stdout
