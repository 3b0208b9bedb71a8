"""``aisle qrels``, ``aisle compare`` and ``aisle report``: TREC run files of one dataset split
in, judgments out as qrels, comparisons as a table, JSON or an HTML page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aisle.artifacts import atomic_write_text, check_not_input
from aisle.data.dataset import Dataset, load_dataset
from aisle.errors import AisleError, DataError
from aisle.evaluation.compare import RunSummary, compare_runs
from aisle.evaluation.run import split_qrels, split_top_grade
from aisle.evaluation.stats import RESAMPLES
from aisle.evaluation.trec import read_run, write_qrels

if TYPE_CHECKING:
    from aisle.retrieval.spelling import QuerySpeller

log = logging.getLogger(__name__)


def qrels_command(data: Path, split: str, out: Path) -> int:
    """Write ``split``'s judgments as TREC qrels; returns the grade scale (see trec.py)."""
    check_not_input(out, [data])
    ds = load_dataset(data)
    scale = write_qrels(split_qrels(ds, split), out)
    log.info("wrote %s: %s's %s judgments, grades x %d", out, ds.name, split, scale)
    return scale


def load_runs(paths: Sequence[Path]) -> dict[str, dict[str, list[str]]]:
    """Run name (its tag; the file's stem where two runs share a tag) -> query id -> ranked
    product ids, in the order given."""
    if not paths:
        raise AisleError("give at least one run file (aisle evaluate --run-out writes one)")
    seen: set[Path] = set()
    for p in paths:
        resolved = Path(p).resolve()
        if resolved in seen:
            raise AisleError(f"{p} is given twice; give each run file once")
        seen.add(resolved)
    read = [(Path(p), read_run(Path(p))) for p in paths]
    tags = [run.tag for _, run in read]
    runs: dict[str, dict[str, list[str]]] = {}
    for path, run in read:
        name = run.tag if tags.count(run.tag) == 1 else path.stem
        if name in runs:
            name = str(path)
        if name in runs:
            raise AisleError(f"{path} is given twice")
        runs[name] = run.ranked_ids()
    return runs


def check_runs(runs: dict[str, dict[str, list[str]]], ds: Dataset, split: str) -> None:
    """Refuse a run that names a query or a product ``ds`` does not have, or queries of
    another split than ``split``: its numbers would mean nothing for this split."""
    splits = dict(zip(ds.queries["query_id"], ds.queries["split"], strict=True))
    catalog = set(ds.products["product_id"])
    for name, ranked in runs.items():
        unknown = [q for q in ranked if q not in splits]
        if unknown:
            raise DataError(f"run {name!r} names {len(unknown)} queries {ds.name!r} does not "
                            f"have (e.g. {unknown[0]!r}); was it written for another dataset?")
        other = sorted({splits[q] for q in ranked} - {split})
        if other:
            raise DataError(f"run {name!r} holds queries of the {', '.join(other)} split, not "
                            f"only {split}; write it with aisle evaluate --split {split}")
        missing = {pid for hits in ranked.values() for pid in hits} - catalog
        if missing:
            raise DataError(f"run {name!r} names {len(missing)} products {ds.name!r}'s catalog "
                            f"does not have (e.g. {min(missing)!r}); was it written for another "
                            "catalog?")


# Past this a bootstrap's index table alone outgrows memory (8 bytes a query a resample).
MAX_RESAMPLES = 1_000_000


def check_resamples(resamples: int, seed: int = 0) -> None:
    """Fewer resamples give intervals and p-values too coarse to read (and 0 none at all);
    numpy's generators take no negative seed."""
    if not 100 <= resamples <= MAX_RESAMPLES:
        raise AisleError(f"--resamples must be from 100 to {MAX_RESAMPLES:,}, got {resamples}")
    if seed < 0:
        raise AisleError(f"--seed must be 0 or more, got {seed}")


def compare_command(
    data: Path, split: str, paths: Sequence[Path], resamples: int = RESAMPLES, seed: int = 0
) -> list[RunSummary]:
    check_resamples(resamples, seed)
    ds = load_dataset(data)
    qrels = split_qrels(ds, split)
    runs = load_runs(paths)
    check_runs(runs, ds, split)
    return compare_runs(runs, qrels, split_top_grade(ds, qrels), resamples, seed)


def _misspelt_speller(ds: Dataset) -> QuerySpeller:
    """The query speller aisle's base model would search with (its tokenizer's words are
    never corrected): what decides the report's misspelt slice."""
    from aisle.evaluation.slices import tokenizer_words
    from aisle.retrieval.retriever import catalog_speller
    from aisle.towers.model import base_model_path

    return catalog_speller(ds.products["title"], tokenizer_words(base_model_path()))


def report_command(
    data: Path,
    split: str,
    paths: Sequence[Path],
    out: Path,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Path:
    """Compare the runs and write the HTML page to ``out`` (atomically)."""
    from aisle.evaluation.report import render_report
    from aisle.evaluation.slices import query_slices

    check_resamples(resamples, seed)
    if Path(out).is_dir():
        raise AisleError(f"--out {out} is a directory; give the path of the .html file to write")
    check_not_input(out, [data, *paths])
    ds = load_dataset(data)
    qrels = split_qrels(ds, split)
    top_grade = split_top_grade(ds, qrels)
    runs = load_runs(paths)
    check_runs(runs, ds, split)
    summaries = compare_runs(runs, qrels, top_grade, resamples, seed)
    texts = ds.query_texts()
    judged = {qid: texts[qid] for qid in qrels if qid in texts}
    titles = dict(zip(ds.products["product_id"], ds.products["title"].astype(str), strict=True))
    html = render_report(
        title=f"{ds.name}, {split} split ({len(qrels):,} judged queries)",
        runs=runs,
        qrels=qrels,
        top_grade=top_grade,
        queries=judged,
        titles=titles,
        summaries=summaries,
        slices=query_slices(judged, _misspelt_speller(ds)),
    )
    atomic_write_text(Path(out), html)
    log.info("wrote report %s", out)
    return Path(out)
