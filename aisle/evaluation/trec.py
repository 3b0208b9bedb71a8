"""TREC run and qrels files: the formats trec_eval, ir_measures, ranx and pytrec_eval read.

A run line is ``qid Q0 docid rank score tag``; a qrels line is ``qid 0 docid grade``, with an
integer grade. These tools order a query's products by score, not by the rank column (trec_eval
breaks ties by docid), so ``write_run`` writes scores that strictly decrease down each ranking:
a score that ties the one above it, exceeds it, or sits within 1e-6 (relative) below it, is
written 1e-6 below it. Some readers hold scores as float32 (pytrec_eval, under ir_measures):
a step under float32's resolution (1.2e-7) would read as a tie again. The order in the file is
then the order aisle ranked, whoever reads it.

aisle's grades are floats (homedepot's are 0..2 in steps of 0.33); qrels grades are integers.
``write_qrels`` multiplies every grade by the smallest power of ten that makes them all whole
(100 for homedepot: 1.67 -> 167). nDCG with linear gain is unchanged by a common scale, and
recall and MRR count grades at or above the top grade times that scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aisle.artifacts import atomic_write_text
from aisle.errors import DataError

# Past 10^6 a grade is not a label someone typed; refuse rather than write huge integers.
MAX_SCALE_DIGITS = 6
# The least gap (relative) between successive scores in a written run: well above float32's
# resolution, well below any difference a ranker's scores mean something by.
TIE_STEP = 1e-6


@dataclass(frozen=True)
class TrecRun:
    tag: str
    # query id -> (product id, score), best first, as the file's scores order them
    rankings: dict[str, list[tuple[str, float]]]

    def ranked_ids(self) -> dict[str, list[str]]:
        return {qid: [pid for pid, _ in hits] for qid, hits in self.rankings.items()}


def _strictly_decreasing(scores: Iterable[float]) -> Iterator[float]:
    previous: float | None = None
    for raw in scores:
        score = float(raw)
        if not math.isfinite(score):
            raise DataError(f"a run's scores must be finite, got {score}")
        if previous is not None:
            step = TIE_STEP * max(abs(previous), 1.0)
            score = min(score, previous - step)
        previous = score
        yield score


def _one_word(value: str, what: str) -> str:
    """``value`` as a TREC field: one word, or trec_eval and ranx would split it."""
    if not value or any(c.isspace() for c in value):
        raise DataError(f"a TREC file's {what} is one word with no spaces, got {value!r}")
    return value


def _each_once(qid: str, hits: Sequence[tuple[str, float]]) -> None:
    """A product listed twice in one ranking: ``read_run`` (and trec_eval's readers) would
    refuse or merge it, so the file would not read back as the ranking it was written from."""
    seen: set[str] = set()
    for pid, _ in hits:
        if pid in seen:
            raise DataError(f"query {qid}'s ranking lists product {pid} twice; a run names "
                            "each product once a query")
        seen.add(pid)


def run_lines(run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> Iterator[str]:
    _one_word(tag, "run tag")
    for qid, hits in run.items():
        _one_word(qid, "query id")
        _each_once(qid, hits)
        scores = _strictly_decreasing(score for _, score in hits)
        for rank, ((pid, _), score) in enumerate(zip(hits, scores, strict=True), start=1):
            yield f"{qid} Q0 {_one_word(pid, 'product id')} {rank} {score!r} {tag}"


def write_run(run: Mapping[str, Sequence[tuple[str, float]]], path: Path, tag: str) -> None:
    """One line per retrieved product, ``qid Q0 docid rank score tag``, written atomically."""
    lines = list(run_lines(run, tag))
    atomic_write_text(Path(path), "\n".join(lines) + ("\n" if lines else ""))


def _fields(path: Path, expected: int, what: str) -> Iterator[tuple[int, list[str]]]:
    try:
        # utf-8-sig: a byte-order mark (some Windows editors write one) is not part of the
        # first query id.
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist") from None
    except UnicodeDecodeError:
        raise DataError(f"{what} file {path} is not UTF-8 text") from None
    except OSError as e:  # a directory, no permission
        raise DataError(f"{what} file {path} cannot be read ({e})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != expected:
            hint = ""
            if what == "run" and len(fields) == 3:
                hint = (" (qid, docid, rank: the format older aisle versions wrote; write the "
                        "run again with aisle evaluate --run-out)")
            raise DataError(
                f"{path}:{number}: a TREC {what} line has {expected} fields, this one has "
                f"{len(fields)}{hint}: {line[:120]!r}"
            )
        yield number, fields


def read_run(path: Path) -> TrecRun:
    """A TREC run file, each query's products ordered by score (ties: docid descending, as
    trec_eval orders them). Refuses a file with no lines, more than one tag, a repeated
    (qid, docid) pair or a score that is not a number."""
    rows: dict[str, list[tuple[str, float]]] = {}
    seen: set[tuple[str, str]] = set()
    tags: set[str] = set()
    for number, (qid, _, pid, _rank, score_text, tag) in _fields(path, 6, "run"):
        try:
            score = float(score_text)
        except ValueError:
            raise DataError(f"{path}:{number}: the score {score_text!r} is not a number") from None
        if not math.isfinite(score):  # nan would sort nowhere in particular
            raise DataError(f"{path}:{number}: the score {score_text!r} is not a finite number")
        if (qid, pid) in seen:
            raise DataError(f"{path}:{number}: product {pid} is listed twice for query {qid}")
        seen.add((qid, pid))
        tags.add(tag)
        rows.setdefault(qid, []).append((pid, score))
    if not rows:
        raise DataError(f"run file {path} holds no run lines")
    if len(tags) > 1:
        raise DataError(f"run file {path} mixes run tags {sorted(tags)}; one run per file")
    for hits in rows.values():
        hits.sort(key=lambda h: h[0], reverse=True)
        hits.sort(key=lambda h: h[1], reverse=True)  # stable: ties keep docid descending
    return TrecRun(tag=tags.pop(), rankings=rows)


def qrels_scale(grades: Iterable[float]) -> int:
    """The smallest power of ten that turns every grade into a whole number, with no
    positive grade rounded to 0 (that would make a relevant product irrelevant)."""
    values = list(grades)
    for digits in range(MAX_SCALE_DIGITS + 1):
        scale = 10**digits
        if all(abs(g * scale - round(g * scale)) <= 1e-6 and (g <= 0 or round(g * scale) > 0)
               for g in values):
            return scale
    raise DataError(
        f"grades need more than {MAX_SCALE_DIGITS} decimals to become integers; "
        "round them in judgments.csv"
    )


def write_qrels(qrels: Mapping[str, Mapping[str, float]], path: Path) -> int:
    """``qid 0 docid grade`` for every judged pair (grade-0 pairs too: they are judged), the
    grades scaled to integers; returns the scale."""
    scale = qrels_scale(g for grades in qrels.values() for g in grades.values())
    if any(g < 0 for grades in qrels.values() for g in grades.values()):
        raise DataError("qrels grades must be >= 0")
    lines = [
        f"{_one_word(qid, 'query id')} 0 {_one_word(pid, 'product id')} {round(grade * scale)}"
        for qid, grades in qrels.items()
        for pid, grade in grades.items()
    ]
    atomic_write_text(Path(path), "\n".join(lines) + ("\n" if lines else ""))
    return scale


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A TREC qrels file: query id -> {docid: integer grade}. A pair repeated with the same
    grade is read once; one repeated with another grade is refused, naming both lines (which
    grade a metric should use is the file's author's call, not the reader's)."""
    out: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    for number, (qid, _, pid, grade_text) in _fields(path, 4, "qrels"):
        try:
            grade = int(grade_text)
        except ValueError:
            raise DataError(
                f"{path}:{number}: the grade {grade_text!r} is not an integer"
            ) from None
        grades = out.setdefault(qid, {})
        if pid in grades and grades[pid] != grade:
            raise DataError(
                f"{path}:{number}: product {pid} of query {qid} is graded {grade} here and "
                f"{grades[pid]} on line {lines[qid, pid]}; keep one grade per pair"
            )
        grades[pid] = grade
        lines.setdefault((qid, pid), number)
    if not out:
        raise DataError(f"qrels file {path} holds no judgments")
    return out
