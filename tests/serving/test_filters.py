"""Filters and fields through the service: GET and POST /search, the batch, partitions,
GET /fields, and the errors that say what to fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aisle.serving.app import create_app
from aisle.serving.config import ServeConfig
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import engine_over


@pytest.fixture(scope="module")
def client(sample_index: Path, base_model: TwoTowerModel) -> Iterator[TestClient]:
    config = ServeConfig(index=str(sample_index), watch_interval_s=0)
    with TestClient(create_app(config, engine_over(config, base_model))) as c:
        yield c


def results(body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = body["results"]
    return found


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_get_filters_before_top_k_and_returns_the_fields_asked_for(
    client: TestClient, mode: str
) -> None:
    params = [("q", "cordless drill"), ("k", "8"), ("mode", mode), ("filter", "in_stock=true"),
              ("filter", "price<=30"), ("fields", "price"), ("fields", "in_stock")]
    first = client.get("/search", params=params)
    assert first.status_code == 200, first.text
    found = results(first.json())
    assert found and all(set(r["fields"]) == {"price", "in_stock"} for r in found)
    assert all(r["fields"]["in_stock"] is True and r["fields"]["price"] <= 30 for r in found)
    if mode == "dense":
        assert len(found) == 8
    again = client.get("/search", params=params)  # from the result cache: the same answer
    assert [r["product_id"] for r in results(again.json())] == [r["product_id"] for r in found]
    unfiltered = client.get("/search", params=params[:3]).json()  # not the filtered cache entry
    assert "fields" not in results(unfiltered)[0]
    assert any(r["product_id"] not in {f["product_id"] for f in found}
               for r in results(unfiltered))


def test_post_and_batch_take_json_filters(client: TestClient) -> None:
    body = {"query": "paint", "k": 5, "filters": {"brand": ["Behr", "Delta"],
                                                 "price": {"gte": 5, "lt": 60}},
            "fields": ["brand", "price"]}
    answer = client.post("/search", json=body)
    assert answer.status_code == 200, answer.text
    found = results(answer.json())
    assert found and all(r["fields"]["brand"] in ("Behr", "Delta")
                         and 5 <= r["fields"]["price"] < 60 for r in found)
    batch = client.post("/search/batch", json={
        "queries": ["paint", "drill"], "k": 3, "filters": {"in_stock": False},
        "fields": ["in_stock"]}).json()
    for response in batch["responses"]:
        assert results(response) and all(r["fields"] == {"in_stock": False}
                                         for r in results(response))
    # The same filter as text (GET) and as JSON (POST) selects the same products.
    get = client.get("/search", params=[("q", "paint"), ("k", "5"), ("filter", "brand=Behr|Delta"),
                                        ("filter", "price>=5"), ("filter", "price<60")])
    assert [r["product_id"] for r in results(get.json())] == [r["product_id"] for r in found]


def test_a_filter_nothing_meets_returns_no_results(client: TestClient) -> None:
    answer = client.get("/search", params=[("q", "drill"), ("filter", "brand=NoSuchBrand")])
    assert answer.status_code == 200 and results(answer.json()) == []


@pytest.mark.parametrize(
    ("params", "field", "detail"),
    [
        ([("filter", "colour=red")], "filter", "unknown field 'colour'"),
        ([("filter", "price<=cheap")], "filter", "price is a number field"),
        ([("filter", "price")], "filter", "is not field=value"),
        ([("filter", "in_stock=maybe")], "filter", "in_stock is a boolean field"),
        ([("fields", "colour")], "fields", "unknown field 'colour'"),
    ],
)
def test_get_bad_filters_are_422_naming_the_parameter(
    client: TestClient, params: list[tuple[str, str]], field: str, detail: str
) -> None:
    answer = client.get("/search", params=[("q", "drill"), *params])
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["field"] == field and detail in problem["detail"]


@pytest.mark.parametrize(
    ("extra", "field", "detail"),
    [
        ({"filters": {"colour": "red"}}, "filters.colour", "unknown field 'colour'"),
        ({"filters": {"price": "cheap"}}, "filters.price", "price is a number field"),
        ({"filters": {"price": {"above": 3}}}, "filters.price", "gte, gt, lte and lt"),
        ({"filters": {"brand": []}}, "filters.brand", "the list of values is empty"),
        ({"fields": ["colour"]}, "fields", "unknown field 'colour'"),
    ],
)
def test_post_bad_filters_are_422_naming_the_key(
    client: TestClient, extra: dict[str, Any], field: str, detail: str
) -> None:
    answer = client.post("/search", json={"query": "drill", **extra})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and detail in answer.json()["detail"]


def test_fields_lists_what_filters_can_name(client: TestClient) -> None:
    body = client.get("/fields").json()
    by_name = {f["name"]: f for f in body["fields"]}
    assert {n: f["type"] for n, f in by_name.items()} == {
        "brand": "string", "category": "string", "in_stock": "boolean", "price": "number"}
    assert by_name["price"]["min"] < by_name["price"]["max"]
    assert sum(v["count"] for v in by_name["brand"]["values"]) == 300


def test_partitions_filter_within_themselves(
    partitioned_index: Path, base_model: TwoTowerModel
) -> None:
    config = ServeConfig(index=str(partitioned_index), watch_interval_s=0)
    with TestClient(create_app(config, engine_over(config, base_model))) as c:
        for _ in range(2):  # the partition on disk, then loaded
            answer = c.get("/search", params=[("q", "drill"), ("partition", "store-2"),
                                              ("filter", "price<=20"), ("fields", "price")])
            assert answer.status_code == 200, answer.text
            found = results(answer.json())
            assert found and all(r["fields"]["price"] <= 20 for r in found)
            assert all(int(r["product_id"][1:]) % 2 == 1 for r in found)  # store-2: odd rows
        bad = c.get("/search", params=[("q", "drill"), ("partition", "store-1"),
                                       ("filter", "colour=red")])
        assert bad.status_code == 422 and bad.json()["field"] == "filter"


def test_planning_checks_a_filter_without_selecting_on_the_event_loop(
    sample_index: Path, base_model: TwoTowerModel
) -> None:
    from aisle.retrieval.filters import FilterError, filter_from_json
    from aisle.serving.engine import Ask, Lane

    config = ServeConfig(index=str(sample_index), watch_interval_s=0)
    engine = engine_over(config, base_model)
    index = engine.snapshot.retriever.index
    flt = filter_from_json({"price": {"lte": 12.5}})
    ask = Ask(("drill",), 5, "dense", None, flt)
    plan = engine.plan(ask)
    assert plan.lane is not Lane.LOOP and not index.selected(flt)  # selected off the loop
    assert all(index.field_values([h.product_id for h in found.hits])[i]["price"] <= 12.5
               for found in engine.search(ask).found for i in range(len(found.hits)))
    assert index.selected(flt)
    # A value of the wrong type is refused even though a valid one was selected before.
    with pytest.raises(FilterError, match="price is a number field"):
        engine.plan(Ask(("drill",), 5, "dense", None, filter_from_json({"price": "12.5"})))
