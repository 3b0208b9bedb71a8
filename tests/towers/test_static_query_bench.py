"""bench/static_query.py runs end to end on the sample index, printing both tables (a row per
seed) and the encoding costs. The tower itself is tested in tests/training/test_static.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_bench_scores_both_modes_per_seed_and_times_both_towers(
    sample_data: Path, sample_index: Path, tmp_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "static_query.py"), "--data", str(sample_data), "--index",
         str(sample_index), "--seeds", "13,14", "--epochs", "1", "--titles", "40",
         "--timed", "10"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    scored = {r[0].strip(): [float(v) for v in r[1:5]] for r in rows if ":" in r[0]}
    assert list(scored) == [
        "hybrid: the query tower (torch)", "hybrid: static query tower, seed 13",
        "hybrid: static query tower, seed 14", "dense: the query tower (torch)",
        "dense: static query tower, seed 13", "dense: static query tower, seed 14"]
    for name, (ndcg, condensed, judged, recall) in scored.items():
        assert 0 < ndcg <= 1 and 0 < condensed <= 1 and 0 < judged <= 1 and 0 < recall <= 1, name
    costs = {r[0].strip(): float(r[1]) for r in rows
             if r[0].strip().startswith(("query", "static"))}
    assert set(costs) == {"query tower (torch)", "static (numpy)"}
    assert all(ms > 0 for ms in costs.values())
