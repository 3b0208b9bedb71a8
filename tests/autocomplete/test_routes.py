"""GET /autocomplete through FastAPI's TestClient, with the same input rules as /search."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.errors import ArtifactError
from aisle.serving.app import create_app
from aisle.serving.config import ServeConfig


@pytest.fixture(scope="module")
def client(ac_index: Path) -> TestClient:
    # No lifespan (no `with`): /autocomplete needs neither the search engine nor a model.
    return TestClient(create_app(ServeConfig(autocomplete=str(ac_index), watch_interval_s=0)))


def test_suggestions(client: TestClient) -> None:
    r = client.get("/autocomplete", params={"prefix": "moen dhow", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"prefix", "suggestions", "version", "took_ms"}
    assert 1 <= len(body["suggestions"]) <= 5 and body["version"]
    assert any(s["text"].lower().startswith("moen shower") for s in body["suggestions"])
    assert set(body["suggestions"][0]) == {"text", "popularity", "source", "edits"}
    # k defaults to 10: the same list as k=10 asked for, cut at 10 where more would match
    # (the real log has dozens of "g" queries; the generated fallback has 9).
    default = client.get("/autocomplete", params={"prefix": "g"}).json()["suggestions"]
    ten = client.get("/autocomplete", params={"prefix": "g", "k": 10}).json()["suggestions"]
    more = client.get("/autocomplete", params={"prefix": "g", "k": 50}).json()["suggestions"]
    assert default == ten == more[:10] and len(default) == min(10, len(more)) >= 9


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"prefix": ""}, "prefix is empty"),
        ({"prefix": "  \t "}, "prefix is empty"),
        ({"prefix": "x" * 513}, "at most 512"),
        ({"prefix": "moen", "k": 0}, "between 1 and 50"),
        ({"prefix": "moen", "k": 51}, "between 1 and 50"),
        ({"prefix": "moen", "k": "ten"}, "malformed request"),
        ({}, "malformed request"),
        # A typo is refused, as /search refuses one, rather than answered as if absent.
        ({"prefix": "moen", "limit": 3}, "unknown query parameter 'limit'; GET /autocomplete "
                                         "takes prefix, k"),
    ],
)
def test_bad_input(client: TestClient, params: dict, message: str) -> None:
    r = client.get("/autocomplete", params=params)
    assert r.status_code == 422 and message in r.json()["detail"], r.text


@pytest.mark.parametrize("raw", [" 5 ", "5 ", "5.0", "5.", "1_000", "0x5", "\u0665", ""])
def test_k_is_nothing_but_an_integer_as_the_openapi_document_declares(
    client: TestClient, raw: str
) -> None:
    """FastAPI (pydantic, lax) took " 5 ", "5.0" and "1_000"; k is refused as GET /search
    refuses it (aisle/serving/params.py)."""
    r = client.get("/autocomplete", params={"prefix": "moen", "k": raw})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == ("malformed request: k: must be a whole number, digits only "
                                  f"(such as 10), got {raw!r}")
    assert r.json()["field"] == "k"
    assert client.get("/autocomplete", params={"prefix": "moen", "k": "05"}).status_code == 200
    over = client.get("/autocomplete", params={"prefix": "moen", "k": "9" * 40})
    assert over.status_code == 422 and over.json()["detail"] == (
        "malformed request: k: must be a whole number from 1 to autocomplete_max_k, got a "
        "40-digit number")


@pytest.mark.parametrize("prefix", ["ü ñ 漢字", "🔨🔨 gla", "\x00\x07 odd \ufffd", "'; DROP"])
def test_unicode_emoji_and_odd_bytes_are_answered(client: TestClient, prefix: str) -> None:
    r = client.get("/autocomplete", params={"prefix": prefix})
    assert r.status_code == 200 and isinstance(r.json()["suggestions"], list)


def test_no_artifact_is_404_and_a_broken_one_refuses_to_start(tmp_path: Path) -> None:
    r = TestClient(create_app(ServeConfig(watch_interval_s=0))).get(
        "/autocomplete", params={"prefix": "moen"})
    assert r.status_code == 404 and "aisle autocomplete build" in r.json()["detail"]
    with pytest.raises(ArtifactError, match="no such autocomplete index"):
        create_app(ServeConfig(autocomplete=str(tmp_path / "nope")))
