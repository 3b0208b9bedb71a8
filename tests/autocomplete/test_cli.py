from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisle.cli import main
from tests.autocomplete.conftest import generated_dataset


def test_suggest_prints_ranked_suggestions(ac_index: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autocomplete", "suggest", "--index", str(ac_index), "-k", "3", "moen",
                 "dhow"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert 1 <= len(lines) <= 3 and lines[0].split()[0] == "1"
    assert any("moen shower" in line.lower() and "(1 edit)" in line for line in lines)
    assert main(["autocomplete", "suggest", "--index", str(ac_index), " "]) == 2
    assert main(["autocomplete", "suggest", "--index", str(ac_index.parent / "x"), "a"]) == 2


def test_build_from_a_csv_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = generated_dataset()
    data = tmp_path / "data"
    data.mkdir()
    for name in ("products", "queries", "judgments"):
        getattr(ds, name).to_csv(data / f"{name}.csv", index=False)
    out = tmp_path / "ac"
    assert main(["autocomplete", "build", "--data", str(data), "--out", str(out),
                 "max_catalog=20", "threshold=0.9"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["threshold"] == 0.9 and summary["threshold_source"] == "config"
    # "moen dhower faucet" is shown as "moen shower faucet", the "pice" query not at all.
    log = len(ds.queries) - 2
    assert summary["counts"] == {"log": log, "catalog": 20, "total": log + 20}
    assert summary["cleaning"]["counts"] == {"queries": len(ds.queries), "corrected": 2,
                                             "dropped": 1, "suggestions": log}
    assert summary["popularity_source"] == "judged_products"
    assert main(["autocomplete", "build", "--data", str(data), "--out", str(out),
                 "no_such_key=1"]) == 2
