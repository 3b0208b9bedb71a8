"""The search page at ``/``: what it serves (HTML and same-origin assets, outside the OpenAPI
document), and the page itself in a real headless Chromium against a real `aisle serve`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aisle.serving.app import create_app
from aisle.serving.config import ServeConfig
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import aisle_serve

CHROMIUM = "/usr/bin/chromium"
# Set to a path to save the page's side-by-side view there (docs/search-page.png is one).
SCREENSHOT = os.environ.get("AISLE_PAGE_SCREENSHOT")


class Links(HTMLParser):
    """Every URL the document loads or links to (src and href attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_the_page_and_its_assets_are_served_from_the_service() -> None:
    # No start-up (no `with`): the page needs no index, only the config.
    client = TestClient(create_app(ServeConfig()))
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'data-autocomplete="off"' in page.text  # started without an artifact

    links = Links()
    links.feed(page.text)
    assets = [u for u in links.urls if not u.startswith("data:")]
    assert sorted(assets) == ["/page/page.css", "/page/page.js"]
    assert all(u.startswith("/") and not u.startswith("//") for u in assets)  # same origin
    types = {"/page/page.css": "text/css; charset=utf-8",
             "/page/page.js": "text/javascript; charset=utf-8"}
    for url, kind in types.items():
        answer = client.get(url)
        assert answer.status_code == 200 and answer.headers["content-type"] == kind
        assert answer.text.strip()

    missing = client.get("/page/secrets.txt")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/page") for p in paths)


def test_the_page_renders_with_textcontent_only() -> None:
    script = (Path(__file__).parents[2] / "aisle/serving/page/page.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "http://" not in script and "https://" not in script


@pytest.fixture(scope="module")
def page_autocomplete(tmp_path_factory: pytest.TempPathFactory, sample_data: Path,
                      base_model: TwoTowerModel) -> Path:
    """A small autocomplete artifact over the sample catalog the index holds."""
    from aisle.autocomplete.build import build_autocomplete
    from tests.autocomplete.conftest import SMALL

    out = tmp_path_factory.mktemp("page-ac") / "autocomplete"
    return build_autocomplete(sample_data, base_model, out, SMALL)


@pytest.fixture(scope="module")
def served(sample_index: Path, page_autocomplete: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("page-serve") / "serve.log"
    with aisle_serve(["--index", str(sample_index), "--autocomplete", str(page_autocomplete),
                      "watch_interval_s=0"], log) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"chromium is not installed at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def search_answer(page: Any, action: Any) -> dict[str, Any]:
    """The JSON of the GET /search that ``action`` makes the page send."""
    with page.expect_response(lambda r: "/search?" in r.url) as info:
        action()
    return dict(info.value.json())


@pytest.mark.slow
def test_a_shopper_searches_on_the_page(served: str, browser: Any) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    page.goto(served + "/")

    box = page.locator("#q")
    options = page.locator("#suggestions [role=option]")
    box.press_sequentially("cord", delay=40)
    options.first.wait_for()
    assert box.get_attribute("aria-expanded") == "true"
    box.press("Escape")  # closes the dropdown, keeps the text
    assert page.locator("#suggestions").is_hidden() and box.input_value() == "cord"

    box.press_sequentially("l", delay=40)
    options.first.wait_for()
    box.press("ArrowDown")
    box.press("ArrowDown")
    box.press("ArrowUp")
    assert options.first.get_attribute("aria-selected") == "true"
    picked = options.first.text_content()
    assert picked and picked.lower().startswith("cordl")
    first = search_answer(page, lambda: box.press("Enter"))
    assert box.input_value() == picked
    results = page.locator("#results .result")
    results.first.wait_for()
    assert results.count() == len(first["results"]) > 0
    assert results.first.locator(".title").text_content() == first["results"][0]["title"]
    # the switch shows the service's default mode, as the response reports it
    assert page.locator(f"input[name=mode][value={first['mode']}]").is_checked()

    other = "lexical" if first["mode"] != "lexical" else "dense"
    switched = search_answer(page, lambda: page.check(f"input[name=mode][value={other}]"))
    assert switched["mode"] == other != first["mode"]
    # Locator waits, not wait_for_function: the page's CSP forbids the eval that polling uses.
    page.locator("#status", has_text=other).wait_for()

    with page.expect_response(lambda r: "mode=hybrid" in r.url):
        page.check("#compare")
    columns = page.locator("#columns .column")
    columns.nth(2).wait_for()
    assert [c.get_attribute("data-mode") for c in columns.all()] == ["dense", "lexical", "hybrid"]
    for column in columns.all():
        assert column.locator(".result").count() > 0, column.text_content()
    assert page.locator("#results").is_hidden()
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=False)

    # Filters: one control per stored field of the sample catalog; each result shown meets
    # the filter, as its fields (shown with it) say.
    search_answer(page, lambda: page.uncheck("#compare"))
    in_stock = search_answer(page, lambda: page.select_option("#filter-in_stock", "true"))
    assert all(r["fields"]["in_stock"] is True for r in in_stock["results"])
    with page.expect_response(lambda r: "/search?" in r.url and "price%3C%3D30" in r.url
                              ) as info:
        page.fill("#filter-price-max", "30")
        page.locator("#filter-price-max").dispatch_event("change")
    filtered = info.value.json()
    assert len(filtered["results"]) > 0
    for result in filtered["results"]:
        assert result["fields"]["in_stock"] is True and result["fields"]["price"] <= 30
    expect(page.locator("#results .result .title")).to_have_text(
        [r["title"] for r in filtered["results"]])
    shown = page.locator("#results .result .field[data-field=price]").all_text_contents()
    assert len(shown) == len(filtered["results"])
    assert all(float(text.split()[-1]) <= 30 for text in shown)
    brand = page.locator("#filter-brand option").nth(1).get_attribute("value")
    one_brand = search_answer(page, lambda: page.select_option("#filter-brand", brand))
    assert one_brand["results"] and all(
        r["fields"]["brand"] == brand for r in one_brand["results"])
    expect(page.locator("#results .result .title")).to_have_text(
        [r["title"] for r in one_brand["results"]])
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT.replace(".png", "-filters.png"), full_page=False)
    assert problems == []


@pytest.fixture(scope="module")
def grocery_index(tmp_path_factory: pytest.TempPathFactory, base_model: TwoTowerModel) -> Path:
    """An index over 300 products of the real Instacart catalog (category "department >
    aisle"), or, without ../shared/data, a generated catalog of the same shape."""
    import numpy as np
    import pandas as pd

    from aisle.indexing.build import build_index
    from tests.conftest import SHARED_DATA

    source = SHARED_DATA / "instacart" / "products.csv"
    if source.is_file():
        products = pd.read_csv(source, dtype=str, keep_default_na=False)
        products = products.iloc[np.sort(np.random.default_rng(5).choice(len(products), 300,
                                                                          replace=False))]
    else:
        aisles = {"dairy eggs": ["milk", "yogurt", "eggs"], "frozen": ["frozen pizza", "ice cream"],
                  "produce": ["fresh fruits", "fresh vegetables"]}
        pairs = [(d, a) for d, names in aisles.items() for a in names]
        products = pd.DataFrame({
            "product_id": [str(i) for i in range(300)],
            "title": [f"organic {pairs[i % len(pairs)][1]} {i}" for i in range(300)],
            "description": "", "brand": "",
            "category": [f"{d} > {a}" for d, a in (pairs[i % len(pairs)] for i in range(300))],
        })
    data = tmp_path_factory.mktemp("grocery") / "data"
    data.mkdir()
    products.to_csv(data / "products.csv", index=False)
    return build_index(data, base_model, tmp_path_factory.mktemp("grocery-idx") / "index")


@pytest.mark.slow
def test_a_shopper_filters_a_grocery_catalog_by_department(
    grocery_index: Path, browser: Any, tmp_path: Path
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    with aisle_serve(["--index", str(grocery_index), "watch_interval_s=0"],
                     tmp_path / "serve.log") as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(url + "/?q=organic")
        page.locator("#results .result").first.wait_for()
        departments = page.locator("#filter-category-group option")
        assert departments.count() > 2  # "any" and at least two departments
        department = departments.nth(2).get_attribute("value")
        assert department and " > " not in department
        answer = search_answer(page, lambda: page.select_option("#filter-category-group",
                                                                department))
        found = answer["results"]
        assert found and all(r["fields"]["category"].split(" > ")[0].casefold()
                             == department.casefold() for r in found)
        expect(page.locator("#results .result .title")).to_have_text([r["title"] for r in found])
        assert problems == []
