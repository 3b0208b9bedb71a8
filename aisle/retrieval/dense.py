"""Dense retrieval: embed queries with the query tower, search the product index."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from aisle.errors import AisleError
from aisle.retrieval.spelling import MIN_WORD, QuerySpeller
from aisle.retrieval.store import Hit, ProductIndex
from aisle.towers.config import Backend
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)


def index_model(index: ProductIndex, ref: str | None = None,
                backend: Backend | None = None) -> TwoTowerModel:
    """The model an index was built with (or ``ref``), with the tower config it was built with;
    ``backend`` (torch, onnx-fp32, onnx-int8, auto) overrides how its towers run."""
    from aisle.configs import from_dict
    from aisle.towers.config import TowerConfig
    from aisle.towers.model import load_model

    saved = index.manifest["model"].get("tower_config")
    config = from_dict(TowerConfig, saved) if saved and ref is None else None
    return load_model(ref if ref is not None else index.model_ref, config, backend)


# The query speller (aisle.retrieval.spelling): a correction is a title word in 3 or more
# titles, of 5 or more letters; a word that splits into two title words each in 30 or more
# titles is left alone ("wiremesh"; at 3, fragments such as "eer" and "tic" blocked "draweer"
# and "pastic").
SPELL_MIN_COUNT = 3
COMPOUND_MIN_COUNT = 30


def query_speller(index: ProductIndex, model: TwoTowerModel) -> QuerySpeller:
    """The speller dense queries go through before the query tower: the index's title words,
    and the words ``model``'s query tokenizer holds whole, which are never corrected."""
    return titles_speller(index.titles, model)


def titles_speller(titles: Iterable[str | None], model: TwoTowerModel) -> QuerySpeller:
    """``query_speller`` over catalog ``titles`` (training builds it before an index exists)."""
    speller = QuerySpeller.from_texts(
        (str(t) for t in titles if t is not None),
        SPELL_MIN_COUNT,
        known=model.query.vocabulary(),
        compound_min_count=COMPOUND_MIN_COUNT,
        min_candidate_length=MIN_WORD,
    )
    log.info("query speller: %d catalog words", speller.common_words)
    return speller


class DenseRetriever:
    """``retriever(texts, k) -> [[(product_id, score), ...], ...]`` over a loaded index."""

    def __init__(
        self,
        model: TwoTowerModel,
        index: ProductIndex,
        embed: Callable[[Sequence[str]], np.ndarray] | None = None,
        speller: QuerySpeller | None = None,
    ) -> None:
        """``embed`` replaces ``model.encode_query`` (the service embeds through its cache,
        which corrects spelling itself); ``speller`` corrects the texts before ``embed``."""
        index.check_model(model.fingerprint, model.ref)
        self.model = model
        self.index = index
        self.embed = embed or (lambda texts: model.encode_query(texts).numpy())
        self.speller = speller

    def hits(self, texts: Sequence[str], k: int) -> list[list[Hit]]:
        if k < 1:
            raise AisleError(f"k must be >= 1, got {k}")
        if not texts:
            return []
        if self.speller is not None:
            texts = [self.speller.rewrite(t) for t in texts]
        vectors = self.embed(texts)
        return self.index.search(vectors, k)

    def __call__(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        return [[(h.product_id, h.score) for h in row] for row in self.hits(texts, k)]


def dense_retriever(
    index: ProductIndex, model: TwoTowerModel, query_spelling: bool = True
) -> DenseRetriever:
    """Dense retrieval over ``index``, queries spell-corrected first unless turned off."""
    speller = query_speller(index, model) if query_spelling else None
    return DenseRetriever(model, index, speller=speller)
