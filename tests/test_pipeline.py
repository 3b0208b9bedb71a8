from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisle.cli import main


@pytest.mark.slow
def test_main_job_end_to_end_on_the_sample(
    sample_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--data", str(sample_data), "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    for row in ("BM25", "base model (untuned)", "short cascade (this run)",
                "hybrid: short cascade + BM25", "hybrid + short cross-encoder",
                "short cascade, distilled"):
        assert f"| {row}" in out
    # the hybrid row fuses with the weight tune-fusion picked on dev and stored in the index
    manifest = json.loads((tmp_path / "demo" / "index" / "manifest.json").read_text())
    assert manifest["fusion_tuning"]["split"] == "dev"
    assert "search 'cordless drill' (hybrid):" in out  # the default mode, as aisle search
    for artifact in ("data", "index-base", "model", "index", "reranker", "model-distilled",
                     "index-distilled"):
        assert (tmp_path / "demo" / artifact / "manifest.json").is_file(), artifact
    # The distilled model's step 2 was taught by the demo's cross-encoder over the demo's
    # index's candidates, and the row says which step the cascade published.
    distilled = json.loads((tmp_path / "demo" / "model-distilled" / "manifest.json").read_text())
    step2 = distilled["train_config"]["step2"]
    assert step2["distill_teacher"] == str((tmp_path / "demo" / "reranker").resolve())
    assert step2["distill_index"] == str((tmp_path / "demo" / "index").resolve())
    assert distilled["steps"]["step2"]["train"]["teacher_lists_seen"] > 0
    work = tmp_path / "demo" / "model.work"  # step 1 trained once, shared by both cascades
    assert len(list(work.glob("step1-*.done"))) == 1
    assert len(list(work.glob("step2-*.done"))) == 2
    assert f"the cascade published {distilled['selected_step']}, its best on dev" in out
    # Each row's run as a TREC file, and the report of them all, which the demo points to.
    runs = sorted(p.name for p in (tmp_path / "demo" / "runs").iterdir())
    assert runs == ["base.trec", "bm25.trec", "cascade.trec", "distilled.trec", "hybrid.trec",
                    "rerank.trec"]
    # The re-ranked run is the hybrid run with its head re-ordered: the same queries.
    queries = [{line.split()[0] for line in (tmp_path / "demo" / "runs" / name).read_text()
                .splitlines()} for name in ("hybrid.trec", "rerank.trec")]
    assert queries[0] == queries[1]
    report = tmp_path / "demo" / "report.html"
    assert f"report of these runs, with intervals and plots: {report}" in out
    assert "then open http://127.0.0.1:8000/" in out
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3 and "cascade" in page


def test_a_bad_train_config_is_refused_before_any_stage_runs(
    sample_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cascade's config is read first: a typo in its path or a key must not cost the BM25
    row, the base model's index and its evaluation (18 minutes of embedding on homedepot)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[step1]\nepoch = 2\n")
    out = tmp_path / "demo"
    for config, message in ((tmp_path / "missing.toml", "does not exist"),
                            (bad, "unknown config key(s) ['step1.epoch']")):
        caplog.clear()
        assert main(["demo", "--data", str(sample_data), "--out", str(out),
                     "--train-config", str(config)]) == 2
        assert message in caplog.text
        assert not out.exists()
    # Given with --no-train, it would be ignored: refused, saying so.
    caplog.clear()
    assert main(["demo", "--data", str(sample_data), "--out", str(out), "--no-train",
                 "--train-config", str(bad)]) == 2
    assert "--no-train skips training" in caplog.text
    assert not out.exists()
