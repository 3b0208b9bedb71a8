"""The service answers what ``aisle search`` prints: one query path for both, in every mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.cli import main
from aisle.serving.app import create_app
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine

# misspelt, full-width, mixed-case, extra whitespace
QUERIES = ["cordles drill", "ＣＯＲＤＬＥＳＳ  Drill", "Garden HOSE", "celing fan light",
           "ｗｈｉｔｅ paint  roler"]


def cli_search(index: Path, query: str, mode: str | None, k: int,
               capsys: pytest.CaptureFixture[str]) -> tuple[str, list[str]]:
    """``aisle search``'s header line and the product ids it prints, in order."""
    capsys.readouterr()
    args = ["search", "--index", str(index), "-k", str(k), *(["--mode", mode] if mode else [])]
    assert main([*args, query]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    return header, [row.split()[2] for row in rows]


@pytest.mark.parametrize("mode", [None, "dense", "lexical", "hybrid"])
def test_the_service_and_aisle_search_agree(
    serve_config: ServeConfig, engine: Engine, sample_index: Path, mode: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    k = 8
    with TestClient(create_app(serve_config, engine)) as client:
        for query in QUERIES:
            params = {"q": query, "k": str(k), **({"mode": mode} if mode else {})}
            # twice: the first answer is computed, the second comes from the warm lane
            bodies = [client.get("/search", params=params).json() for _ in range(2)]
            header, printed = cli_search(sample_index, query, mode, k, capsys)
            for body in bodies:
                served = [hit["product_id"] for hit in body["results"]]
                assert served == printed, (query, mode)
                assert body["mode"] == (mode or "hybrid")
                correction = body["corrected_query"]
                shown = f", showing results for {correction!r}" if correction else ""
                assert header == f"{body['mode']} search{shown}:", (query, mode)
