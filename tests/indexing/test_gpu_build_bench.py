"""bench/gpu_build.py's CPU-fallback path: on a tiny set it runs and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faiss
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu_build.py"


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="checks the no-GPU path")
def test_without_a_gpu_the_bench_says_so_and_times_the_cpu_builds() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--n", "2000", "--queries", "20", "--kinds", "hnsw,ivf_flat"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    assert "no GPU" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("kind"))
    assert lines[header].split() == ["kind", "device", "build_s", "speedup", "recall@10",
                                     "vs_cpu@10"]
    rows = [line.split() for line in lines[header + 1:]]
    assert [r[:2] for r in rows] == [["hnsw", "cpu"], ["hnsw", "gpu"], ["ivf_flat", "cpu"],
                                     ["ivf_flat", "gpu"]]
    for cpu in (rows[0], rows[2]):
        assert float(cpu[2]) >= 0 and 0.5 <= float(cpu[3]) <= 1.0  # build s, recall@10
    assert rows[1][2:] == ["-", "-", "-", "no", "GPU"]
