"""The search page at ``/``: what it serves (HTML and same-origin assets, outside the OpenAPI
document), and the page itself in a real headless Chromium against a real `aisle serve`."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


def until(page: Any, done: Any, what: str, timeout_s: float = 5.0) -> None:
    """Let the page run (its events, the routes' handlers) until ``done()``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(10)


def recorded_searches(page: Any) -> list[str]:
    """The URLs of the GET /search requests ``page`` sends from now on, as it sends them."""
    searches: list[str] = []
    page.on("request", lambda r: searches.append(r.url) if "/search?" in r.url else None)
    return searches


def problem_json(status: int, detail: str) -> dict[str, Any]:
    return {"status": status, "content_type": "application/problem+json",
            "body": json.dumps({"type": "about:blank", "title": "Error", "status": status,
                                "detail": detail, "field": None})}


def suggestions_json(prefix: str, *texts: str) -> dict[str, Any]:
    return {"json": {"prefix": prefix, "version": "test", "took_ms": 0.1, "suggestions": [
        {"text": t, "popularity": 1, "source": "log", "edits": 0} for t in texts]}}


def typed_with_suggestions(served: str, browser: Any, prefix: str, *texts: str
                           ) -> tuple[Any, Any]:
    """A page of the service whose /autocomplete answers ``texts``, with ``prefix`` typed into
    its search box: the page and the box."""
    page = browser.new_page()
    page.set_default_timeout(5000)
    page.route(lambda url: urlsplit(url).path == "/autocomplete",
               lambda route: route.fulfill(**suggestions_json(prefix, *texts)))
    page.goto(served + "/")
    box = page.locator("#q")
    box.fill(prefix)
    return page, box


def first_fields(page: Any, first: Any) -> list[str]:
    """Route the page's GET /fields: ``first(route)`` answers the first request, the service
    the later ones. The URLs asked, in order."""
    asked: list[str] = []

    def fields(route: Any) -> None:
        asked.append(route.request.url)
        if len(asked) == 1:
            first(route)
        else:
            route.continue_()

    page.route(lambda url: urlsplit(url).path == "/fields", fields)
    return asked


@pytest.mark.slow
def test_suggestions_for_older_text_are_never_shown(served: str, browser: Any) -> None:
    # The answer for "ha" is held until the shopper has typed "t", then arrives before the
    # next request ("hat") is sent: it must not be shown (ArrowDown+Enter would search it).
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    held: list[Any] = []
    page.route(lambda url: urlsplit(url).path == "/autocomplete",
               lambda route: held.append(route))
    page.goto(served + "/")
    box = page.locator("#q")
    box.fill("ha")  # one input event: no request for "h" however slow the machine
    until(page, lambda: len(held) == 1, "the request for 'ha'")
    assert parse_qs(urlsplit(held[0].request.url).query)["prefix"] == ["ha"]
    box.press("t")
    held[0].fulfill(**suggestions_json("ha", "ha SUGGESTION"))
    until(page, lambda: len(held) == 2, "the request for 'hat'")
    assert page.locator("#suggestions").is_hidden()
    assert page.locator("#suggestions [role=option]").count() == 0
    assert box.get_attribute("aria-expanded") == "false"

    held[1].fulfill(**suggestions_json("hat", "hat SUGGESTION"))
    options = page.locator("#suggestions [role=option]")
    options.first.wait_for(timeout=3000)
    assert options.all_text_contents() == ["hat SUGGESTION"]
    box.press("ArrowDown")
    answer = search_answer(page, lambda: box.press("Enter"))
    assert box.input_value() == "hat SUGGESTION" and "results" in answer


@pytest.mark.slow
def test_keys_an_input_method_composes_with_never_pick_a_suggestion(
    served: str, browser: Any
) -> None:
    page, box = typed_with_suggestions(served, browser, "ha", "hammer", "hat")
    page.locator("#suggestions [role=option]").first.wait_for()
    box.press("ArrowDown")  # "hammer" highlighted
    for key in ("ArrowDown", "Enter"):  # as an IME sends them while composing
        box.dispatch_event("keydown", {"key": key, "isComposing": True, "bubbles": True,
                                       "cancelable": True})
    assert box.input_value() == "ha"  # Enter committed the composition, picked nothing
    assert page.locator("#suggestions").is_visible()
    assert page.locator("#suggestions [aria-selected=true]").all_text_contents() == ["hammer"]


@pytest.mark.slow
def test_only_the_main_mouse_button_picks_a_suggestion(served: str, browser: Any) -> None:
    page, box = typed_with_suggestions(served, browser, "ha", "hammer", "hat")
    hammer = page.locator("#suggestions [role=option]", has_text="hammer")
    searches = recorded_searches(page)
    hammer.click(button="right")  # the shopper opens the context menu
    assert box.input_value() == "ha" and page.locator("#suggestions").is_visible()
    hammer.click(modifiers=["Control"])  # macOS's right-click: button 0 with ctrl held
    assert box.input_value() == "ha" and page.locator("#suggestions").is_visible()
    with page.expect_response(lambda r: "/search?" in r.url and "q=hammer" in r.url):
        hammer.click()
    assert box.input_value() == "hammer" and len(searches) == 1


@pytest.mark.slow
def test_a_results_field_names_read_as_words(served: str, browser: Any) -> None:
    # A stored field named with an underscore reads "unit price 4.5", as its filter's label
    # does, and a false boolean "not in stock".
    page = browser.new_page()
    page.set_default_timeout(5000)

    def renamed(route: Any) -> None:
        body = route.fetch().json()
        for result in body["results"]:
            result["fields"] = {"unit_price": 4.5, "in_stock": False}
        route.fulfill(json=body)

    page.route(lambda url: urlsplit(url).path == "/search", renamed)
    page.goto(served + "/")
    page.fill("#q", "cord")
    page.press("#q", "Enter")
    first = page.locator("#results .result").first
    first.wait_for()
    assert first.locator(".field[data-field=unit_price]").text_content() == "unit price 4.5"
    assert first.locator(".field[data-field=in_stock]").text_content() == "not in stock"


@pytest.mark.slow
def test_the_filters_appear_once_the_index_has_loaded(served: str, browser: Any) -> None:
    # GET /fields answers 503 while the index loads: the page asks again, and the filter
    # controls appear once it answers.
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    asked = first_fields(page, lambda route: route.fulfill(
        **problem_json(503, "the index is loading; try again shortly")))
    page.goto(served + "/")
    page.locator("#filter-in_stock").wait_for(timeout=4000)
    assert len(asked) == 2 and page.locator("#filters").is_visible()
    assert page.locator("#filter-price-max").is_visible()


@pytest.mark.slow
def test_the_page_reloads_the_fields_of_a_swapped_index(served: str, browser: Any) -> None:
    # The page was loaded against an older index version with a field this one lacks: the
    # search is refused (unknown field), the page reloads the fields and searches again.
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    asked = first_fields(page, lambda route: route.fulfill(json={
        "index_version": "an-older-one",
        "fields": [{"name": "gone_now", "type": "boolean", "missing": 0}]}))
    page.goto(served + "/")
    page.locator("#filter-gone_now").wait_for()
    with page.expect_response(lambda r: "/search?" in r.url and r.status == 200) as info:
        page.fill("#q", "cord")
        page.press("#q", "Enter")
    answer = info.value.json()
    assert len(asked) == 2 and answer["results"]
    assert "gone_now" not in answer["results"][0]["fields"]
    page.locator("#results .result").first.wait_for()
    assert page.locator("#filter-gone_now").count() == 0
    page.locator("#filter-in_stock").wait_for()
    assert "error" not in (page.locator("#status").get_attribute("class") or "")


@pytest.mark.slow
def test_a_search_sent_before_the_fields_loaded_or_with_a_choice_they_drop_runs_again(
    served: str, browser: Any
) -> None:
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    searches = recorded_searches(page)
    held: list[Any] = []
    page.route(lambda url: urlsplit(url).path == "/fields", lambda route: held.append(route))
    page.goto(served + "/")
    until(page, lambda: len(held) == 1, "the page's request for /fields")
    page.fill("#q", "cord")
    with page.expect_response(lambda r: "/search?" in r.url):
        page.press("#q", "Enter")
    assert "fields=" not in searches[0]  # sent before the fields were known
    with page.expect_response(lambda r: "/search?" in r.url and "fields=" in r.url):
        held[0].continue_()  # the fields arrive: the search runs again, with them
    assert len(searches) == 2 and "fields=brand" in searches[1]

    # A brand the shopper chose that a newer index no longer offers: the search runs again
    # without it, rather than leave results filtered by a choice the page no longer shows.
    page.unroute(lambda url: urlsplit(url).path == "/fields")
    page.goto("about:blank")
    searches.clear()

    def older(route: Any) -> None:
        # The same fields as now, from an older version whose brands differ.
        body = route.fetch().json()
        body["index_version"] = "an-older-one"
        brand = next(f for f in body["fields"] if f["name"] == "brand")
        brand["values"] = [{"value": "ZZZ gone", "count": 1}]
        route.fulfill(json=body)

    first_fields(page, older)
    page.goto(served + "/")
    page.locator("#filter-brand").wait_for()
    page.fill("#q", "cord")
    with page.expect_response(lambda r: "/search?" in r.url and "ZZZ" not in r.url):
        page.select_option("#filter-brand", "ZZZ gone")
    assert "ZZZ+gone" in searches[0] and "ZZZ" not in searches[-1]
    assert page.locator("#filter-brand").input_value() == ""
    page.locator("#results .result").first.wait_for()


@pytest.mark.slow
def test_the_page_says_what_is_wrong(served: str, browser: Any) -> None:
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    searches = recorded_searches(page)
    page.goto(served + "/")
    # Each control is named as its label shows it.
    page.get_by_role("combobox", name="in stock", exact=True).wait_for()
    page.get_by_role("textbox", name="price max", exact=True).wait_for()

    # A number the service would refuse is refused here, saying why, and not sent.
    status = page.locator("#status")
    page.fill("#filter-price-max", "1e3")
    page.fill("#q", "cord")
    page.press("#q", "Enter")
    page.locator("#status.error", has_text="1e3").wait_for()
    assert "price max" in (status.text_content() or "")
    assert page.locator("#filter-price-max").get_attribute("aria-invalid") == "true"
    page.wait_for_timeout(100)
    assert searches == []
    page.fill("#filter-price-max", "30")
    answer = search_answer(page, lambda: page.press("#q", "Enter"))
    assert "price%3C%3D30" in searches[-1] and all(r["fields"]["price"] <= 30
                                                    for r in answer["results"])
    assert page.locator("#filter-price-max").get_attribute("aria-invalid") == "false"

    # Compare mode where every mode fails: the status says so, as an error.
    page.route(lambda url: "/search?" in url,
               lambda route: route.fulfill(**problem_json(503, "the index is loading")))
    page.check("#compare")
    page.locator("#status.error", has_text="All 3 modes failed: the index is loading").wait_for()
    assert page.locator("#columns .column .error").count() == 3


@pytest.mark.slow
def test_a_reload_keeps_the_filters_the_shopper_set(served: str, browser: Any) -> None:
    # The URL holds the whole search, filters included: a reload (or the link, shared) shows
    # the same results, with the same controls set, not the catalog unfiltered.
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    page.goto(served + "/")
    page.locator("#filter-in_stock").wait_for()
    page.fill("#q", "cord")
    search_answer(page, lambda: page.press("#q", "Enter"))
    search_answer(page, lambda: page.select_option("#filter-in_stock", "true"))
    page.fill("#filter-price-max", "30")
    search_answer(page, lambda: page.press("#filter-price-max", "Enter"))
    assert parse_qs(urlsplit(page.url).query)["filter"] == ["in_stock=true", "price<=30"]

    with page.expect_response(lambda r: "/search?" in r.url and "filter=" in r.url) as info:
        page.reload()
    sent = parse_qs(urlsplit(info.value.url).query)
    assert sorted(sent["filter"]) == ["in_stock=true", "price<=30"] and sent["q"] == ["cord"]
    answer = info.value.json()
    assert answer["results"] and all(r["fields"]["in_stock"] is True
                                     and r["fields"]["price"] <= 30 for r in answer["results"])
    assert page.locator("#filter-in_stock").input_value() == "true"
    assert page.locator("#filter-price-max").input_value() == "30"
    page.locator("#results .result").first.wait_for()
    assert page.locator("#results .result").count() == len(answer["results"])


@pytest.mark.slow
def test_back_and_forward_go_through_the_searches(served: str, browser: Any) -> None:
    # Each search the shopper makes is a history entry: Back shows the one before (its text,
    # mode and results), not the page before the search page.
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    page.goto("about:blank")
    page.goto(served + "/")
    page.locator("#filter-in_stock").wait_for()
    page.fill("#q", "cord")
    cord = search_answer(page, lambda: page.press("#q", "Enter"))
    page.fill("#q", "claw hammer")
    search_answer(page, lambda: page.press("#q", "Enter"))
    lexical = search_answer(page, lambda: page.check("input[name=mode][value=lexical]"))
    assert lexical["mode"] == "lexical"

    back = search_answer(page, page.go_back)
    assert parse_qs(urlsplit(page.url).query) == {"q": ["claw hammer"]}
    assert page.locator("#q").input_value() == "claw hammer" and back["mode"] == cord["mode"]
    page.locator(f"input[name=mode][value={cord['mode']}]:checked").wait_for()
    again = search_answer(page, page.go_back)
    assert page.locator("#q").input_value() == "cord"
    assert [r["product_id"] for r in again["results"]] == [r["product_id"]
                                                           for r in cord["results"]]
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.locator("#results .result .title")).to_have_text(
        [r["title"] for r in cord["results"]])
    forward = search_answer(page, page.go_forward)
    assert page.locator("#q").input_value() == "claw hammer" and forward["results"]


@pytest.mark.slow
def test_text_typed_while_the_page_loads_is_kept(served: str, browser: Any) -> None:
    # Opened from a link (?q=cord) while the service is slow to answer GET /fields: the box
    # shows the link's query at once, and what the shopper types over it is not replaced.
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    searches = recorded_searches(page)
    held: list[Any] = []
    page.route(lambda url: urlsplit(url).path == "/fields", lambda route: held.append(route))
    page.goto(served + "/?q=cord")
    until(page, lambda: len(held) == 1, "the page's request for /fields")
    assert page.locator("#q").input_value() == "cord"
    page.fill("#q", "")
    page.locator("#q").press_sequentially("hammer")
    held[0].continue_()
    page.locator("#filter-in_stock").wait_for()
    page.wait_for_timeout(300)
    assert page.locator("#q").input_value() == "hammer"
    assert searches == []  # the link's search is not sent over what the shopper typed
    answer = search_answer(page, lambda: page.press("#q", "Enter"))
    assert parse_qs(urlsplit(searches[-1]).query)["q"] == ["hammer"] and answer["results"]


@pytest.mark.slow
def test_switching_views_never_shows_an_older_querys_results(served: str, browser: Any
                                                             ) -> None:
    page = browser.new_page()
    page.set_default_timeout(5000)  # a failure says so in seconds, not 30
    page.goto(served + "/?compare=1")
    page.locator("#filter-in_stock").wait_for()
    # the mode switch is off in this view, as after a search in it
    assert page.locator("input[name=mode][value=dense]").is_disabled()
    page.uncheck("#compare")
    page.fill("#q", "cord")
    search_answer(page, lambda: page.press("#q", "Enter"))
    page.locator("#results .result").first.wait_for()
    page.check("#compare")
    page.fill("#q", "claw hammer")
    search_answer(page, lambda: page.press("#q", "Enter"))
    page.locator("#columns .column").nth(2).wait_for()

    # Back to one list while its search is on its way: the list shows nothing yet, not the
    # results for "cord" it showed before the columns.
    held: list[Any] = []
    page.route(lambda url: "/search?" in url, lambda route: held.append(route))
    page.uncheck("#compare")
    until(page, lambda: len(held) == 1, "the search for 'claw hammer'")
    assert page.locator("#results .result").count() == 0
    assert page.locator("#status").text_content() == "Searching…"
    held[0].continue_()
    page.locator("#results .result").first.wait_for()
    assert "hammer" in (page.locator("#results .result .title").first.text_content() or "")
