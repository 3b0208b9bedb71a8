"""The console command, run as a user would (in-process through ``main``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.cli import build_parser, main


def test_every_subcommand_help_shows_a_real_invocation(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        help_text = p.format_help()
        assert "example:" in help_text or name == "import", name


def test_prepare_then_search(
    sample_data: Path, sample_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prepare", "--data", str(sample_data), "--out", str(tmp_path / "prep")]) == 0
    assert (tmp_path / "prep" / "manifest.json").is_file()
    capsys.readouterr()
    assert main(["search", "--index", str(sample_index), "cordless", "drill", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "hybrid search:"  # the default wherever the index carries BM25
    lines = [ln for ln in out if ln.strip()[:1].isdigit()]
    assert len(lines) == 3 and all("drill" in ln for ln in lines)
    # A misspelt query is corrected (and says so), unless told not to be.
    assert main(["search", "--index", str(sample_index), "cordles", "drill", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "hybrid search, showing results for 'cordless drill':"
    assert out[-3:] == lines
    search = ["search", "--index", str(sample_index), "-k", "3", "--mode", "dense"]
    assert main([*search, "cordles", "drill"]) == 0
    dense = capsys.readouterr().out.splitlines()
    assert dense[0] == "dense search, showing results for 'cordless drill':"
    assert main([*search, "--no-query-spelling", "cordles", "drill"]) == 0
    as_typed = capsys.readouterr().out.splitlines()
    assert as_typed[0] == "dense search:" and as_typed[-3:] != dense[-3:]


def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sample_index: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "products.csv").write_text("product_id,title\n1,a\n")
    assert main(["prepare", "--data", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "missing column(s) ['description', 'brand', 'category']" in caplog.text
    assert not (tmp_path / "out").exists()
    assert main(["search", "--index", str(sample_index), "  "]) == 2
    assert "query is empty" in caplog.text
    assert main(["search", "--index", str(sample_index), "!!!"]) == 2  # as the service: 422
    assert "query has no letters or digits" in caplog.text
    assert main(["search", "--index", str(sample_index), "-k", "0", "drill"]) == 2
    assert "-k is 0; ask for at least 1 product" in caplog.text
    assert main(["search", "--index", str(tmp_path), "drill"]) == 2
    assert "manifest.json is missing" in caplog.text
    assert main(["search", "--index", str(sample_index), "--filter", "colour=red", "drill"]) == 2
    assert "unknown field 'colour': this index has brand, category, in_stock, price" in caplog.text
    assert main(["search", "--index", str(sample_index), "--filter", "price<=x", "drill"]) == 2
    assert "price is a number field" in caplog.text
    assert main(["search", "--index", str(sample_index), "--fields", "colour", "drill"]) == 2


def test_search_filters_and_prints_fields(
    sample_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "--index", str(sample_index), "-k", "5", "--filter", "price<=20",
                 "--filter", "in_stock=true", "--fields", "price,in_stock", "drill"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "hybrid search where price<=20 and in_stock=true:"
    lines = [ln for ln in out if ln.strip()[:1].isdigit()]
    assert len(lines) == 5
    for line in lines:
        price = float(line.split("price=")[1].split()[0])
        assert price <= 20 and line.endswith("in_stock=True")


def test_help_and_import_load_no_model_or_index_libraries() -> None:
    """``aisle --help``, every ``aisle <command> --help`` and ``import aisle`` stay light:
    torch, faiss and sentence-transformers load only when a command runs."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import aisle\n"
        "aisle.open_index, aisle.SearchIndex\n"
        "from aisle.cli import build_parser\n"
        "parser = build_parser()\n"
        "sub = next(a for a in parser._actions if a.dest == 'command')\n"
        "for p in sub.choices.values():\n"
        "    p.format_help()\n"
        "heavy = {'torch', 'faiss', 'sentence_transformers', 'transformers', 'bm25s'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_contradicting_or_unreadable_inputs_exit_2_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sample_index: Path, sample_data: Path
) -> None:
    data = ["--data", str(sample_data), "--split", "test"]
    cases = [
        (["evaluate", *data, "--baseline", "bm25", "--mode", "dense"],
         "--baseline bm25 is its own retriever: drop --mode"),
        (["evaluate", *data, "--index", str(sample_index), "--weight", "0.5", "--rrf-k", "10"],
         "--weight sets convex fusion and --rrf-k sets RRF"),
        (["evaluate", *data, "--index", str(sample_index), "--fusion", "rrf", "--weight", "0.5"],
         "--weight sets convex fusion and --rrf-k sets RRF"),
        (["evaluate", *data, "--index", str(sample_index), "--weight", "1.5"],
         "--weight must be in [0, 1] (the dense share), got 1.5"),
        (["evaluate", *data, "--index", str(sample_index), "--rrf-k", "-1"],
         "--rrf-k must be a finite number > 0, got -1.0"),
        (["train", "--data", str(sample_data), "--out", str(tmp_path / "m"),
          "--config", str(tmp_path)], "cannot be read"),
        (["compare", *data, str(tmp_path)], "cannot be read"),
        (["report", *data, "--out", str(tmp_path / "r.html"), "--resamples", "0",
          str(tmp_path / "run.trec")], "--resamples must be from 100 to 1,000,000, got 0"),
        (["qrels", *data, "--out", str(tmp_path)], "is a directory"),
        (["serve", "--index", str(tmp_path / "typo")], "manifest.json is missing"),
        # A tag with no run file to write it in would be ignored.
        (["evaluate", *data, "--baseline", "bm25", "--run-tag", "mine"],
         "--run-tag names the run file's tag: pass --run-out FILE too"),
        # Re-ranking settings without a cross-encoder would be ignored.
        (["search", "--index", str(sample_index), "--rerank-backend", "torch", "drill"],
         "--rerank-backend needs --rerank DIR"),
        (["evaluate", *data, "--index", str(sample_index), "--rerank-weight", "0.3"],
         "--rerank-weight needs --rerank DIR"),
    ]
    for argv, message in cases:
        caplog.clear()
        assert main(argv) == 2, argv
        assert message in caplog.text, (argv, caplog.text)


def test_an_output_over_an_input_or_a_number_past_its_range_exits_2_before_any_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sample_index: Path, sample_data: Path
) -> None:
    """Found by a review of the CLI: each of these wrote over what the command read,
    published an index no search could read, served on another port, hung every search, or
    ended in a traceback."""
    import shutil

    data = shutil.copytree(sample_data, tmp_path / "data")
    judgments = (data / "judgments.csv").read_bytes()
    run = tmp_path / "bm25.trec"
    assert main(["evaluate", "--data", str(data), "--split", "test", "--baseline", "bm25",
                 "--run-out", str(run)]) == 0
    written = run.read_bytes()
    split = ["--data", str(data), "--split", "test"]
    cases = [
        (["qrels", *split, "--out", str(data / "judgments.csv")],
         f"--out {data / 'judgments.csv'} would write into {data}"),
        (["report", *split, str(run), "--out", str(run)], f"--out {run} would overwrite {run}"),
        (["evaluate", *split, "--baseline", "bm25", "--run-out", str(data / "x.trec")],
         "--run-out"),
        (["compare", *split, str(run), "--seed", "-1"], "--seed must be 0 or more, got -1"),
        (["compare", *split, str(run), "--resamples", str(10**11)],
         "--resamples must be from 100 to 1,000,000"),
        (["index", "build", "--data", str(data), "--out", str(tmp_path / "idx"), "bm25_k1=inf"],
         "bm25_k1 must be > 0 and finite, got inf"),
        (["serve", "--index", str(sample_index), "--model", str(tmp_path / "typo")],
         f"--model {tmp_path / 'typo'}: no such directory"),
        (["serve", "--index", str(sample_index), "--port", "70000"],
         "port must be at most 65535, got 70000"),
        (["serve", "--index", str(sample_index), "batch_wait_ms=inf"],
         "batch_wait_ms must be finite, got inf"),
        (["index", "list", "--out", str(tmp_path / "typo")], "is not an index root"),
        (["index", "prune", "--out", str(sample_index), "--keep", "1"],
         "is a plain index directory, not a versioned root"),
        (["search", "--index", str(sample_index), "--filter", "price=10..5", "drill"],
         "the range 10..5 runs backwards; write it low..high (5..10)"),
    ]
    for argv, message in cases:
        caplog.clear()
        assert main(argv) == 2, argv
        assert message in caplog.text, (argv, caplog.text)
    assert (data / "judgments.csv").read_bytes() == judgments and run.read_bytes() == written
    assert not (data / "x.trec").exists() and not (tmp_path / "idx").exists()
    assert not list(sample_index.glob(".*.lock"))
    for argv in (["cache", "warm", "--index", str(sample_index), "--queries", str(run),
                  "--batch", "0"],
                 ["cache", "warm", "--index", str(sample_index), "--queries", str(run),
                  "--top", "-5"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2


@pytest.mark.parametrize("buffering", [1, -1], ids=["line", "block"])
def test_a_reader_that_stops_early_ends_the_command_quietly(
    buffering: int, sample_index: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    """`aisle search ... | head -2` ended with "ERROR aisle: [Errno 32] Broken pipe" and exit
    2, which fails a `set -o pipefail` script; now it exits as a tool killed by SIGPIPE
    does (141), without a word. A block-buffered stdout (a pipe's) fails only when it is
    flushed, which was at exit, past the handler."""
    import contextlib
    import os
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone
    stdout = open(write, "w", buffering=buffering)  # noqa: SIM115 (closed below)
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["search", "--index", str(sample_index), "-k", "20", "drill"]) == 141
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            stdout.close()
    assert "Broken pipe" not in caplog.text


def test_a_weight_names_convex_fusion_over_an_index_tuned_to_rrf(
    tmp_path: Path, sample_index: Path, sample_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    rrf = shutil.copytree(sample_index, tmp_path / "rrf")
    manifest = json.loads((rrf / "manifest.json").read_text())
    manifest["fusion"]["method"] = "rrf"
    (rrf / "manifest.json").write_text(json.dumps(manifest))
    got = []
    for weight in ("0.0", "1.0"):
        assert main(["evaluate", "--data", str(sample_data), "--split", "test",
                     "--index", str(rrf), "--weight", weight]) == 0
        got.append(json.loads(capsys.readouterr().out)["metrics"]["ndcg@10"])
    assert got[0] != got[1]  # the weight is used, not RRF's ranks


def test_an_output_path_that_cannot_be_written_is_a_message_not_a_traceback(
    tmp_path: Path, sample_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file where a folder must be (or no permission, a full disk): exit 2 saying which
    path, as for any other bad input, rather than an OSError's traceback."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        ["prepare", "--data", str(sample_data), "--out", str(a_file / "prep")],
        ["evaluate", "--data", str(sample_data), "--split", "test", "--baseline", "bm25",
         "--run-out", str(a_file / "bm25.trec")],
    ]
    for argv in cases:
        caplog.clear()
        assert main(argv) == 2, argv
        assert str(a_file) in caplog.text and "Traceback" not in caplog.text, caplog.text
    assert a_file.is_file() and a_file.read_text() == ""
