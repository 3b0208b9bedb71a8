"""``Retriever``: one loaded index and its model, searched dense, lexical or hybrid.

The one query-time path: ``aisle search``, ``aisle evaluate``, ``aisle tune-fusion``, training's
dev checks and the service each build a ``Retriever`` (the service once per index snapshot) and
search through it, so the same typed query gets the same products in the same order from all of
them. Queries are prepared once (``aisle.retrieval.query``): the dense and the lexical side see
the same normalised, spell-corrected text.

Everything that depends only on the index and the model (the query speller, the fusion
settings, the product titles, each partition's retriever) is built once here, never per query.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from aisle.errors import AisleError
from aisle.retrieval.config import FusionConfig, Mode
from aisle.retrieval.filters import Filter
from aisle.retrieval.fusion import convex_fusion_arrays, fuse
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.query import PreparedQuery, QueryPreparer
from aisle.retrieval.querytext import case_blind
from aisle.retrieval.rerank import RERANK_FIELDS, RerankStage, combine, rerank_pairs, rerank_text
from aisle.retrieval.spelling import MIN_WORD, QuerySpeller
from aisle.retrieval.store import Filtered, Hit, ProductIndex
from aisle.towers.config import Backend, QueryTower, TowerConfig
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)

# Whether BM25 also maps a query term it lacks onto its nearest indexed term, after the query
# speller has corrected the query (bench/query_path.py measures both on dev).
MATCH_TERMS = True

Ranked = list[tuple[str, float]]
# (query texts, k) -> ranked (product_id, score) lists: what the evaluator takes.
RankFn = Callable[[Sequence[str], int], list[Ranked]]


@dataclass(frozen=True)
class Found:
    """One query's answer: its hits, the mode that produced them and the query as searched."""

    hits: list[Hit]
    mode: Mode
    query: PreparedQuery
    reranked: int = 0  # first-stage products the cross-encoder re-ranked (0: none)


class Retriever:
    def __init__(
        self,
        model: TwoTowerModel,
        index: ProductIndex,
        preparer: QueryPreparer,
        fusion: FusionConfig | None = None,
        lexical: BM25Index | None = None,
        match_terms: bool = MATCH_TERMS,
        reranker: RerankStage | None = None,
    ) -> None:
        """``fusion``: hybrid's settings (default: the index's, set by ``aisle tune-fusion``).
        ``lexical``: a BM25 index to use instead of the index's own (an in-memory catalog).
        ``match_terms``: BM25 maps a query term it lacks onto its nearest indexed term.
        ``reranker``: a cross-encoder that re-ranks each search's first products
        (``aisle.retrieval.rerank``); None: the first stage's order is the answer."""
        index.check_model(model.fingerprint, model.ref)
        index.check_runtime(model.runtime)
        self.model = model
        self.index = index
        self.preparer = preparer
        self._fusion = fusion or index.fusion()
        self._lexical = lexical
        self.match_terms = match_terms
        self.reranker = reranker
        self._partitions: dict[str, Retriever] = {}
        self._lock = threading.Lock()

    @property
    def fusion(self) -> FusionConfig:
        """Hybrid's settings, fixed for this retriever (``fusion_ids`` is built for them)."""
        return self._fusion

    @property
    def has_lexical(self) -> bool:
        return self._lexical is not None or self.index.has_lexical

    @property
    def default_mode(self) -> Mode:
        """Hybrid wherever the index carries BM25 (every index ``aisle index`` builds): the
        best ranking measured (docs/results.md); dense for a dense-only index."""
        return "hybrid" if self.has_lexical else "dense"

    @functools.cached_property
    def lexical(self) -> BM25Index:
        return self._lexical if self._lexical is not None else self.index.lexical

    @functools.cached_property
    def titles(self) -> dict[str, str]:
        return self.index.title_of

    def partition(self, name: str) -> Retriever:
        """The retriever of partition ``name``: its own vectors and BM25, the same preparer."""
        with self._lock:
            if name not in self._partitions:
                part = self.index.partition(name)
                self._partitions[name] = Retriever(self.model, part, self.preparer,
                                                   part.fusion(), match_terms=self.match_terms,
                                                   reranker=self.reranker)
            return self._partitions[name]

    def partition_loaded(self, name: str | None) -> bool:
        """True when searching partition ``name`` (None: the whole index) reads nothing."""
        return name is None or self.index.partition_loaded(name)

    def prepare(self, texts: Sequence[str]) -> list[PreparedQuery]:
        return self.preparer.prepare_all(texts)

    def embed(self, queries: Sequence[PreparedQuery]) -> np.ndarray:
        return self.model.encode_query([q.text for q in queries]).numpy()

    def search(
        self,
        queries: Sequence[PreparedQuery],
        k: int,
        mode: Mode | None = None,
        vectors: np.ndarray | None = None,
        filters: Filter | None = None,
        rerank_depth: int | None = None,
        rerank_deadline: float | None = None,
    ) -> list[Found]:
        """The top ``k`` of each prepared query in ``mode`` (None: ``default_mode``).
        ``vectors``: the queries' embeddings when the caller has them (the service's cache).
        ``filters``: only products meeting them, on both sides before their top k (raises
        ``FilterError`` for a field the index lacks or a value of the wrong type).
        ``rerank_depth``: first-stage products the cross-encoder re-ranks (None: the
        reranker's own depth; 0: none); needs a reranker when > 0. ``rerank_deadline``: a
        ``time.monotonic()`` instant past which queries keep their first-stage order."""
        if k < 1:
            raise AisleError(f"k must be >= 1, got {k}")
        depth = self.rerank_depth(rerank_depth)
        mode = mode or self.default_mode
        if mode != "dense" and not self.has_lexical:
            raise AisleError(f"{self.index.root} has no BM25 index: it searches dense only")
        where = self.index.select(filters) if filters else None
        if not queries:
            return []
        if mode == "dense" and not depth:
            rows = self.dense(queries, k, vectors, where)
            return [Found(hits, mode, q) for hits, q in zip(rows, queries, strict=True)]
        first_k = max(k, depth)
        if mode == "dense":
            ranked = self.index.ranked(self.embed(queries) if vectors is None else vectors,
                                       first_k, where)
        elif mode == "lexical":
            ranked = self.lexical_ranked(queries, first_k, where)
        else:
            ranked = self.hybrid_ranked(queries, first_k, vectors, where)
        done = [min(depth, len(r)) for r in ranked]
        if depth:
            reranked = self.rerank(queries, ranked, k, depth, rerank_deadline)
            # A query past the deadline kept its first-stage list (the same objects).
            done = [0 if new is old else n for new, old, n in zip(reranked, ranked, done,
                                                                   strict=True)]
            ranked = reranked
        titles = self.titles
        return [Found([Hit(p, titles.get(p, ""), s) for p, s in row[:k]], mode, q, n)
                for row, q, n in zip(ranked, queries, done, strict=True)]

    def rerank_depth(self, asked: int | None) -> int:
        """The re-ranking depth a search runs with: ``asked``, else the reranker's (0 without
        one); refuses a depth > 0 with no reranker. 0 for a reranker of weight 0: it leaves
        every first-stage order as it is, so nothing is worth scoring."""
        if asked is not None and asked < 0:
            raise AisleError(f"rerank depth must be >= 0 (0 = off), got {asked}")
        if self.reranker is None:
            if asked:
                raise AisleError("re-ranking needs a cross-encoder: pass --rerank DIR (aisle "
                                 "rerank train writes one), or a rerank depth of 0")
            return 0
        if self.reranker.config.weight == 0:
            return 0
        return self.reranker.config.depth if asked is None else asked

    def rerank(self, queries: Sequence[PreparedQuery], ranked: Sequence[Ranked], k: int,
               depth: int, deadline: float | None = None) -> list[Ranked]:
        """Each first-stage ranking with its first ``depth`` products re-ranked by the
        cross-encoder against its query; top ``k``. ``deadline`` (a ``time.monotonic()``
        instant): a query whose turn comes after it (queries take turns on the cross-encoder,
        across threads too) keeps its first-stage order (marked by ``reranked`` in
        ``search``'s answer)."""
        if self.reranker is None:
            raise AisleError("this retriever has no cross-encoder to re-rank with")
        heads = [[p for p, _ in r[:depth]] for r in ranked]
        text_of = self.rerank_texts(sorted({p for h in heads for p in h}))
        pairs = [rerank_pairs(q.text, h, text_of) for q, h in zip(queries, heads, strict=True)]
        config = replace(self.reranker.config, depth=depth)
        scorer, turn = self.reranker.scorer, self.reranker.turn
        # One call per query, never pairs of several queries together: int8 quantises each
        # call's activations with the call's own scales, so a query's scores would depend on
        # what else was searched with it (the service's batches, the evaluator's).
        scores: list[np.ndarray | None] = []
        for p in pairs:
            if deadline is None:
                with turn:
                    scores.append(scorer.score(p))
                continue
            # Waiting for the turn is spent budget, and a query waits no longer than it has
            # left: a late one is answered at once, in first-stage order.
            # (no longer than threading allows: a budget of inf is none, and past ~292
            # years acquire raises OverflowError)
            left = min(deadline - time.monotonic(), threading.TIMEOUT_MAX)
            if left <= 0 or not turn.acquire(timeout=left):
                scores.append(None)
                continue
            try:
                scores.append(scorer.score(p))
            finally:
                turn.release()
        # A skipped query's list is returned as it came (``search`` tells it by identity).
        return [r if s is None else combine(r, s, k, config)
                for r, s in zip(ranked, scores, strict=True)]

    def rerank_texts(self, product_ids: Sequence[str]) -> dict[str, str]:
        """What the cross-encoder reads of each product: its title and stored fields."""
        names = [n for n in RERANK_FIELDS if n != "title" and n in self.index.fields.names]
        values = self.index.field_values(list(product_ids), names) if names else [
            {} for _ in product_ids]
        titles = self.titles
        return {p: rerank_text({"title": titles.get(p, ""), **v})
                for p, v in zip(product_ids, values, strict=True)}

    def search_texts(self, texts: Sequence[str], k: int, mode: Mode | None = None,
                     filters: Filter | None = None, rerank_depth: int | None = None
                     ) -> list[Found]:
        """``search`` from typed text."""
        return self.search(self.prepare(texts), k, mode, filters=filters,
                           rerank_depth=rerank_depth)

    def dense(self, queries: Sequence[PreparedQuery], k: int,
              vectors: np.ndarray | None = None, where: Filtered | None = None
              ) -> list[list[Hit]]:
        return self.index.search(self.embed(queries) if vectors is None else vectors, k, where)

    def lexical_ranked(self, queries: Sequence[PreparedQuery], k: int,
                       where: Filtered | None = None) -> list[Ranked]:
        return self.lexical.search([q.text for q in queries], k, self.match_terms,
                                   None if where is None else where.rows)

    def candidates(
        self, queries: Sequence[PreparedQuery], k: int, vectors: np.ndarray | None = None,
        where: Filtered | None = None,
    ) -> tuple[list[Ranked], list[Ranked]]:
        """Each side's ranking to its hybrid depth (at least ``k``), before fusion."""
        fusion = self.fusion
        dense = self.index.ranked(self.embed(queries) if vectors is None else vectors,
                                  max(k, fusion.dense_depth), where)
        return dense, self.lexical_ranked(queries, max(k, fusion.lexical_depth), where)

    def hybrid_ranked(
        self, queries: Sequence[PreparedQuery], k: int, vectors: np.ndarray | None = None,
        where: Filtered | None = None,
    ) -> list[Ranked]:
        """Each query's hybrid ranking to ``k``: ``fuse`` over ``candidates``, the same
        products in the same order with the same scores. A convex fusion runs on arrays of
        row numbers (``convex_fusion_arrays``), not lists of (id, score) pairs: fusing ~400
        candidates a query was most of a hybrid search's time under the GIL."""
        fusion = self.fusion
        names = self.fusion_ids
        if names is None:  # RRF, no BM25, or a product id on two rows or documents
            dense, lexical = self.candidates(queries, k, vectors, where)
            return [fuse(d, lx, k, fusion) for d, lx in zip(dense, lexical, strict=True)]
        rows_of_docs, pids = names
        dense_rows = self.index.ranked_rows(self.embed(queries) if vectors is None else vectors,
                                            max(k, fusion.dense_depth), where)
        lexical_docs = self.lexical.search_docs([q.text for q in queries],
                                                max(k, fusion.lexical_depth), self.match_terms,
                                                None if where is None else where.rows)
        depths = (fusion.dense_depth, fusion.lexical_depth)
        out: list[Ranked] = []
        for (rows, d_scores), (docs, l_scores) in zip(dense_rows, lexical_docs, strict=True):
            sides = (rows, d_scores), (rows_of_docs[docs], l_scores)
            fused = convex_fusion_arrays(*sides, fusion.weight, k, depths)
            if fused is None:  # a score that is not finite: the list form decides
                d_list, l_list = (list(zip(pids[i].tolist(), s.tolist(), strict=True))
                                  for i, s in sides)
                out.append(fuse(d_list, l_list, k, fusion))
                continue
            ids, scores = fused
            out.append(list(zip(pids[ids].tolist(), scores.tolist(), strict=True)))
        return out

    @functools.cached_property
    def fusion_ids(self) -> tuple[np.ndarray, np.ndarray] | None:
        """What ``hybrid_ranked``'s array fusion numbers products by, built once per index:
        (each BM25 document's row in the vector index, the product id of each number). A
        product BM25 holds and the vectors do not gets a number past the rows. None where a
        product id holds two rows, or two BM25 documents (``fuse`` over lists then decides,
        which counts such a product once), and for an RRF fusion, which fuses lists."""
        if not self.has_lexical or self.fusion.method != "convex":
            return None
        live = self.index.live_rows
        id_of = self.index.id_of
        names = self.lexical.product_names.tolist()
        if len(id_of) != int(live.sum()) or len(set(names)) != len(names):
            return None
        rows = np.array([id_of.get(p, -1) for p in names], dtype=np.int64)
        missing = np.flatnonzero(rows < 0)
        rows[missing] = len(live) + missing
        pids = np.empty(len(live) + len(names), dtype=object)
        pids[:] = [*self.index.row_pids, *names]
        return rows, pids

    def ranker(self, mode: Mode | None = None, filters: Filter | None = None,
               rerank_depth: int | None = None) -> RankFn:
        """``(texts, k) -> [[(product_id, score), ...]]`` in ``mode``: what evaluation takes."""
        self.rerank_depth(rerank_depth)  # refuse a bad depth before any search

        def rank(texts: Sequence[str], k: int) -> list[Ranked]:
            return [[(h.product_id, h.score) for h in found.hits]
                    for found in self.search_texts(texts, k, mode, filters, rerank_depth)]

        return rank


# The query speller: a correction is a title word in 3 or more titles, of 5 or more letters; a
# word that splits into two title words each in 30 or more titles is left alone ("wiremesh";
# at 3, fragments such as "eer" and "tic" blocked "draweer" and "pastic").
SPELL_MIN_COUNT = 3
COMPOUND_MIN_COUNT = 30


def catalog_speller(titles: Iterable[Any], known: Iterable[str]) -> QuerySpeller:
    """The query speller over catalog ``titles``; the ``known`` words are never corrected."""
    speller = QuerySpeller.from_texts(
        (str(t) for t in titles if t is not None),
        SPELL_MIN_COUNT,
        known=known,
        compound_min_count=COMPOUND_MIN_COUNT,
        min_candidate_length=MIN_WORD,
    )
    log.info("query speller: %d catalog words", speller.common_words)
    return speller


def titles_speller(titles: Iterable[Any], model: TwoTowerModel) -> QuerySpeller:
    """The query speller over catalog ``titles``: words ``model``'s query tokenizer holds
    whole are never corrected ("steak" is English even where no title has it)."""
    return catalog_speller(titles, model.query.vocabulary())


def query_preparer(titles: Iterable[Any], model: TwoTowerModel,
                   query_spelling: bool = True) -> QueryPreparer:
    """How queries to a catalog of ``titles`` are prepared for ``model``'s query tower."""
    speller = titles_speller(titles, model) if query_spelling else None
    return QueryPreparer(speller, case_blind(model))


def searched_rankings(retriever: Retriever, texts: Sequence[str], k: int, mode: Mode | None = None,
                      desc: str = "searching") -> tuple[list[str], list[Ranked]]:
    """Per text, what the search read of it (normalised, spell-corrected) and its top ``k``
    (product, score) in ``mode`` (None: the retriever's default), searched 256 at a time."""
    searched: list[str] = []
    out: list[Ranked] = []
    for start in tqdm(range(0, len(texts), 256), desc=desc, unit="batch"):
        for found in retriever.search_texts(list(texts[start : start + 256]), k, mode):
            searched.append(found.query.text)
            out.append([(h.product_id, h.score) for h in found.hits])
    return searched, out


def index_model(index: ProductIndex, ref: str | None = None,
                backend: Backend | None = None, query_tower: QueryTower | None = None
                ) -> TwoTowerModel:
    """The model an index was built with (or ``ref``), with the tower config it was built with;
    ``backend`` (torch, onnx-fp32, onnx-int8, auto) overrides how its towers run and
    ``query_tower`` (auto, transformer, static) which query tower runs."""
    from aisle.towers.model import load_model

    return load_model(*_index_model_args(index.manifest, ref), backend, query_tower)


def index_query_runtime(manifest: dict[str, Any], ref: str | None = None,
                        backend: Backend | None = None, query_tower: QueryTower | None = None
                        ) -> str:
    """The ``TwoTowerModel.query_runtime`` of the model ``index_model`` loads for the index
    of ``manifest`` (with the same ``ref``, ``backend`` and ``query_tower``), read without
    loading it: another int8 export of the same weights, or a static query tower, searches
    the same index a little differently."""
    from aisle.towers.model import model_runtime

    return model_runtime(*_index_model_args(manifest, ref), backend, query_tower)


def _index_model_args(manifest: dict[str, Any], ref: str | None
                      ) -> tuple[str, TowerConfig | None]:
    from aisle.configs import from_dict

    saved = manifest["model"].get("tower_config")
    config = from_dict(TowerConfig, saved) if saved and ref is None else None
    return (ref if ref is not None else str(manifest["model"]["ref"])), config


def open_retriever(index: ProductIndex, model: TwoTowerModel, query_spelling: bool = True,
                   fusion: FusionConfig | None = None, reranker: RerankStage | None = None
                   ) -> Retriever:
    """A retriever over a loaded ``index``; ``query_spelling`` off embeds queries as typed
    (normalised only); ``reranker``: a cross-encoder re-ranking stage."""
    return Retriever(model, index, query_preparer(index.titles, model, query_spelling), fusion,
                     reranker=reranker)
