"""bench/static_query.py: its student's folded numpy form is the trained module, and the bench
runs end to end on the sample index, printing both tables and the encoding costs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from aisle.towers.layout import load_towers
from aisle.towers.model import base_model_path, directory_pooling

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench_module():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        import static_query

        yield static_query
    finally:
        sys.path.remove(str(BENCH))


def test_the_folded_table_encodes_as_the_trained_module(bench_module) -> None:  # type: ignore[no-untyped-def]
    path = base_model_path()
    query_st, _ = load_towers(path, directory_pooling(path), "cpu")
    tokenizer = Tokenizer.from_str(query_st.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    torch.manual_seed(0)
    table = torch.randn(tokenizer.get_vocab_size(), 8)
    student = bench_module.StaticStudent(tokenizer, table, 8)
    with torch.no_grad():  # a map that is not the identity, so that folding it matters
        student.lin.weight.copy_(torch.randn(8, 8))
        student.lin.bias.copy_(torch.randn(8))
    texts = ["cordless drill", "3/4 in. pvc elbow", "", "zzqx"]  # "" reads as [UNK]
    with torch.no_grad():
        trained = student(texts).numpy()
    folded = student.folded()(texts)
    np.testing.assert_allclose(folded, trained, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(folded, axis=1), 1.0, atol=1e-5)


def test_a_saved_static_tower_encodes_in_plain_sentence_transformers_as_folded(
    bench_module, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    from sentence_transformers import SentenceTransformer

    path = base_model_path()
    query_st, _ = load_towers(path, directory_pooling(path), "cpu")
    tokenizer = Tokenizer.from_str(query_st.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    torch.manual_seed(1)
    student = bench_module.StaticStudent(tokenizer, torch.randn(tokenizer.get_vocab_size(), 8), 8)
    with torch.no_grad():
        student.lin.weight.copy_(torch.randn(8, 8))
    out = bench_module.save_student(student, tmp_path / "static")
    texts = ["cordless drill", "3/4 in. pvc elbow", "DeWALT 20V MAX", "zzqx"]
    plain = SentenceTransformer(str(out), device="cpu").encode(texts)
    np.testing.assert_allclose(plain, student.folded()(texts), atol=1e-5)


def test_the_bench_scores_both_modes_per_seed_and_times_both_towers(
    sample_data: Path, sample_index: Path, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    saved = tmp_path / "static"
    out = subprocess.run(
        [sys.executable, str(BENCH / "static_query.py"), "--data", str(sample_data), "--index",
         str(sample_index), "--seeds", "13,14", "--epochs", "1", "--titles", "40",
         "--timed", "10", "--out", str(saved)],
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
    # The first seed's tower, loadable where sentence-transformers is: the base model's width.
    loaded = SentenceTransformer(str(saved), device="cpu")
    assert loaded.encode(["cordless drill"]).shape == (1, 384)
