"""Every error response has one shape: RFC 9457 problem details, with the field at fault."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aisle.serving.app import create_app
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine, Plan
from aisle.serving.routes import search


@pytest.fixture
def client(serve_config: ServeConfig, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(serve_config, engine)) as c:
        yield c


def problem(r: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body == {"type": "about:blank", "title": HTTPStatus(status).phrase,
                    "status": status, "detail": body["detail"], "field": field}
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "field"), [
    ("GET", "/search", {"params": {"q": ""}}, 422, "q"),
    ("GET", "/search", {"params": {"q": "drill", "k": 0}}, 422, "k"),
    ("GET", "/search", {"params": {"q": "drill", "k": "ten"}}, 422, "k"),
    ("GET", "/search", {"params": {"q": "drill", "mode": "fuzzy"}}, 422, "mode"),
    ("GET", "/search", {"params": {"q": "drill", "partiton": "s"}}, 422, "partiton"),
    ("GET", "/search", {"params": {"k": 3}}, 422, "q"),
    ("GET", "/search", {"params": {"q": "drill", "partition": "store-9"}}, 404, "partition"),
    ("POST", "/search", {"json": {"query": "!!!"}}, 422, "query"),
    ("POST", "/search", {"json": {"query": "drill", "k": "5"}}, 422, "k"),
    ("POST", "/search", {"json": {"query": "drill", "partiton": "s"}}, 422, "partiton"),
    ("POST", "/search", {"json": {"k": 5}}, 422, "query"),
    ("POST", "/search", {"content": b"{not json",
                         "headers": {"content-type": "application/json"}}, 422, None),
    ("POST", "/search", {"content": b'{"query": "drill"}',
                         "headers": {"content-type": "text/plain"}}, 422, "Content-Type"),
    ("POST", "/search/batch", {"json": {"queries": ["drill", "  "]}}, 422, "queries.1"),
    ("POST", "/search/batch", {"json": {"queries": ["drill", 7]}}, 422, "queries.1"),
    ("POST", "/search/batch", {"json": {"queries": []}}, 422, "queries"),
    ("POST", "/search/batch", {"json": {"queries": ["x" * 500] * 200}}, 413, None),
    ("POST", "/admin/reload", {}, 401, "Authorization"),
    ("GET", "/autocomplete", {"params": {"prefix": "moen"}}, 404, None),  # no artifact
    ("GET", "/nowhere", {}, 404, None),
])
def test_errors_are_problem_details_naming_the_field(
    client: TestClient, method: str, url: str, kwargs: dict, status: int, field: str | None
) -> None:
    problem(client.request(method, url, **kwargs), status, field)


def test_a_401_names_its_scheme(client: TestClient) -> None:
    r = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert problem(r, 401, "Authorization")["detail"].startswith("admin endpoints need")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "url", "allow"), [
    ("PUT", "/search", "GET, POST"),  # two routes at one path: Starlette named only GET's
    ("DELETE", "/search", "GET, POST"),
    ("GET", "/search/batch", "POST"),
    ("POST", "/healthz", "GET"),
    ("GET", "/admin/reload", "POST"),
])
def test_a_405_allows_every_method_of_its_path(client: TestClient, method: str, url: str,
                                               allow: str) -> None:
    r = client.request(method, url)
    problem(r, 405, None)
    assert r.headers["allow"] == allow


def test_before_start_up_the_search_is_503_with_retry_after(serve_config: ServeConfig) -> None:
    client = TestClient(create_app(serve_config))  # no `with`: start-up never runs
    r = client.get("/search", params={"q": "drill"})
    assert "still loading" in problem(r, 503, None)["detail"]
    assert r.headers["retry-after"] == "1"
    assert problem(client.get("/readyz"), 503, None)


def test_an_unexpected_failure_is_a_500_problem(serve_config: ServeConfig, engine: Engine,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "plan", broken)
    with TestClient(create_app(serve_config, engine), raise_server_exceptions=False) as c:
        body = problem(c.post("/search", json={"query": "drill"}), 500, None)
    assert "boom" not in body["detail"]  # internals stay in the log


def test_a_blank_partition_is_the_whole_index(client: TestClient) -> None:
    whole = client.post("/search", json={"query": "drill"}).json()["results"]
    blank = client.post("/search", json={"query": "drill", "partition": ""})
    assert blank.status_code == 200 and blank.json()["results"] == whole  # as GET's


def test_k_is_any_json_integer(client: TestClient) -> None:
    # 3.0 is an integer to JSON Schema (the document says integer); true and "3" are not
    r = client.post("/search", json={"query": "drill", "k": 3.0})
    assert r.status_code == 200 and len(r.json()["results"]) == 3, r.text
    r = client.post("/search/batch", json={"queries": ["drill"], "k": 2.0})
    assert r.status_code == 200 and len(r.json()["responses"][0]["results"]) == 2, r.text
    for k in (2.5, True, "3"):
        problem(client.post("/search", json={"query": "drill", "k": k}), 422, "k")


@pytest.mark.parametrize("k", ["5.0", " 5 ", "5 ", "1_0"])
def test_get_k_is_an_integer_in_digits_on_the_warm_lane_and_the_route(client: TestClient,
                                                                      k: str) -> None:
    """The document declares GET's k an integer; a query string has no numbers, so an
    integer there is its digits, and both GET paths refused as POST's schema does."""
    lane = search.warm_lane(client.app)  # type: ignore[arg-type]
    assert isinstance(lane([("q", "drill"), ("k", "5")]), bytes | Plan)  # answered there
    assert lane([("q", "drill"), ("k", k)]) is None  # handed to the route, which refuses it
    r = client.get("/search", params={"q": "drill", "k": k})
    assert problem(r, 422, "k")["detail"] == (
        f"malformed request: k: must be a whole number, digits only (such as 10), got {k!r}")
    assert client.get("/search", params={"q": "drill", "k": "+05"}).json()["results"] == (
        client.post("/search", json={"query": "drill", "k": 5}).json()["results"])


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("url", ["/search", "/search/batch"])
def test_a_json_body_without_a_json_content_type_says_so(client: TestClient, url: str,
                                                         content_type: str | None) -> None:
    """``curl -d '{...}'`` sends a form's Content-Type: the answer names the header to set,
    never that the JSON object is no object."""
    body = b'{"query": "drill"}' if url == "/search" else b'{"queries": ["drill"]}'
    r = client.post(url, content=body,
                    headers={"content-type": content_type} if content_type else {})
    detail = problem(r, 422, "Content-Type")["detail"]
    assert "'Content-Type: application/json'" in detail and "dictionary" not in detail
    assert repr(content_type) in detail if content_type else "(got none)" in detail
    r = client.post(url, content=body,  # JSON by another name is read as JSON
                    headers={"content-type": "application/vnd.api+json; charset=utf-8"})
    assert r.status_code == 200, r.text
