"""aisle as a library: open an index, search it, suggest queries.

    import aisle

    idx = aisle.open_index("runs/demo/index")
    for r in idx.search("cordless drill", k=5):
        print(r.score, r.product_id, r.title)
    idx.search("cordless drill", filters={"brand": ["DeWalt", "Makita"], "price": {"lte": 150}})
    idx.fields  # what filters can name: [{"name": "brand", "type": "string", ...}, ...]

The same query path as ``aisle search``, ``aisle evaluate`` and the service (``Retriever``):
the same typed query gets the same products in the same order from each of them.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisle.errors import AisleError
from aisle.retrieval.config import Mode

if TYPE_CHECKING:
    from aisle.autocomplete.lookup import Autocomplete
    from aisle.retrieval.filters import Filter
    from aisle.retrieval.retriever import Found, Retriever
    from aisle.towers.config import Backend, QueryTower


@dataclass(frozen=True)
class Result:
    """One product found: its id, title, score and stored fields (brand, category and any
    typed catalog column such as price; None where the catalog has no value)."""

    product_id: str
    title: str
    score: float
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Results:
    """One query's answer: the ranked results, the mode that produced them, the query as typed
    and as searched (``corrected`` is None unless the speller rewrote it)."""

    query: str
    mode: Mode
    corrected: str | None
    results: tuple[Result, ...]
    reranked: int = 0  # first-stage products a cross-encoder re-ranked (0: none)

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> Result:
        return self.results[i]


def _results(found: Found, fields: list[dict[str, Any]]) -> Results:
    return Results(
        query=found.query.typed,
        mode=found.mode,
        corrected=found.query.correction,
        results=tuple(Result(h.product_id, h.title, h.score, f)
                      for h, f in zip(found.hits, fields, strict=True)),
        reranked=found.reranked,
    )



class SearchIndex:
    """A loaded index and its model (and, optionally, an autocomplete artifact)."""

    def __init__(self, retriever: Retriever, autocomplete: Autocomplete | None = None) -> None:
        self.retriever = retriever
        self.autocomplete = autocomplete

    @property
    def default_mode(self) -> Mode:
        """What ``search`` uses without ``mode``: hybrid where the index carries BM25."""
        return self.retriever.default_mode

    def __len__(self) -> int:
        return int(self.retriever.index.searcher.count)

    @property
    def fields(self) -> list[dict[str, Any]]:
        """The stored fields filters can name: per field its name, type (string, number,
        boolean) and, for text, its most common values; for numbers, min and max."""
        return self.retriever.index.fields.summary()

    def search(self, query: str, k: int = 10, mode: Mode | None = None,
               filters: Filter | Mapping[str, Any] | Sequence[str] | str | None = None,
               rerank_depth: int | None = None) -> Results:
        """The top ``k`` products for ``query`` in ``mode`` (None: ``default_mode``) among
        those meeting ``filters``: ``{"brand": "DeWalt"}``, ``{"brand": ["a", "b"]}``,
        ``{"price": {"gte": 10, "lte": 50}}``, ``{"in_stock": True}``, or the text form
        ``["brand=DeWalt", "price<=50"]`` (aisle/retrieval/filters.py). ``rerank_depth``:
        first-stage products the cross-encoder given to ``open_index`` re-ranks (None: its
        tuned depth; 0: none)."""
        return self.search_many([query], k, mode, filters, rerank_depth)[0]

    def search_many(
        self, queries: Iterable[str], k: int = 10, mode: Mode | None = None,
        filters: Filter | Mapping[str, Any] | Sequence[str] | str | None = None,
        rerank_depth: int | None = None,
    ) -> list[Results]:
        """``search`` for several queries at once (one batch through the query tower)."""
        from aisle.retrieval.filters import as_filter
        from aisle.retrieval.querytext import query_problem

        if isinstance(queries, str) or not isinstance(queries, Iterable):
            raise AisleError(f"search_many takes a list of queries, got a "
                             f"{type(queries).__name__}; for one query, call search")
        queries = list(queries)  # read once: a generator would be spent by the checks
        for i, q in enumerate(queries):
            problem = (f"query is a {type(q).__name__}, not text" if not isinstance(q, str)
                       else query_problem(q))
            if problem is not None:  # what the service answers 422 to
                raise AisleError(f"query {i} ({str(q)[:40]!r}): {problem}")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise AisleError(f"k must be >= 1 (a whole number of products), got {k!r}")
        if mode not in (None, "dense", "lexical", "hybrid"):
            raise AisleError(f"unknown mode {mode!r}; use dense, lexical or hybrid")
        if rerank_depth is not None and (isinstance(rerank_depth, bool) or not isinstance(
                rerank_depth, numbers.Integral) or rerank_depth < 0):
            raise AisleError(f"rerank_depth must be None (the cross-encoder's own) or a whole "
                             f"number >= 0 (0: no re-ranking), got {rerank_depth!r}")
        found = self.retriever.search_texts(
            queries, int(k), mode, as_filter(filters),
            None if rerank_depth is None else int(rerank_depth))
        index = self.retriever.index
        return [_results(f, index.field_values([h.product_id for h in f.hits])) for f in found]

    def suggest(self, prefix: str, k: int = 10) -> list[str]:
        """Query suggestions for a typed prefix, from the autocomplete artifact given to
        ``open_index`` (``aisle autocomplete build`` makes one)."""
        if self.autocomplete is None:
            raise AisleError(
                "this index was opened without suggestions; pass autocomplete=DIR to "
                "open_index (aisle autocomplete build --data ... --out DIR makes one)"
            )
        if not isinstance(prefix, str):
            raise AisleError(f"prefix must be text, got a {type(prefix).__name__}")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise AisleError(f"k must be >= 1 (a whole number of suggestions), got {k!r}")
        return [s.text for s in self.autocomplete.suggest(prefix, int(k))]


def open_index(
    path: str | Path,
    model: str | Path | None = None,
    backend: Backend | None = None,
    autocomplete: str | Path | None = None,
    query_spelling: bool = True,
    rerank: str | Path | None = None,
    query_tower: QueryTower | None = None,
) -> SearchIndex:
    """Open an index built by ``aisle index`` (a versioned root or one version's directory)
    with the model that built it (or ``model``); ``backend`` picks how the query tower runs
    (torch, onnx-fp32, onnx-int8, auto; default: as the index was built); ``rerank``: a
    cross-encoder directory (``aisle rerank train``) that re-ranks every search's first
    products; ``query_tower`` (auto, transformer, static; default: as the index's model
    config says) which query tower runs."""
    from aisle.retrieval.retriever import index_model, open_retriever
    from aisle.retrieval.store import load_index
    from aisle.towers.config import BACKENDS, QUERY_TOWERS, check_choice

    if backend is not None:
        check_choice("backend", backend, BACKENDS, "None: as the index was built")
    if query_tower is not None:
        check_choice("query_tower", query_tower, QUERY_TOWERS,
                     "None: as the index's model config says")
    index = load_index(Path(path))
    tower_model = index_model(index, None if model is None else str(model), backend,
                              query_tower)
    reranker = None
    if rerank is not None:
        from aisle.rerank.model import load_reranker

        reranker = load_reranker(Path(rerank))
    retriever = open_retriever(index, tower_model, query_spelling, reranker=reranker)
    suggester = None
    if autocomplete is not None:
        from aisle.autocomplete.lookup import Autocomplete

        suggester = Autocomplete.load(Path(autocomplete))
    return SearchIndex(retriever, suggester)
