"""Dev-split evaluation during training, over an in-memory flat index of the catalog."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from aisle.data.dataset import Dataset
from aisle.evaluation.run import evaluate_split
from aisle.retrieval.config import FusionConfig
from aisle.retrieval.lexical import BM25Index
from aisle.retrieval.query import QueryPreparer
from aisle.retrieval.querytext import case_blind
from aisle.retrieval.retriever import Retriever
from aisle.retrieval.searcher import FaissSearcher
from aisle.retrieval.spelling import QuerySpeller
from aisle.retrieval.store import ProductIndex
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)


def dev_catalog(ds: Dataset, size: int, seed: int) -> pd.DataFrame:
    """The whole catalog (size 0), or the dev split's judged products plus ``size`` others."""
    if size <= 0 or size >= len(ds.products):
        return ds.products
    dev_qids = set(ds.queries.loc[ds.queries["split"] == "dev", "query_id"])
    judged = set(ds.judgments.loc[ds.judgments["query_id"].isin(dev_qids), "product_id"])
    is_judged = ds.products["product_id"].isin(judged)
    others = ds.products[~is_judged]
    sample = others.sample(n=min(size, len(others)), random_state=seed)
    return pd.concat([ds.products[is_judged], sample], ignore_index=True)


def catalog_retriever(
    model: TwoTowerModel,
    ds: Dataset,
    catalog: pd.DataFrame,
    speller: QuerySpeller | None = None,
    lexical: BM25Index | None = None,
    fusion: FusionConfig | None = None,
) -> Retriever:
    """Exact retrieval over ``catalog`` (rows of ``ds.products``): an in-memory flat index of
    ``model``'s product embeddings, nothing written to disk, searched on the one query path
    (queries normalised, ``speller`` correcting them); with ``lexical`` (BM25 over the same
    catalog), hybrid too, fused as ``fusion`` says."""
    vectors = model.encode_product(catalog, progress=True).numpy()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    product_index = ProductIndex(
        root=ds.root or Path(ds.name),
        manifest={"model": {"ref": model.ref, "fingerprint": model.fingerprint}},
        searcher=FaissSearcher(index),
        product_ids=catalog["product_id"].to_numpy(dtype=object),
        titles=catalog["title"].to_numpy(dtype=object),
    )
    preparer = QueryPreparer(speller, case_blind(model))
    return Retriever(model, product_index, preparer, fusion, lexical)


def evaluate_dev(
    model: TwoTowerModel,
    ds: Dataset,
    catalog_size: int,
    seed: int,
    speller: QuerySpeller | None = None,
) -> dict[str, float]:
    catalog = dev_catalog(ds, catalog_size, seed)
    log.info("dev evaluation over %d products", len(catalog))
    retriever = catalog_retriever(model, ds, catalog, speller)
    result = evaluate_split(ds, "dev", retriever.ranker("dense"))
    metrics = {k: round(v, 4) for k, v in result.metrics.items()}
    log.info("dev metrics: %s", metrics)
    return metrics
