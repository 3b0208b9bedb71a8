"""BM25Index on a tiny catalog: stemming, stop words, ranking, persistence, small corpora."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bm25s
import numpy as np
import pytest

from aisle.retrieval.analyzer import analyzer
from aisle.retrieval.lexical import METHOD, BM25Index

CATALOG = {
    "p1": "Cordless Drill 18V with Battery",
    "p2": "Claw Hammer with Fiberglass Handle",
    "p3": "Drill Bit Set for Wood and Metal",
    "p4": "Interior Wall Paint, Eggshell White",
    "p5": "Hammer Drill, Corded, 1/2 in.",
}


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index.build(list(CATALOG.values()), list(CATALOG))


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [pid for pid, _ in hits]


def test_stemming_matches_plural(index):
    (hits,) = index.search(["drills"], k=5)
    assert set(ids(hits)) == {"p1", "p3", "p5"}
    assert all(score > 0 for _, score in hits)


def test_stop_word_only_and_unknown_queries_are_empty(index):
    assert index.search(["the of and", "", "zzzunknown"], k=5) == [[], [], []]


def test_ranking_order(index):
    hits, paint = index.search(["hammer drill", "white paint"], k=5)
    # p5 holds both terms; the single-term matches follow, scores non-increasing.
    assert ids(hits)[0] == "p5"
    assert set(ids(hits)) == {"p1", "p2", "p3", "p5"}
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    assert ids(paint) == ["p4"]


def test_k_larger_than_corpus_and_truncation(index):
    (hits,) = index.search(["drill"], k=1000)
    assert len(hits) == 3
    (top,) = index.search(["drill"], k=1)
    assert top == hits[:1]
    with pytest.raises(ValueError, match="k must be"):
        index.search(["drill"], k=0)


def test_save_load_round_trip(index, tmp_path: Path):
    queries = ["drills", "hammer drill", "white paint", "the"]
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert len(loaded) == len(index)
    assert loaded.search(queries, k=10) == index.search(queries, k=10)


def test_load_rejects_other_directory(tmp_path: Path):
    with pytest.raises(ValueError, match="not a BM25 index"):
        BM25Index.load(tmp_path)


def test_build_validates():
    with pytest.raises(ValueError, match="texts"):
        BM25Index.build(["a b"], ["p1", "p2"])
    with pytest.raises(ValueError, match="empty"):
        BM25Index.build([], [])
    with pytest.raises(ValueError, match="unique"):
        BM25Index.build(["drill", "hammer"], ["p1", "p1"])


def test_product_of_stop_words_is_indexed_but_never_hit():
    tiny = BM25Index.build(["the and of", "Cordless Drill"], ["empty", "drill"])
    drill, the = tiny.search(["drill", "the"], k=10)
    assert ids(drill) == ["drill"]
    assert the == []


def test_sizes_rank_with_the_product_analyzer_and_vanish_with_words():
    texts = ["PVC Elbow 1/2 in.", "PVC Elbow 3/4 in.", "PVC Pipe 3/4 in. x 10 ft."]
    pids = ["half", "three-quarter", "pipe"]
    product = BM25Index.build(texts, pids)
    word = BM25Index.build(texts, pids, "word", 1.5, 0.75)
    (hits,) = product.search(['3/4" pvc elbow'], k=3)
    assert ids(hits)[0] == "three-quarter"  # the only product with all three terms
    assert hits[0][1] > hits[1][1]
    # bm25s's tokenizer drops "3/4": both elbows tie, and catalog order decides
    (hits,) = word.search(['3/4" pvc elbow'], k=3)
    assert ids(hits)[:2] == ["half", "three-quarter"]
    assert hits[0][1] == hits[1][1]


def test_params_and_analyzer_survive_save_and_load(tmp_path: Path):
    built = BM25Index.build(["PVC Elbow 3/4 in.", "Drill 18V"], ["a", "b"], "product", 0.9, 0.4)
    assert built.params == {"analyzer": "product", "fuzzy": True, "k1": 0.9, "b": 0.4}
    built.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.params == built.params
    queries = ["18 volt drill", "3/4"]
    assert loaded.search(queries, k=2) == built.search(queries, k=2)


def test_index_saved_without_an_analyzer_file_loads_with_the_word_analyzer(tmp_path: Path):
    # indexes written before the analyzer was recorded were built with bm25s's tokenizer
    legacy = BM25Index.build(list(CATALOG.values()), list(CATALOG), "word", 1.5, 0.75)
    legacy.save(tmp_path / "bm25")
    (tmp_path / "bm25" / "analyzer.json").unlink()
    loaded = BM25Index.load(tmp_path / "bm25", legacy=True)
    assert loaded.params["analyzer"] == "word"
    queries = ["hammer drill", "1/2 in drill"]
    assert loaded.search(queries, k=5) == legacy.search(queries, k=5)


def test_a_missing_analyzer_file_is_an_error_unless_the_index_predates_it(
    index: BM25Index, tmp_path: Path
) -> None:
    # A current index that lost analyzer.json: guessing "word" would quietly search with
    # another analyzer than built it (the product analyzer's "1/2" is no word term).
    index.save(tmp_path / "bm25")
    (tmp_path / "bm25" / "analyzer.json").unlink()
    with pytest.raises(ValueError, match=r"analyzer\.json is missing"):
        BM25Index.load(tmp_path / "bm25")


@pytest.mark.parametrize("analyzer_name", ["product", "word"])
@pytest.mark.parametrize(
    "texts",
    [["", "", ""], ["!!!", "---", "\U0001f528\U0001f528 !!!"], ["the and of", "a", "The"]],
    ids=["empty", "punctuation", "stop-words"],
)
def test_texts_without_any_term_give_an_index_that_finds_nothing(
    texts: list[str], analyzer_name: str, tmp_path: Path
) -> None:
    # bm25s alone fails on an empty vocabulary (max() of an empty sequence).
    built = BM25Index.build(texts, ["a", "b", "c"], analyzer_name)
    built.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert len(loaded) == 3
    queries = ["drill", "", "!!!", "the"]
    assert built.search(queries, k=3) == loaded.search(queries, k=3) == [[], [], [], []]


def test_load_refuses_an_unknown_analyzer(index, tmp_path: Path):
    index.save(tmp_path / "bm25")
    (tmp_path / "bm25" / "analyzer.json").write_text('{"analyzer": "klingon"}')
    with pytest.raises(ValueError, match=r"analyzer 'klingon'.*rebuild the index"):
        BM25Index.load(tmp_path / "bm25")


@pytest.mark.parametrize("entry", ['"q"', "99", "-1", "true", "1.0", "null"])
def test_load_refuses_a_vocabulary_entry_that_names_no_term(index, tmp_path: Path,
                                                          entry: str):
    # A map still, but not of terms to their columns: a search would fail (IndexError,
    # TypeError) or read another term's column, long after the index loaded.
    index.save(tmp_path / "bm25")
    vocab = next((tmp_path / "bm25").glob("vocab*.json"))
    vocab.write_text(f'{{"drill": {entry}}}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a term of the index"):
        BM25Index.load(tmp_path / "bm25")


def test_a_misspelt_query_term_counts_as_its_nearest_indexed_word(tmp_path: Path):
    texts = ["Aluminum Ladder 6 ft.", "Fiberglass Ladder 8 ft.", "Tongue and Groove Plank"]
    pids = ["alu", "fib", "plank"]
    fuzzy = BM25Index.build(texts, pids, fuzzy=True)
    exact = BM25Index.build(texts, pids, fuzzy=False)
    assert ids(fuzzy.search(["aluminun ladder"], k=3)[0])[0] == "alu"
    # without the speller only "ladder" matches, and both ladders tie on it
    (hits,) = exact.search(["aluminun ladder"], k=3)
    assert set(ids(hits)) == {"alu", "fib"} and hits[0][1] == hits[1][1]
    assert ids(fuzzy.search(["toungh groove"], k=3)[0]) == ["plank"]
    assert exact.search(["toungh"], k=3) == [[]]
    assert fuzzy.params["fuzzy"] and not exact.params["fuzzy"]
    fuzzy.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.params == fuzzy.params
    assert loaded.search(["aluminun ladder", "toungh"], k=3) == fuzzy.search(
        ["aluminun ladder", "toungh"], k=3
    )
    (tmp_path / "bm25" / "words.json").unlink()
    with pytest.raises(ValueError, match=r"fuzzy BM25 index without words\.json"):
        BM25Index.load(tmp_path / "bm25")


@pytest.mark.parametrize("preset", [None, "cuda"])
def test_importing_the_index_keeps_jax_off_the_gpu_unless_told(preset: str | None) -> None:
    # bm25s runs a JAX op on import; on a CUDA machine that would preallocate most of the GPU.
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    if preset:
        env["JAX_PLATFORMS"] = preset
    code = "import os, aisle.retrieval.lexical; print(os.environ['JAX_PLATFORMS'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == (preset or "cpu")


# A generated catalog for the sparse scorer: few words, so many products share terms and
# lengths (ties), words repeated within a title (tf > 1), and exact duplicate titles.
WORDS = ["drill", "hammer", "saw", "paint", "white", "cordless", "bit", "wood", "metal",
         "brush", "roller", "ladder", "pipe", "elbow", "valve", "screw", "nail", "glue"]
SCORER_QUERIES = [
    "drill", "drill saw", "saw drill", "drill drill", "drill drill drill saw", "white paint",
    "paint white brush roller ladder pipe", "drill zzzqx", "zzzqx", "", "the and of",
    "hammer nail screw glue wood metal valve elbow", "bit bit bit", "ladder",
]


def generated_catalog(n: int = 240) -> list[str]:
    rng = random.Random(7)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]  # Zipf-like: some long postings
    texts = [" ".join(rng.choices(WORDS, weights, k=rng.randint(1, 8))) for _ in range(n)]
    for i in range(0, n, 9):
        texts[i] = texts[rng.randrange(n)]  # identical products tie exactly
    return texts


def bm25s_index(texts: list[str], method: str = METHOD) -> bm25s.BM25:
    retriever = bm25s.BM25(method=method, k1=0.9, b=0.4)
    retriever.index(analyzer("product")(texts), create_empty_token=True, show_progress=False)
    return retriever


def get_scores_ranking(retriever: bm25s.BM25, query: str, k: int) -> list[tuple[str, float]]:
    """The ranking BM25Index.search gave before its sparse scorer, from bm25s's own
    get_scores over the whole catalog: positive scores only, ties by catalog order."""
    terms = [t for t in analyzer("product")([query])[0] if t and t in retriever.vocab_dict]
    if not terms:
        return []
    scores = np.asarray(retriever.get_scores(terms), dtype=np.float64)
    hits = np.flatnonzero(scores > 0.0)
    order = np.lexsort((hits, -scores[hits]))[:k]
    return [(f"p{i}", float(scores[i])) for i in hits[order]]


@pytest.mark.parametrize("dense_share", [None, 0.0, float("inf")],
                         ids=["default", "dense", "sorted-postings"])
def test_sparse_scorer_equals_get_scores_exactly(
    dense_share: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways of summing postings, forced in turn, must give bm25s's float32 sums to the
    # bit (its additions in query order) and its order of ties.
    if dense_share is not None:
        monkeypatch.setattr(BM25Index, "DENSE_SHARE", dense_share)
    texts = generated_catalog()
    index = BM25Index.build(texts, [f"p{i}" for i in range(len(texts))], "product", 0.9, 0.4,
                            fuzzy=False)
    reference = bm25s_index(texts)
    for k in (1, 3, 10, 50, 1000):  # 1000: more than any query's hits
        got = index.search(SCORER_QUERIES, k)
        expected = [get_scores_ranking(reference, q, k) for q in SCORER_QUERIES]
        assert got == expected, k
    by_query = dict(zip(SCORER_QUERIES, index.search(SCORER_QUERIES, 1000), strict=True))
    assert by_query["zzzqx"] == by_query[""] == by_query["the and of"] == []
    assert by_query["drill zzzqx"] == by_query["drill"]  # an absent term adds nothing
    assert by_query["drill saw"] == by_query["saw drill"]
    assert by_query["drill drill"] != by_query["drill"]  # a repeated term counts twice
    assert 0 < len(by_query["ladder"]) < 1000
    scores = [s for _, s in by_query["drill saw"]]
    assert len(set(scores)) < len(scores)  # the catalog does produce ties


@pytest.mark.parametrize("method", ["robertson", "bm25+", "bm25l"])
def test_other_bm25_variants_rank_as_get_scores_does(method: str) -> None:
    # robertson zeroes the idf of terms in half the catalog or more (a weight of 0, never a
    # hit on its own); bm25+ and bm25l give every product a score, which get_scores adds.
    texts = generated_catalog()
    retriever = bm25s_index(texts, method)
    if method == "robertson":
        assert (retriever.scores["data"] <= 0.0).any()
    index = BM25Index(retriever, [f"p{i}" for i in range(len(texts))], "product")
    for k in (3, 1000):
        expected = [get_scores_ranking(retriever, q, k) for q in SCORER_QUERIES]
        assert index.search(SCORER_QUERIES, k) == expected


def test_concurrent_searches_match_serial_ones() -> None:
    texts = generated_catalog()
    index = BM25Index.build(texts, [f"p{i}" for i in range(len(texts))], fuzzy=False)
    serial = [index.search([q], 20) for q in SCORER_QUERIES * 4]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda q: index.search([q], 20), SCORER_QUERIES * 4))
    assert threaded == serial
