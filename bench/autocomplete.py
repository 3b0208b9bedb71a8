"""Autocomplete lookup latency at k=10: the homedepot query log and the instacart catalog.

    nice -n 15 .venv/bin/python bench/autocomplete.py            # builds missing artifacts

Artifacts are cached under runs/ (built with the base model on first use: a few minutes).
Prefixes: the first L characters (L uniform in 1..--max-chars) of real homedepot queries; the
instacart data has no query log, so its prefixes come from its product titles. Each lookup is
timed alone, after a warm-up: wall time (time.perf_counter) and this thread's CPU time
(time.thread_time), which leaves out the time the OS ran other processes instead: on a
shared, loaded machine the wall p99 is one scheduler time slice, whatever the lookup costs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from aisle.autocomplete.build import build_autocomplete
from aisle.autocomplete.lookup import Autocomplete
from aisle.data.dataset import Dataset, load_dataset

BUCKETS = [(1, 3), (4, 7), (8, 99)]


def artifact(ds: Dataset, out: Path) -> Autocomplete:
    """The artifact of ``ds`` at ``out``, built again when the one there is of other data
    (another --homedepot or --instacart, or the data prepared anew)."""
    manifest = out / "manifest.json"
    made_of = json.loads(manifest.read_text())["data"] if manifest.is_file() else {}
    if (made_of.get("products"), made_of.get("queries")) != (
            ds.fingerprint("products"), ds.fingerprint("queries")):
        from aisle.towers.model import load_model

        build_autocomplete(ds, load_model(None), out)
    return Autocomplete.load(out)


def prefixes(texts: list[str], n: int, max_chars: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    picked = [texts[i] for i in rng.integers(len(texts), size=n)]
    return [t[: int(rng.integers(1, min(max_chars, len(t)) + 1))] for t in picked]


def measure(ac: Autocomplete, typed: list[str], k: int) -> dict[str, np.ndarray]:
    for p in typed[:200]:
        ac.suggest(p, k)
    wall, cpu, got = (np.empty(len(typed)) for _ in range(3))
    for i, p in enumerate(typed):
        t, c = time.perf_counter(), time.thread_time()
        found = ac.suggest(p, k)
        cpu[i] = (time.thread_time() - c) * 1000
        wall[i] = (time.perf_counter() - t) * 1000
        got[i] = len(found)
    return {"wall": wall, "cpu": cpu, "got": got}


def row(name: str, m: dict[str, np.ndarray], part: np.ndarray) -> str:
    wall, cpu = m["wall"][part], m["cpu"][part]
    w50, w99 = np.percentile(wall, [50, 99])
    c50, c99 = np.percentile(cpu, [50, 99])
    return (f"| {name} | {len(wall)} | {w50:.3f} | {w99:.3f} | {c50:.3f} | {c99:.3f} "
            f"| {cpu.max():.2f} | {m['got'][part].mean():.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--homedepot", type=Path, default=Path("../shared/data/homedepot"))
    parser.add_argument("--instacart", type=Path, default=Path("../shared/data/instacart"))
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("-n", type=int, default=5000, help="lookups per data set")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--max-chars", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    hd, instacart = load_dataset(args.homedepot), load_dataset(args.instacart)
    sets = [
        ("homedepot log+catalog", artifact(hd, args.runs / "hd-ac"),
         hd.queries["query"].tolist()),
        ("instacart catalog", artifact(instacart, args.runs / "instacart-ac"),
         instacart.products["title"].tolist()),
    ]
    print(f"\nk={args.k}, prefixes of 1..{args.max_chars} characters, one lookup at a time\n")
    print("| data (suggestions) / prefix chars | lookups | wall p50 ms | wall p99 ms "
          "| CPU p50 ms | CPU p99 ms | CPU max ms | mean returned |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, ac, texts in sets:
        typed = prefixes(texts, args.n, args.max_chars, args.seed)
        m = measure(ac, typed, args.k)
        lengths = np.array([len(p) for p in typed])
        print(row(f"{name} ({len(ac.texts)}) / all", m, lengths > 0))
        for lo, hi in BUCKETS:
            label = f"{lo}-{hi}" if hi < 99 else f"{lo}+"
            part = (lengths >= lo) & (lengths <= hi)
            if part.any():  # none under a small --max-chars
                print(row(f"{name} / {label}", m, part))


if __name__ == "__main__":
    main()
