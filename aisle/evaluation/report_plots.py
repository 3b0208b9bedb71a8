"""The plots of ``aisle report``, drawn by matplotlib on bare Agg figures (no pyplot, no
global state, no display) and returned as PNG bytes. matplotlib is imported inside these
functions, so importing this module stays light."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from aisle.evaluation.compare import PerQuery
from aisle.evaluation.metrics import recall_at_k
from aisle.evaluation.stats import TIE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAIN = "ndcg@10"  # the metric slices and per-query deltas are read on
CURVE_DEPTH = 100  # the recall@k curve runs k = 1..CURVE_DEPTH, as deep as recall@100 looks


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def deltas(scores: Mapping[str, PerQuery], name: str, baseline: str) -> dict[str, float]:
    """Per-query nDCG@10 of run ``name`` minus the baseline's, on the queries both define."""
    base, run = scores[baseline][MAIN], scores[name][MAIN]
    return {qid: run[qid] - base[qid] for qid in base.keys() & run.keys()}


def _figure(width: float, height: float) -> Figure:
    # A bare Figure on the Agg canvas: no pyplot, no global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _label(text: str) -> str:
    # matplotlib reads "$...$" as maths and hides legend labels that start with "_".
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def recall_figure(
    runs: Mapping[str, Mapping[str, Sequence[str]]],
    qrels: Mapping[str, Mapping[str, float]],
    top_grade: float,
) -> Figure:
    fig = _figure(8, 4.2)
    ax = fig.add_subplot()
    ks = range(1, CURVE_DEPTH + 1)
    counted = 0
    for i, (name, ranked) in enumerate(runs.items()):
        curves = []
        for qid, grades in qrels.items():
            row = [recall_at_k(ranked.get(qid, ()), grades, k, top_grade) for k in ks]
            if row[0] is not None:  # None for every k: the query has no relevant product
                curves.append(row)
        counted = len(curves)
        mean = [sum(c[k - 1] or 0.0 for c in curves) / max(counted, 1) for k in ks]
        ax.plot(list(ks), mean, color=f"C{i}", label=_label(name), linewidth=1.8)
    ax.set(xscale="log", xlim=(1, CURVE_DEPTH), ylim=(0, 1), xlabel="k", ylabel="mean recall@k",
           title=f"recall@k, relevant = grade ≥ {top_grade:g} ({counted} queries)")
    ax.set_xticks([1, 2, 5, 10, 20, 50, 100], labels=["1", "2", "5", "10", "20", "50", "100"])
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def delta_figure(scores: Mapping[str, PerQuery]) -> Figure:
    names = list(scores)
    fig = _figure(8, 0.6 + 2.3 * (len(names) - 1))
    axes = fig.subplots(len(names) - 1, 1, sharex=True, squeeze=False)[:, 0]
    bins = np.linspace(-1.025, 1.025, 42)  # width 0.05, one bin centred on 0 for the ties
    for i, (ax, name) in enumerate(zip(axes, names[1:], strict=True), start=1):
        values = list(deltas(scores, name, names[0]).values())
        up = sum(v > TIE for v in values)
        down = sum(v < -TIE for v in values)
        ax.hist(values, bins=bins, color=f"C{i}", alpha=0.85)
        ax.axvline(0, color="black", linewidth=1, linestyle="--")
        ax.set_title(_label(f"{name} − {names[0]}: {up} up, {len(values) - up - down} same, "
                            f"{down} down"), fontsize=10)
        ax.set_ylabel("queries")
        ax.yaxis.get_major_locator().set_params(integer=True)  # counts: no 0.5 of a query
    axes[-1].set_xlabel("per-query nDCG@10 delta (run − baseline)")
    return fig


def slice_figure(names: Sequence[str], means: Mapping[str, list[float]],
                  sizes: Mapping[str, int]) -> Figure:
    groups = list(means)
    fig = _figure(max(5.0, min(11.0, 1.5 + len(groups) * (0.5 + 0.35 * len(names)))), 4)
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        heights = [0.0 if math.isnan(means[group][i]) else means[group][i] for group in groups]
        ax.bar(xs, heights, width, color=f"C{i}", label=_label(name))
    ax.set_xticks(range(len(groups)),
                  labels=[_label(f"{g}\n(n={sizes[g]})") for g in groups], fontsize=9)
    ax.set(ylabel=f"mean {MAIN}", ylim=(0, 1), title=f"{MAIN} by query slice")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=9)
    return fig
