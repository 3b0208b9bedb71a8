from __future__ import annotations

import base64
import dataclasses
import html
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aisle.evaluation.compare import METRICS, compare_runs
from aisle.evaluation.report import render_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NASTY = 'Drill <b>&" 18V'  # a title that breaks the page unless escaped
IMAGE = re.compile(r'<img alt="[^"]+" src="data:image/png;base64,([^"]+)">')


def tiny_inputs(n_runs: int = 3) -> dict[str, Any]:
    """Twelve judged queries over forty products; run rankings are seeded shuffles, so each run
    wins some queries and loses others against the first."""
    titles = {f"p{i}": f"product number {i}" for i in range(38)}  # p38, p39 have no title
    titles["p3"] = NASTY
    queries = {f"q{i}": f"query {i}" + " words" * (i % 6) for i in range(12)}
    queries["q1"] = "drill <18v> & bits"
    qrels: dict[str, dict[str, float]] = {
        f"q{i}": {f"p{i + 4}": 3.0, f"p{i + 5}": 3.0, f"p{i + 6}": 2.0, f"p{i + 7}": 0.0}
        for i in range(12)
    }
    qrels["q11"] = {"p15": 1.0, "p16": 0.0}  # no top-grade product: recall and MRR undefined
    rng = random.Random(7)
    runs: dict[str, dict[str, list[str]]] = {}
    for name in ["bm25", 'dense <v2> & "co"', "hybrid"][:n_runs]:
        ranked = {}
        for qid, grades in qrels.items():
            pool = [*grades, *rng.sample([f"p{i}" for i in range(20, 40)], 8)]
            rng.shuffle(pool)
            ranked[qid] = ["p3", *pool]  # p3 is unjudged everywhere and always on show
        runs[name] = ranked
    del runs[list(runs)[-1]]["q10"]  # a query the last run lacks ranks nothing
    slices = {"one word": {"q0", "q6"}, "misspelt": set(), "long (5+ words)": {"q5", "q11", "qX"}}
    summaries = compare_runs(runs, qrels, top_grade=3.0, resamples=200)
    return {"title": "tiny <split> & co", "runs": runs, "qrels": qrels, "top_grade": 3.0,
            "queries": queries, "titles": titles, "summaries": summaries, "slices": slices}


@pytest.fixture(scope="module")
def inputs() -> dict[str, Any]:
    return tiny_inputs()


@pytest.fixture(scope="module")
def page(inputs: dict[str, Any]) -> str:
    return render_report(**inputs)


def plots(n_runs: int) -> int:
    """recall@k and slices always; the delta histogram only with a run to compare."""
    return 2 if n_runs == 1 else 3


def test_the_page_holds_every_run_and_metric(page: str, inputs: dict[str, Any]) -> None:
    for name in inputs["runs"]:
        assert page.count(f"<td>{html.escape(name)}</td>") == len(METRICS)
    assert "dense <v2>" not in page
    for metric in METRICS:
        assert re.search(rf'<th class="metric" rowspan="3">{re.escape(metric)}<', page)
    assert "Baseline: <b>bm25</b>" in page and "condensed nDCG@10" in page
    assert "judged@10" in page and "95%" in page
    assert "queries where hybrid gained most" in page
    assert "queries where hybrid lost most" in page


def test_plots_are_embedded_pngs(page: str) -> None:
    payloads = IMAGE.findall(page)
    assert len(payloads) == page.count("<img") == plots(3)
    for payload in payloads:
        png = base64.b64decode(payload, validate=True)
        assert png.startswith(PNG_SIGNATURE) and len(png) > 2_000


def test_text_is_escaped_and_nothing_is_fetched(page: str) -> None:
    assert NASTY not in page and "Drill &lt;b&gt;&amp;&quot; 18V" in page
    assert "drill <18v>" not in page and "drill &lt;18v&gt; &amp; bits" in page
    assert "tiny &lt;split&gt; &amp; co" in page
    assert "unjudged" in page and "grade 3" in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page


def test_an_empty_slice_reads_zero_and_dash(page: str) -> None:
    row = re.search(r"<tr><td>misspelt</td>(.*?)</tr>", page)
    assert row is not None
    assert re.findall(r'<td class="n">([^<]*)</td>', row.group(1)) == ["0", "-", "-", "-"]
    # qX is not a judged query and q11 defines nDCG@10: the long slice counts 2 queries
    assert re.search(r'<tr><td>long \(5\+ words\)</td><td class="n">2</td>', page)


def test_tiny_p_values_and_a_missing_metric() -> None:
    args = tiny_inputs(n_runs=2)
    base, other = args["summaries"]
    assert other.against_baseline is not None
    paired = dict(other.against_baseline)
    paired["ndcg@10"] = dataclasses.replace(paired["ndcg@10"], p_value=1e-5)
    del paired["mrr@10"]
    metrics = {k: v for k, v in other.metrics.items() if k != "mrr@10"}
    args["summaries"] = [base, dataclasses.replace(other, metrics=metrics,
                                                   against_baseline=paired)]
    page = render_report(**args)
    assert "&lt;0.001" in page
    mrr = page[page.index(">mrr@10<"):]
    other_row = mrr[: mrr.index("</tbody>")].split("<tr>")[-1]
    assert other_row.count('<td class="n">-</td>') == 6  # mean, CI, delta, its CI, p, W/T/L


def test_a_single_run_renders_without_deltas() -> None:
    page = render_report(**tiny_inputs(n_runs=1))
    assert "Only one run" in page and "gained most" not in page
    assert len(IMAGE.findall(page)) == plots(1)


def test_summaries_must_match_the_runs(inputs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="same runs"):
        render_report(**{**inputs, "summaries": inputs["summaries"][::-1]})


def test_importing_the_module_leaves_matplotlib_unloaded() -> None:
    code = "import sys, aisle.evaluation.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@dataclass(frozen=True)
class Browsed:
    errors: list[str]  # console errors and uncaught page errors
    images: list[tuple[bool, int]]  # (complete, naturalWidth) of each <img>
    requests: list[str]  # every URL the page asked for


def browse(html_path: Path, screenshot: Path | None = None, width: int = 1280) -> Browsed:
    """Open ``html_path`` in headless chromium and report what a reader would hit; with
    ``screenshot``, open every <details> and save the whole page as a PNG."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=["--no-sandbox"], headless=True)
        try:
            tab = browser.new_page(viewport={"width": width, "height": 900})
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(html_path.as_uri(), wait_until="load")
            images = tab.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth])")
            if screenshot is not None:
                tab.eval_on_selector_all("details", "els => els.forEach(e => e.open = true)")
                tab.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return Browsed(errors, [(bool(c), int(w)) for c, w in images], requests)


def _browser_missing() -> str | None:
    if shutil.which("chromium") is None:
        return "no chromium on PATH (Debian package 'chromium')"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


@pytest.mark.slow
def test_the_page_opens_cleanly_in_a_browser(page: str, tmp_path: Path) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    seen = browse(path)
    assert seen.errors == []
    assert len(seen.images) == plots(3)
    assert all(complete and width > 0 for complete, width in seen.images)
    assert all(url.startswith(("file:", "data:")) for url in seen.requests)
