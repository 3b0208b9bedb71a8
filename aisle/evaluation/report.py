"""The page ``aisle report`` writes: runs on one judged split side by side, as one HTML file
that opens without a network (inline CSS, plots embedded as base64 PNGs).

It reads what ``compare.compare_runs`` computed (means, intervals, paired tests) and redraws
nothing of it; per-query values come from ``compare.per_query``, so the page and ``aisle
compare`` never disagree. The plots are ``report_plots``'s, whose functions import matplotlib
when they draw: importing this module stays as light as the rest of ``aisle.evaluation``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from aisle.evaluation import report_plots as plots
from aisle.evaluation.compare import METRICS, PerQuery, RunSummary, per_query
from aisle.evaluation.metrics import is_relevant
from aisle.evaluation.report_plots import MAIN
from aisle.evaluation.stats import CONFIDENCE, TIE

if TYPE_CHECKING:
    pass

EXAMPLES = 20  # queries shown per run and direction: enough to see a pattern, few to read
SHOWN = 5  # products shown per ranking in an example

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1100px;
margin:2em auto;padding:0 1em}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody.metric{border-top:2px solid #bbb}
.up{color:#1a7f37}.down{color:#c62828}.muted{color:#888}
img{max-width:100%;display:block;margin:1em 0}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
.example{margin:1em 0 1.4em}.example table{width:100%;table-layout:fixed;font-size:.92em}
.grade{font-size:.85em;padding:0 .35em;border-radius:3px;background:#eee;white-space:nowrap}
.relevant{background:#d7f0dd}.irrelevant{background:#f8d7d7}.unjudged{background:#eee;color:#777}
"""


def render_report(
    title: str,
    runs: Mapping[str, Mapping[str, Sequence[str]]],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
    queries: Mapping[str, str],
    titles: Mapping[str, str],
    summaries: Sequence[RunSummary],
    slices: Mapping[str, Collection[str]],
) -> str:
    """The whole HTML document comparing ``runs`` (name -> query id -> ranked product ids,
    the first run the baseline) on the judged queries of ``qrels``. ``summaries`` are
    ``compare_runs(runs, qrels, top_grade)``, in the same order; ``slices`` name subsets of
    query ids whose mean nDCG@10 is shown apart."""
    names = list(runs)
    if not names:
        raise ValueError("a report needs at least one run")
    if [s.name for s in summaries] != names:
        raise ValueError("summaries must be compare_runs(runs, ...) for the same runs, in order")
    scores = {name: per_query(ranked, qrels, top_grade) for name, ranked in runs.items()}
    body = [
        f"<h1>{_e(title)}</h1>",
        _intro(names[0]),
        "<h2>Metrics</h2>",
        _metric_table(summaries),
        "<h2>Recall@k</h2>",
        _img(plots.png(plots.recall_figure(runs, qrels, top_grade)),
             "mean recall@k for k = 1 to 100, per run"),
        "<h2>Query slices</h2>",
        _slice_section(scores, slices),
    ]
    if len(names) == 1:
        body.append("<h2>Against the baseline</h2><p>Only one run: there is no other run to "
                    "compare with the baseline, so no deltas, gains or losses.</p>")
    else:
        body += [
            "<h2>Per-query nDCG@10 deltas</h2>",
            _img(plots.png(plots.delta_figure(scores)),
                 "histograms of per-query nDCG@10 delta vs the baseline"),
            "<h2>Biggest gains and losses</h2>",
        ]
        body += [_examples(name, names[0], runs, qrels, top_grade, queries, titles, scores)
                 for name in names[1:]]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)



def _img(png: bytes, alt: str) -> str:
    payload = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{payload}">'


def _intro(baseline: str) -> str:
    return (
        f"<p>Baseline: <b>{_e(baseline)}</b> (the first run); every other run is tested "
        f"against it. Intervals are {CONFIDENCE:.0%} percentile bootstrap intervals over "
        "queries; p is a two-sided paired randomisation test; W/T/L counts the queries a run "
        "wins, ties and loses against the baseline.</p>"
        "<p>The judgments were pooled from a lexical engine, so a ranker that surfaces "
        "products nobody judged is under-rated by plain nDCG, which counts them irrelevant. "
        "<b>condensed nDCG@10</b> drops unjudged products before scoring, and "
        "<b>judged@10</b> is the share of the top-10 slots holding a judged product: read "
        "them beside nDCG@10.</p>"
    )


def _p_value(p: float) -> str:
    return "&lt;0.001" if p < 0.001 else f"{p:.3f}"


def _metric_table(summaries: Sequence[RunSummary]) -> str:
    """One block of rows per metric, one row per run; a metric a run lacks reads '-'."""
    level = f"{CONFIDENCE:.0%}"
    heads = ["mean", f"{level} CI", "Δ vs baseline", f"Δ {level} CI", "p", "W/T/L"]
    rows = ["<table><thead><tr><th>metric</th><th>run</th>"
            + "".join(f'<th class="n">{h}</th>' for h in heads) + "</tr></thead>"]
    for metric in METRICS:
        counts = {s.metrics[metric].queries for s in summaries if metric in s.metrics}
        covered = f"{max(counts)} queries" if counts else "not defined on this split"
        rows.append(f'<tbody class="metric"><tr><th class="metric" rowspan="{len(summaries)}">'
                    f"{_e(metric)}<br><small class=muted>{covered}</small></th>")
        for i, s in enumerate(summaries):
            cells = ["-", "-"]
            if metric in s.metrics:
                m = s.metrics[metric]
                cells = [f"{m.mean:.4f}", f"[{m.low:.4f}, {m.high:.4f}]"]
            paired = (s.against_baseline or {}).get(metric)
            if paired is not None:
                cls = "up" if paired.low > 0 else "down" if paired.high < 0 else ""
                cells += [f'<span class="{cls}">{paired.delta:+.4f}</span>',
                          f"[{paired.low:+.4f}, {paired.high:+.4f}]", _p_value(paired.p_value),
                          f"{paired.wins}/{paired.ties}/{paired.losses}"]
            else:
                cells += ["baseline" if i == 0 else "-"] + ["-"] * 3
            tds = "".join(f'<td class="n">{c}</td>' for c in cells)
            rows.append(("" if i == 0 else "<tr>") + f"<td>{_e(s.name)}</td>{tds}</tr>")
        rows.append("</tbody>")
    return "\n".join(rows) + "</table>"


def _slice_section(scores: Mapping[str, PerQuery], slices: Mapping[str, Collection[str]]) -> str:
    names = list(scores)
    groups = {"all": set(scores[names[0]][MAIN]), **{k: set(v) for k, v in slices.items()}}
    means: dict[str, list[float]] = {}  # group -> mean nDCG@10 per run (NaN: empty group)
    sizes: dict[str, int] = {}
    for group, qids in groups.items():
        covered = qids & scores[names[0]][MAIN].keys()
        sizes[group] = len(covered)
        means[group] = [sum(scores[n][MAIN][q] for q in covered) / len(covered) if covered
                        else math.nan for n in names]
    head = "".join(f'<th class="n">{_e(n)}</th>' for n in ["queries", *names])
    rows = [f"<table><thead><tr><th>slice</th>{head}</tr></thead><tbody>"]
    for group, values in means.items():
        cells = "".join(f'<td class="n">{"-" if math.isnan(v) else f"{v:.4f}"}</td>'
                        for v in values)
        rows.append(f'<tr><td>{_e(group)}</td><td class="n">{sizes[group]}</td>{cells}</tr>')
    rows.append("</tbody></table>")
    alt = "mean nDCG@10 per run for each query slice"
    return (f"<p>Mean {MAIN} per run on each slice of the judged queries.</p>"
            + "\n".join(rows) + _img(plots.png(plots.slice_figure(names, means, sizes)), alt))


def _examples(
    name: str,
    baseline: str,
    runs: Mapping[str, Mapping[str, Sequence[str]]],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
    queries: Mapping[str, str],
    titles: Mapping[str, str],
    scores: Mapping[str, PerQuery],
) -> str:
    deltas = plots.deltas(scores, name, baseline)
    ordered = sorted(deltas.items(), key=lambda item: (item[1], item[0]))
    lost = [(q, d) for q, d in ordered if d < -TIE][:EXAMPLES]
    gained = [(q, d) for q, d in reversed(ordered) if d > TIE][:EXAMPLES]
    parts = [f"<h3>{_e(name)} against {_e(baseline)}</h3>"]
    for verb, picked in (("gained", gained), ("lost", lost)):
        if not picked:
            parts.append(f"<p class=muted>No query where {_e(name)} {verb} nDCG@10.</p>")
            continue
        blocks = "".join(
            _example(qid, delta, queries.get(qid, qid), baseline, name,
                     runs[baseline].get(qid, ()), runs[name].get(qid, ()),
                     qrels[qid], top_grade, titles)
            for qid, delta in picked)
        parts.append(f"<details><summary>The {len(picked)} queries where {_e(name)} {verb} "
                     f"most nDCG@10</summary>{blocks}</details>")
    return "\n".join(parts)


def _example(qid: str, delta: float, text: str, baseline: str, name: str,
             base_ranked: Sequence[str], run_ranked: Sequence[str],
             grades: Mapping[str, float], top_grade: float, titles: Mapping[str, str]) -> str:
    cls = "up" if delta > 0 else "down"
    rows = "".join(
        f"<tr><td class=n>{rank + 1}</td>{_product(base_ranked, rank, grades, top_grade, titles)}"
        f"{_product(run_ranked, rank, grades, top_grade, titles)}</tr>" for rank in range(SHOWN))
    return (f'<div class="example"><b>{_e(text)}</b> <span class="{cls}">{delta:+.3f}</span> '
            f"<small class=muted>({_e(qid)})</small><table><colgroup><col style=\"width:2.5em\">"
            f"</colgroup><tr><th>#</th><th>{_e(baseline)}</th><th>{_e(name)}</th></tr>{rows}"
            "</table></div>")


def _product(ranked: Sequence[str], rank: int, grades: Mapping[str, float], top_grade: float,
             titles: Mapping[str, str]) -> str:
    if rank >= len(ranked):
        return "<td class=muted>-</td>"
    pid = ranked[rank]
    grade = grades.get(pid)
    if grade is None:
        badge = '<span class="grade unjudged">unjudged</span>'
    else:
        relevant = is_relevant(grade, top_grade)
        cls = "relevant" if relevant else "irrelevant" if grade <= 0 else ""
        badge = f'<span class="grade {cls}">grade {grade:.3g}</span>'
    return f"<td>{_e(titles.get(pid, pid))} {badge}</td>"
