"""Training pairs: (query text, product text) positives of the train split, with keys for
accidental-hit masking."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aisle.data.dataset import Dataset, judgments_at_least
from aisle.errors import DataError
from aisle.evaluation.metrics import GRADE_TOLERANCE
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.spelling import QuerySpeller
from aisle.towers.config import TowerConfig
from aisle.towers.text import product_texts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pairs:
    queries: list[str]
    products: list[str]
    query_keys: np.ndarray  # int64, equal for equal (normalised) query text
    product_keys: np.ndarray  # int64, equal for the same product
    # Per pair, the texts and product keys of products judged poor matches for its query
    # (hard negatives); empty lists when none are judged or the step does not use them.
    hard_texts: tuple[tuple[str, ...], ...] = ()
    hard_keys: tuple[tuple[int, ...], ...] = ()
    # Per pair, its query's teacher list for distillation (training/distill.py): product
    # texts and the teacher's scores, best first; empty when the step does not distil.
    teacher_texts: tuple[tuple[str, ...], ...] = ()
    teacher_scores: tuple[tuple[float, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.queries)


@dataclass(frozen=True)
class Batch:
    queries: list[str]
    products: list[str]
    query_keys: torch.Tensor  # (B,)
    # Keys of every product column: the B positives, then the hard negatives (B + H,).
    product_keys: torch.Tensor
    # Hard negatives appended after the B positives in ``products``.
    hard_count: int = 0
    # Distillation: the batch rows (one per distinct query) whose teacher lists follow, R of
    # them; ``teacher_texts`` holds R * M product texts, row-major; ``teacher_scores`` (R, M).
    teacher_rows: tuple[int, ...] = ()
    teacher_texts: tuple[str, ...] = ()
    teacher_scores: torch.Tensor | None = None


def count_positives(ds: Dataset, min_grade: float) -> int:
    """How many train-split judgments have ``grade >= min_grade``."""
    return len(judgments_at_least(ds.split_judgments("train"), min_grade))


def train_top_grade(ds: Dataset) -> float:
    """The highest grade of a train-split judgment (0 without any)."""
    grades = ds.split_judgments("train")["grade"]
    return float(grades.max()) if len(grades) else 0.0


def check_hard_negatives(max_grade: float, min_grade: float, key: str) -> None:
    """Refuse hard negatives (grade <= ``max_grade``, when >= 0) that reach the positives."""
    if 0 <= max_grade >= min_grade:
        raise DataError(
            f"{key} ({max_grade:g}) must be below the positive grade ({min_grade:g}): a product "
            "cannot be both a positive and a hard negative"
        )


def positive_pairs(
    ds: Dataset,
    min_grade: float,
    tower: TowerConfig,
    max_pairs: int = 0,
    seed: int = 0,
    hard_negative_max_grade: float | None = None,
    lexical_negatives: tuple[int, int] | None = None,
    catalog_pairs: int = 0,
    lexical_positives: int = 0,
    catalog_sizes: bool = False,
    speller: QuerySpeller | None = None,
) -> Pairs:
    """Judged (query, product) pairs of the train split with ``grade >= min_grade``.

    With ``hard_negative_max_grade`` set, each pair also carries the products judged for the
    same query with ``grade <= hard_negative_max_grade``: the near misses a lexical engine
    surfaced and raters turned down, which random in-batch negatives rarely are. With
    ``lexical_negatives = (skip, depth)``, it also carries its query's BM25 hits at ranks
    ``[skip, depth)`` over the whole catalog that were not judged for that query at all.
    ``catalog_pairs`` adds that many self-supervised pairs (``catalog_pseudo_queries``; with
    ``catalog_sizes`` their pseudo-queries may keep a title's sizes).
    ``lexical_positives = N`` adds, for each query with a positive, its top-N BM25 hits over
    the whole catalog that were not judged for it, as positives: BM25's view of what the
    query is after, over products the judgments never showed a rater. ``speller`` corrects
    the train queries first (what they will be served as).
    """
    train = ds.queries[ds.queries["split"] == "train"]
    if speller is not None:
        corrected = train["query"].map(speller.rewrite)
        log.info(
            "query speller changed %d of %d train queries",
            int((corrected != train["query"]).sum()),
            len(train),
        )
        train = train.assign(query=corrected)
    judged = ds.judgments.merge(train[["query_id", "query"]], on="query_id")
    j = judgments_at_least(judged, min_grade)
    if j.empty:
        raise DataError(
            f"dataset {ds.name!r} has no train-split judgments with grade >= {min_grade}; "
            "lower the step's positive grade or check the split column"
        )
    if max_pairs and len(j) > max_pairs:
        j = j.sample(n=max_pairs, random_state=seed)
    hard: dict[str, list[str]] = {}
    if hard_negative_max_grade is not None:
        check_hard_negatives(hard_negative_max_grade, min_grade, "hard_negative_max_grade")
        poor = judged[judged["grade"] <= hard_negative_max_grade + GRADE_TOLERANCE]
        for qid, pid in zip(poor["query_id"], poor["product_id"], strict=True):
            hard.setdefault(str(qid), []).append(str(pid))
    # BM25 mining of the judged queries, one index and one search for both uses:
    # near misses (hard negatives) and pseudo-positives.
    windows = [lexical_negatives] if lexical_negatives is not None else []
    if lexical_negatives is not None and lexical_positives > lexical_negatives[0]:
        raise DataError(
            f"lexical_positives ({lexical_positives}) must not exceed lexical_negative_skip "
            f"({lexical_negatives[0]}): BM25's top ranks cannot be both positives and "
            "negatives of one query"
        )
    if lexical_positives:
        windows.append((0, lexical_positives))
    mined = unjudged_bm25_hits(ds, j, tower, windows) if windows else []
    if lexical_negatives is not None:
        for qid, pids in mined[0].items():
            hard.setdefault(qid, []).extend(pids)
    judged_pairs = len(j)
    if lexical_positives:
        text_of = dict(zip(j["query_id"].astype(str), j["query"], strict=False))
        extra = [(q, text_of[q], p) for q, pids in mined[-1].items() for p in pids]
        j = pd.concat(
            [j, pd.DataFrame(extra, columns=["query_id", "query", "product_id"])],
            ignore_index=True,
        )
    # Catalog and lexical pairs join after the hard negatives are found: those belong to
    # judged pairs.
    mined_pairs = len(j) - judged_pairs
    if catalog_pairs:
        catalog = catalog_pseudo_queries(ds, catalog_pairs, seed, catalog_sizes)
        j = pd.concat([j, catalog], ignore_index=True)
    hard_pids = [p for v in hard.values() for p in v]
    needed = pd.unique(pd.concat([j["product_id"], pd.Series(hard_pids, dtype=object)]))
    products = ds.products.set_index("product_id").loc[needed].reset_index()
    text = dict(
        zip(
            products["product_id"],
            product_texts(products, tower.product_fields, tower.max_description_chars),
            strict=True,
        )
    )
    key = {pid: i for i, pid in enumerate(products["product_id"])}
    normalised = j["query"].str.lower().str.split().str.join(" ")
    hard_ids = [hard.get(q, []) for q in j["query_id"]]
    log.info(
        "%d positive pairs with grade >= %s, %d BM25 positives and %d catalog pairs over %d "
        "queries; %d pairs have hard negatives",
        judged_pairs,
        min_grade,
        mined_pairs,
        len(j) - judged_pairs - mined_pairs,
        normalised.nunique(),
        sum(1 for h in hard_ids if h),
    )
    return Pairs(
        queries=j["query"].tolist(),
        products=[text[p] for p in j["product_id"]],
        query_keys=pd.factorize(normalised)[0].astype(np.int64),
        product_keys=np.array([key[p] for p in j["product_id"]], dtype=np.int64),
        hard_texts=tuple(tuple(text[p] for p in h) for h in hard_ids) if hard else (),
        hard_keys=tuple(tuple(key[p] for p in h) for h in hard_ids) if hard else (),
    )


# Function words and dimension marks: a query cut from a title keeps its content words.
_FILLER = frozenset(
    (  # noqa: SIM905 (a word list reads best as words)
        "a an and as at by for from in in. inch of on or the to with without x ft. ft oz. lb. "
        "w w/ - & &amp; | / (1-pack)"
    ).split()
)


# Unit words that follow a number in a title ("19/32 in.", "1.9 cu. ft.", "10.1 oz."): with
# ``sizes``, a pseudo-query keeps them with their number, as one size.
_UNITS = frozenset(
    (  # noqa: SIM905 (a word list reads best as words)
        "in. in inch ft. ft feet cu. sq. gal. gal oz. oz fl. lb. lbs. lb qt. pt. mm cm m "
        "w v amp watt volt btu gpm mil"
    ).split()
)
_NUMBER = re.compile(r"^[#\d][\d./-]*$")


def _title_terms(title: str, sizes: bool) -> list[str]:
    """A title's content terms, in order: words with a letter, and with ``sizes`` also each
    number joined to the unit words that follow it ("19/32 in.", "1.9 cu. ft."), or alone
    when none follows (a count, a gauge: "2" of "2 Stranded THHN")."""
    words = [w.strip('()[];,:*"') for w in title.lower().split()]
    terms: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if sizes and _NUMBER.match(word) and any(c.isdigit() for c in word):
            units: list[str] = []
            while i < len(words) and len(units) < 2 and words[i] in _UNITS:
                units.append(words[i])
                i += 1
            terms.append(" ".join([word, *units]))
        elif word not in _FILLER and any(c.isalpha() for c in word):
            terms.append(word)
    return terms


def pseudo_query(title: str, rng: np.random.Generator, sizes: bool = False) -> str:
    """A shopper-like query cut from a product title: 2-4 of its content terms, in title
    order ("" when it has none).

    Real queries pick a few of a title's words, not always next to each other ("refrigerator
    freezer stainless steel" for "GE 23.2 cu. ft. Bottom Freezer Refrigerator in Stainless
    Steel"), so half the cuts are a contiguous run of content terms and half a scattered
    subset. Content terms are words with a letter; with ``sizes``, a number with the unit
    words after it ("23.2 cu. ft.") is one more, since a quarter of real queries name a size
    or a model number ("19/32 osb", "12 inch hinge").
    """
    words = _title_terms(title, sizes)
    if len(words) <= 2:
        return " ".join(words)
    size = int(rng.integers(2, min(4, len(words)) + 1))
    if rng.random() < 0.5:
        start = int(rng.integers(0, len(words) - size + 1))
        return " ".join(words[start : start + size])
    picks = np.sort(rng.choice(len(words), size=size, replace=False))
    return " ".join(words[i] for i in picks)


def catalog_pseudo_queries(ds: Dataset, count: int, seed: int, sizes: bool = False) -> pd.DataFrame:
    """``count`` (pseudo-query, product) pairs over distinct catalog products: broad, noisy,
    self-supervised positives that reach products no judged query covers (the judgments of a
    split by query touch few of the other splits' products). Only titles are used; no
    query or judgment of any split. ``sizes``: see ``pseudo_query``. Columns as judged pairs:
    query_id, query, product_id."""
    rng = np.random.default_rng([seed, 0xCA7])
    catalog = ds.products[ds.products["title"].str.strip() != ""]
    n = min(count, len(catalog))
    rows = catalog.iloc[np.sort(rng.choice(len(catalog), size=n, replace=False))]
    queries = [pseudo_query(t, rng, sizes) for t in rows["title"]]
    out = pd.DataFrame(
        {
            "query_id": [f"catalog:{p}" for p in rows["product_id"]],
            "query": queries,
            "product_id": rows["product_id"].to_numpy(),
        }
    )
    return out[out["query"] != ""]


def lexical_near_misses(
    ds: Dataset, pairs: pd.DataFrame, tower: TowerConfig, skip: int, depth: int
) -> dict[str, list[str]]:
    """Per query id of ``pairs``, the product ids BM25 ranks at ``[skip, depth)`` over the
    whole catalog, less every product judged for that query (whatever its grade)."""
    return unjudged_bm25_hits(ds, pairs, tower, [(skip, depth)])[0]


def unjudged_bm25_hits(
    ds: Dataset, pairs: pd.DataFrame, tower: TowerConfig, windows: Sequence[tuple[int, int]]
) -> list[dict[str, list[str]]]:
    """``lexical_near_misses`` for each ``(skip, depth)`` of ``windows``, from one BM25 index
    and one search per query."""
    for skip, depth in windows:
        if not 0 <= skip < depth:
            raise DataError(
                f"lexical negatives need 0 <= skip < depth, got skip={skip}, depth={depth}"
            )
    catalog = ds.products
    texts = product_texts(catalog, tower.product_fields, tower.max_description_chars)
    # Exact terms only: a misspelt train query mines nothing rather than a guess's hits.
    index = BM25Index.build(texts, catalog["product_id"].astype(str).tolist(), fuzzy=False)
    queries = pairs.drop_duplicates("query_id")
    judged: dict[str, set[str]] = {}
    for qid, pid in zip(ds.judgments["query_id"], ds.judgments["product_id"], strict=True):
        judged.setdefault(str(qid), set()).add(str(pid))
    hits = index.search(queries["query"].tolist(), max(depth for _, depth in windows))
    found: list[dict[str, list[str]]] = [{} for _ in windows]
    for qid, ranked in zip(queries["query_id"].astype(str), hits, strict=True):
        seen = judged.get(qid, set())
        for out, (skip, depth) in zip(found, windows, strict=True):
            picks = [pid for pid, _ in ranked[skip:depth] if pid not in seen]
            if picks:
                out[qid] = picks
    for out, (skip, depth) in zip(found, windows, strict=True):
        log.info(
            "unjudged BM25 hits at ranks %d-%d: %d of %d queries have some, %.1f on average",
            skip,
            depth,
            len(out),
            len(queries),
            sum(map(len, out.values())) / max(1, len(out)),
        )
    return found


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled row indices for one epoch, cut into full batches (a ragged tail is dropped:
    a tiny last batch has too few negatives to be worth a step)."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    usable = (n // batch_size) * batch_size if n >= batch_size else n
    return [perm[i : i + batch_size] for i in range(0, usable, batch_size)]


def _teacher_part(pairs: Pairs, rows: np.ndarray, limit: int, size: int) -> dict[str, object]:
    """The first ``limit`` rows of a batch with distinct queries and full (``size``-long)
    teacher lists."""
    if not pairs.teacher_texts or limit <= 0:
        return {}
    picked: list[int] = []
    seen: set[int] = set()
    for r, i in enumerate(rows.tolist()):
        key = int(pairs.query_keys[i])
        if key not in seen and len(pairs.teacher_texts[i]) == size:
            seen.add(key)
            picked.append(r)
            if len(picked) == limit:
                break
    if not picked:
        return {}
    return {
        "teacher_rows": tuple(picked),
        "teacher_texts": tuple(t for r in picked for t in pairs.teacher_texts[rows[r]]),
        "teacher_scores": torch.tensor(
            [pairs.teacher_scores[rows[r]] for r in picked], dtype=torch.float32
        ),
    }


def iter_batches(
    pairs: Pairs,
    order: list[np.ndarray],
    start: int = 0,
    seed: int = 0,
    epoch: int = 0,
    teacher_queries: int = 0,
) -> Iterator[Batch]:
    """Batches in ``order`` from index ``start``; a pair with judged hard negatives adds one,
    drawn by a generator seeded per (seed, epoch, batch) so a resumed run draws the same.
    With teacher lists, up to ``teacher_queries`` rows of distinct queries bring theirs."""
    full = max(map(len, pairs.teacher_texts), default=0)
    for b, rows in enumerate(order[start:], start=start):
        texts = [pairs.products[i] for i in rows]
        keys = pairs.product_keys[rows].tolist()
        hard = 0
        if pairs.hard_texts:
            rng = np.random.default_rng([seed, epoch, b])
            for i in rows:
                options = pairs.hard_texts[i]
                if options:
                    pick = int(rng.integers(len(options)))
                    texts.append(options[pick])
                    keys.append(pairs.hard_keys[i][pick])
                    hard += 1
        yield Batch(
            queries=[pairs.queries[i] for i in rows],
            products=texts,
            query_keys=torch.from_numpy(pairs.query_keys[rows]),
            product_keys=torch.tensor(keys, dtype=torch.int64),
            hard_count=hard,
            **_teacher_part(pairs, rows, teacher_queries, full),  # type: ignore[arg-type]
        )
