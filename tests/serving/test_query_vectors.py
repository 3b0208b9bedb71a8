"""The vectors the service caches: each query's is the vector of exactly the text it was
encoded as, under a key of that text."""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from dataclasses import replace

import numpy as np
import pytest
import redis
import torch

from aisle.retrieval.querytext import case_blind
from aisle.serving.cache import LRUCache, RedisCache, TieredCache
from aisle.serving.config import ServeConfig
from aisle.serving.engine import Engine
from aisle.serving.snapshot import Snapshot, make_snapshot
from aisle.towers.model import TwoTowerModel

# (typed first, then the plain spelling): v1 keyed both alike but encoded them as typed, so
# whichever came first gave the other its vector
VARIANTS = [
    ("ｃｏｒｄｌｅｓｓ ｄｒｉｌｌ", "cordless drill"),  # full-width
    ("ﬁre pit", "fire pit"),  # a ligature
    ("straße light", "strasse light"),
    ("² in pipe", "2 in pipe"),  # a superscript
    ("SMOKE  DETECTOR", "smoke detector"),
]



def texts(snapshot: Snapshot, queries: list[str]) -> list[str]:
    """What the query tower is given for ``queries``."""
    return [q.text for q in snapshot.preparer.prepare_all(queries)]


def embed(engine: Engine, queries: list[str]) -> np.ndarray:
    snapshot = engine.snapshot
    return engine.embed(snapshot, snapshot.preparer.prepare_all(queries))


def test_each_query_gets_the_vector_of_the_text_it_was_encoded_as(
    engine: Engine, base_model: TwoTowerModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = engine.snapshot
    assert snapshot.preparer.fold_case  # all-MiniLM-L6-v2's tokenizer is uncased
    encoded: list[str] = []
    encode = base_model.encode_query

    def spy(texts: list[str]) -> torch.Tensor:
        encoded.extend(texts)
        return encode(texts)

    monkeypatch.setattr(base_model, "encode_query", spy)
    for typed, plain in VARIANTS:
        got_typed = embed(engine, [typed])[0]
        got_plain = embed(engine, [plain])[0]
        for query, got in ((typed, got_typed), (plain, got_plain)):
            want = encode(texts(snapshot, [query])).numpy()[0]
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=query)
    # full-width, the ligature, the superscript and the case variant are one text each
    assert "ｃｏｒｄｌｅｓｓ ｄｒｉｌｌ" not in encoded and "ﬁre pit" not in encoded
    assert encoded.count("cordless drill") == 1 and encoded.count("smoke detector") == 1
    assert encoded.count("straße light") == 1 and encoded.count("strasse light") == 1


class CasedModel:
    """A stand-in query tower that reads case: a vector per exact text."""

    fingerprint = "cased-test"
    ref = "cased"
    backend = "torch"
    runtime = query_runtime = "torch"
    dim = 8

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode_query(self, texts: list[str]) -> torch.Tensor:
        self.encoded.extend(texts)
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return torch.from_numpy(np.stack(rows))


def test_a_cased_model_sees_queries_in_their_case_and_the_cache_keeps_them_apart(
    engine: Engine, base_model: TwoTowerModel, serve_config: ServeConfig
) -> None:
    assert case_blind(base_model)
    model = CasedModel()
    assert not case_blind(model)  # type: ignore[arg-type]
    index = engine.snapshot.index
    index = replace(index, manifest={**index.manifest, "model": {"ref": "cased", "fingerprint":
                                                                  model.fingerprint}})
    snapshot = make_snapshot(model, index, "v", query_spelling=False)  # type: ignore[arg-type]
    cased = Engine(serve_config, LRUCache(100), snapshot)
    model.encoded.clear()
    upper, lower = embed(cased, ["US  Drill", "us drill"])
    assert model.encoded == ["US Drill", "us drill"]  # whitespace collapsed, case kept
    assert not np.allclose(upper, lower)
    again = embed(cased, ["US Drill"])[0]
    assert model.encoded == ["US Drill", "us drill"]  # a cache hit, of its own vector
    np.testing.assert_array_equal(again, upper)


def test_entries_of_the_old_key_scheme_are_never_read(
    engine: Engine, serve_config: ServeConfig, shared_redis: str
) -> None:
    # v1 keyed NFKC + casefold of the text; plant a wrong vector there, as v1 could have.
    snapshot = engine.snapshot
    query = f"Poisoned {uuid.uuid4().int % 10**9} DRILL"
    v1_text = " ".join(unicodedata.normalize("NFKC", texts(snapshot, [query])[0]).casefold()
                       .split())
    model = f"{snapshot.model.fingerprint}-{snapshot.model.backend}"
    old = f"aisle:qemb:{model}:{hashlib.sha1(v1_text.encode()).hexdigest()}"
    client = redis.Redis.from_url(shared_redis)
    client.set(old, np.ones(snapshot.model.dim, dtype=np.float32).tobytes(), ex=60)
    remote = RedisCache(shared_redis, ttl_s=60, timeout_s=0.5, backoff_s=0.2)
    fresh = Engine(serve_config, TieredCache(LRUCache(10), remote), snapshot)
    got = embed(fresh, [query])[0]
    want = snapshot.model.encode_query(texts(snapshot, [query])).numpy()[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert fresh.stats.misses == 1 and remote.errors == 0


def test_cached_vectors_do_not_hold_their_encoder_batch(engine: Engine) -> None:
    queries = [f"query number {i}" for i in range(64)]
    embed(engine, queries)
    prepared = engine.snapshot.preparer.prepare_all(queries)
    entries = engine.cache.get_many(engine._keys(engine.snapshot, prepared))
    assert all(v is not None and v.base is None and v.flags.owndata for v in entries)
