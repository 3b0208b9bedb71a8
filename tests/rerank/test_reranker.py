"""``aisle rerank train`` / ``export`` and the re-ranking stage on the one query path."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aisle.artifacts import MANIFEST
from aisle.errors import AisleError, ArtifactError
from aisle.evaluation.run import evaluate_command, open_index_retriever
from aisle.rerank.export import CrossAgreement, export_reranker
from aisle.rerank.model import KIND, OnnxCrossScorer, TorchCrossScorer, load_reranker
from aisle.rerank.train import train_reranker
from aisle.retrieval.rerank import combine
from tests.rerank.conftest import TINY
from tests.towers.test_onnx import float_weight_matmuls

QUERIES = ["cordless drill", "WHITE paint", "kitchen faucte"]


def test_the_result_is_a_plain_cross_encoder_with_a_manifest(reranker_dir: Path,
                                                             sample_data: Path) -> None:
    from sentence_transformers import CrossEncoder

    manifest = json.loads((reranker_dir / MANIFEST).read_text())
    assert manifest["kind"] == KIND
    assert set(manifest["data"]) >= {"products_fingerprint", "judgments_fingerprint"}
    assert manifest["config"]["batch_size"] == TINY.batch_size
    assert [r["weight"] for r in manifest["dev"]] == list(TINY.weights)
    assert manifest["rerank"]["weight"] in TINY.weights
    plain = CrossEncoder(str(reranker_dir))
    ours = load_reranker(reranker_dir, "torch")
    pairs = [("drill", "a cordless drill"), ("paint", "a kitchen faucet")]
    logits = plain.predict(pairs, activation_fn=None)
    np.testing.assert_allclose(ours.scorer.score(pairs), np.asarray(logits).reshape(-1),
                               atol=1e-5)


def test_a_scorer_over_a_model_in_training_scores_as_a_loaded_one(reranker_dir: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(reranker_dir), activation_fn=torch.nn.Identity(),
                         local_files_only=True)
    model.train()  # as a training step leaves it: dropout on
    pairs = [("drill", "a cordless drill"), ("paint", "a kitchen faucet")]
    scores = TorchCrossScorer(model).score(pairs)
    assert not model.training
    np.testing.assert_allclose(scores, load_reranker(reranker_dir, "torch").scorer.score(pairs),
                               atol=1e-5)
    assert TorchCrossScorer(model).score([]).shape == (0,)


def test_the_stage_re_ranks_the_first_stage_head(reranker_dir: Path, sample_data: Path,
                                                 sample_index: Path) -> None:
    from aisle.data.dataset import load_dataset

    reranker = load_reranker(reranker_dir, "torch")
    ds = load_dataset(sample_data)
    retriever = open_index_retriever(sample_index, None, ds, reranker=reranker)
    plain = retriever.search_texts(QUERIES, 20, rerank_depth=0)
    found = retriever.search_texts(QUERIES, 20)
    depth = reranker.config.depth
    for f, p in zip(found, plain, strict=True):
        assert f.reranked == depth and p.reranked == 0
        first = [(h.product_id, h.score) for h in p.hits]
        texts = retriever.rerank_texts([pid for pid, _ in first[:depth]])
        scores = reranker.scorer.score([(f.query.text, texts[pid]) for pid, _ in first[:depth]])
        expected = combine(first, scores, 20, reranker.config)
        assert [(h.product_id, round(h.score, 9)) for h in f.hits] == [
            (pid, round(s, 9)) for pid, s in expected]
    short = retriever.search_texts(QUERIES, 5)
    assert [[h.product_id for h in f.hits] for f in short] == [
        [h.product_id for h in f.hits[:5]] for f in found]
    with pytest.raises(AisleError, match="rerank depth"):
        retriever.search_texts(QUERIES, 5, rerank_depth=-1)
    bare = open_index_retriever(sample_index, None, ds)
    with pytest.raises(AisleError, match="cross-encoder"):
        bare.search_texts(QUERIES, 5, rerank_depth=10)


def test_evaluate_and_search_take_the_reranker(reranker_dir: Path, sample_data: Path,
                                               sample_index: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from aisle.cli import main

    result = evaluate_command(sample_data, "test", sample_index, rerank=reranker_dir,
                              rerank_depth=5, rerank_backend="torch")
    assert result["rerank"]["depth"] == 5 and result["rerank"]["backend"] == "torch"
    assert 0.0 <= result["metrics"]["ndcg@10"] <= 1.0
    with pytest.raises(AisleError, match="drop --rerank"):  # it would be ignored
        evaluate_command(sample_data, "test", None, baseline="bm25", rerank=reranker_dir)
    with pytest.raises(AisleError, match="drop --rerank"):
        evaluate_command(sample_data, "test", sample_index, baseline="bm25", rerank=reranker_dir)
    assert main(["search", "--index", str(sample_index), "--rerank", str(reranker_dir),
                 "--rerank-backend", "torch", "-k", "3", "cordless drill"]) == 0
    # k 3 of the cross-encoder's depth (TINY: 10): the top 10 are re-ranked, 3 shown
    assert f"top {TINY.depth} re-ranked" in capsys.readouterr().out
    from aisle.api import open_index

    idx = open_index(sample_index, rerank=reranker_dir)
    depth = json.loads((reranker_dir / MANIFEST).read_text())["rerank"]["depth"]
    assert idx.search("cordless drill", 5).reranked == depth
    assert idx.search("cordless drill", 5, rerank_depth=0).reranked == 0


def test_resume_continues_an_interrupted_run(tmp_path: Path, sample_data: Path,
                                             sample_index: Path, reranker_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from aisle.rerank import train

    calls = {"n": 0}
    step = train._Training.step

    def crash(self: train._Training, batch: list) -> float:  # type: ignore[type-arg]
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(train._Training, "step", crash)
    out = tmp_path / "ce"
    with pytest.raises(KeyboardInterrupt):
        train_reranker(sample_data, sample_index, out, TINY, work=tmp_path / "work")
    assert not out.exists()
    monkeypatch.setattr(train._Training, "step", step)
    train_reranker(sample_data, sample_index, out, TINY, resume=True, work=tmp_path / "work")
    resumed = load_reranker(out, "torch").scorer
    whole = load_reranker(reranker_dir, "torch").scorer
    pairs = [("drill", "a cordless drill"), ("white paint", "interior paint, white")]
    np.testing.assert_allclose(resumed.score(pairs), whole.score(pairs), atol=1e-4)
    # A finished run keeps its progress, not the optimiser's state, and resumes to publishing.
    import torch

    saved = torch.load(tmp_path / "work" / train.STATE, map_location="cpu", weights_only=False)
    assert saved["trainer"] is None and saved["progress"]["epoch"] == TINY.epochs

    def retrain(self: train._Training, batch: list) -> float:  # type: ignore[type-arg]
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr(train._Training, "step", retrain)
    again = tmp_path / "ce-again"
    train_reranker(sample_data, sample_index, again, TINY, resume=True, work=tmp_path / "work")
    np.testing.assert_allclose(load_reranker(again, "torch").scorer.score(pairs),
                               whole.score(pairs), atol=1e-4)
    # Another config, or other judgments of as many pairs: the saved (finished) run is not
    # theirs, so they train from the start (a resume of it would publish without a step),
    # where an error would stop `make demo` over an older work directory for good.
    regraded = shutil.copytree(sample_data, tmp_path / "regraded")
    judged = pd.read_csv(regraded / "judgments.csv", dtype=str, keep_default_na=False)
    judged["grade"] = [f"{float(g) / 2:g}" for g in judged["grade"]]
    judged.to_csv(regraded / "judgments.csv", index=False)

    class Trained(Exception):
        pass

    def trains(self: train._Training, batch: list) -> float:  # type: ignore[type-arg]
        raise Trained

    monkeypatch.setattr(train._Training, "step", trains)
    finished = shutil.copytree(tmp_path / "work", tmp_path / "finished-work")
    for data, cfg in ((sample_data, replace(TINY, lr=1e-4)), (regraded, TINY)):
        shutil.rmtree(tmp_path / "work")
        shutil.copytree(finished, tmp_path / "work")  # the finished run's state, each time
        with pytest.raises(Trained):
            train_reranker(data, sample_index, tmp_path / "other", cfg, resume=True,
                           work=tmp_path / "work")


def test_a_run_stopped_while_tuning_publishes_nothing_and_resumes_to_a_tuned_one(
        tmp_path: Path, sample_data: Path, sample_index: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross-encoder was published before its int8 export and its weight's tuning on
    dev (minutes on homedepot): a run stopped in that window left a complete-looking
    directory whose weight (0.5) was never chosen on dev, and every search used it."""
    from aisle.rerank import train

    tune = train.weight_grid

    def stopped(*args: object, **kwargs: object) -> list[dict[str, object]]:
        raise KeyboardInterrupt

    monkeypatch.setattr(train._Training, "step", lambda self, batch: 0.0)
    monkeypatch.setattr(train, "weight_grid", stopped)
    out = tmp_path / "ce"
    with pytest.raises(KeyboardInterrupt):
        train_reranker(sample_data, sample_index, out, TINY, work=tmp_path / "work")
    assert not out.exists() and not list(tmp_path.glob(".ce*"))
    monkeypatch.setattr(train, "weight_grid", tune)
    train_reranker(sample_data, sample_index, out, TINY, resume=True, work=tmp_path / "work")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["dev"] and manifest["rerank"]["weight"] in TINY.weights


def test_epochs_are_compared_on_dev_queries_with_a_relevant_product() -> None:
    """The epochs' dev sample was drawn from every dev query: one that missed the few with a
    relevant product compared epochs by an undefined nDCG, a TypeError after a whole epoch."""
    from aisle.rerank.train import _selection_sample

    qrels = {f"q{i}": {"p": 0.0} for i in range(50)} | {"q7": {"p": 2.0}, "q33": {"p": 1.0}}
    for seed in range(20):
        assert set(_selection_sample(qrels, 2, seed)) == {"q7", "q33"}
        assert list(_selection_sample(qrels, 1, seed)) in (["q7"], ["q33"])
    assert set(_selection_sample(qrels, 0, 0)) == {"q7", "q33"}


@pytest.mark.parametrize("damage", ["no tokenizer", "truncated weights", "no config"])
def test_a_damaged_cross_encoder_is_refused_on_torch_with_what_to_do(
        damage: str, reranker_dir: Path, tmp_path: Path) -> None:
    """A folder without its tokenizer files loaded, with a tokenizer of five special tokens,
    and scored every product by the length of its text; truncated weights or no config.json
    were a traceback (SafetensorError, ValueError), not an error naming the folder."""
    broken = shutil.copytree(reranker_dir, tmp_path / "ce")
    if damage == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
            (broken / name).unlink(missing_ok=True)
        message = r"its tokenizer knows \d+ tokens, its model \d+"
    elif damage == "truncated weights":
        weights = broken / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
        message = "is not a usable cross-encoder"
    else:
        (broken / "config.json").unlink()
        message = "is not a usable cross-encoder"
    with pytest.raises(ArtifactError, match=message):
        load_reranker(broken, "torch")


def test_an_export_record_without_its_folder_is_a_corrupt_export(reranker_dir: Path,
                                                                  tmp_path: Path) -> None:
    copy = shutil.copytree(reranker_dir, tmp_path / "ce")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["onnx"] = {"files": {"fp32": "model.onnx"}}  # no "dir"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="missing or corrupt ONNX export"):
        load_reranker(copy, "onnx-fp32")


def test_several_epochs_without_selection_publish_the_last(
        tmp_path: Path, sample_data: Path, sample_index: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """select_queries=0 "keeps the last epoch" (RerankTrainConfig): the published weights and
    the manifest's epoch are the last epoch's, not the first's."""
    import torch

    from aisle.rerank import train

    steps = {"n": 0}

    def count(self: train._Training, batch: list) -> float:  # type: ignore[type-arg]
        steps["n"] += 1  # the classifier's bias records how many steps the weights took
        with torch.no_grad():
            self.model.model.classifier.bias.fill_(float(steps["n"]))
        return 0.0

    monkeypatch.setattr(train._Training, "step", count)
    cfg = replace(TINY, epochs=2, select_queries=0)
    out = tmp_path / "ce"
    train_reranker(sample_data, sample_index, out, cfg, work=tmp_path / "work")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["epoch"] == 2 and manifest["history"] == []
    model = load_reranker(out, "torch").scorer.model  # type: ignore[attr-defined]
    assert float(model.model.classifier.bias.detach()) == steps["n"]


def killed_at_step_4(data: Path, index: Path, out: Path, work: Path,
                     monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Train TINY (a checkpoint every 3 steps) until its 4th step is killed; the count of
    steps the stub takes, which goes on counting (and killing no more) after it."""
    from aisle.rerank import train

    calls = {"n": 0}

    def step(self: train._Training, batch: list) -> float:  # type: ignore[type-arg]
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return 0.0

    monkeypatch.setattr(train._Training, "step", step)
    with pytest.raises(KeyboardInterrupt):
        train_reranker(data, index, out, TINY, work=work)
    return calls


def test_resume_refuses_a_checkpoint_of_other_training_pairs(
        tmp_path: Path, sample_data: Path, sample_index: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Other first-stage lists (the query tower on another runtime ranks a little
    differently) give other training pairs, as many of them: a checkpoint of the old pairs is
    not resumed into the new ones."""
    from aisle.rerank import train

    out, work = tmp_path / "ce", tmp_path / "work"
    killed_at_step_4(sample_data, sample_index, out, work, monkeypatch)
    made = train.training_examples

    def other_pairs(*args: object, **kwargs: object) -> list[train.Example]:
        pairs = made(*args, **kwargs)  # type: ignore[arg-type]
        last = pairs[-1]  # another negative in the last query's list, the count unchanged
        return [*pairs[:-1], train.Example(last.query, "another product", last.target)]

    monkeypatch.setattr(train, "training_examples", other_pairs)
    seen = {"n": 0}

    def counted(self: train._Training, batch: list) -> float:  # type: ignore[type-arg]
        seen["n"] += 1
        return 0.0

    monkeypatch.setattr(train._Training, "step", counted)
    train_reranker(sample_data, sample_index, out, TINY, resume=True, work=work)
    batches = json.loads((out / MANIFEST).read_text())["pairs"] // TINY.batch_size
    assert seen["n"] == batches  # trained from the start, not from the old run's batch 3


def test_resume_may_change_how_often_it_saves_and_whether_it_exports(
        tmp_path: Path, sample_data: Path, sample_index: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """checkpoint_every and export_int8 do not change the weights: a run interrupted at step
    4 resumes from its step-3 checkpoint under new values (it used to start over)."""
    from aisle.rerank import train

    assert train.trained_by(replace(TINY, export_int8=True)) == train.trained_by(TINY)
    assert train.trained_by(replace(TINY, lr=1e-4)) != train.trained_by(TINY)
    out, work = tmp_path / "ce", tmp_path / "work"
    calls = killed_at_step_4(sample_data, sample_index, out, work, monkeypatch)
    calls["n"] = 100  # past the kill
    train_reranker(sample_data, sample_index, out, replace(TINY, checkpoint_every=5),
                   resume=True, work=work)
    batches = json.loads((out / MANIFEST).read_text())["pairs"] // TINY.batch_size
    assert calls["n"] - 100 == batches - 3


def test_no_dev_judgments_or_no_usable_base_is_refused_before_any_work(
        tmp_path: Path, sample_data: Path, sample_index: Path) -> None:
    from aisle.errors import DataError

    no_dev = shutil.copytree(sample_data, tmp_path / "no-dev")
    queries = pd.read_csv(no_dev / "queries.csv", dtype=str, keep_default_na=False)
    dev = set(queries.loc[queries["split"] == "dev", "query_id"])
    judged = pd.read_csv(no_dev / "judgments.csv", dtype=str, keep_default_na=False)
    judged[~judged["query_id"].isin(dev)].to_csv(no_dev / "judgments.csv", index=False)
    with pytest.raises(DataError, match="no judged dev queries"):
        train_reranker(no_dev, sample_index, tmp_path / "ce", TINY)
    # Dev judged all irrelevant: nDCG@10 is undefined everywhere, nothing to choose by.
    zero_dev = shutil.copytree(sample_data, tmp_path / "zero-dev")
    judged.loc[judged["query_id"].isin(dev), "grade"] = "0"
    judged.to_csv(zero_dev / "judgments.csv", index=False)
    with pytest.raises(DataError, match="no dev judgment with a grade above 0"):
        train_reranker(zero_dev, sample_index, tmp_path / "ce", TINY)
    assert not (tmp_path / "ce.work").exists() or not any((tmp_path / "ce.work").iterdir())
    # A directory with a config of no known model: a clear error, not a traceback.
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="not a usable encoder directory"):
        train_reranker(sample_data, sample_index, tmp_path / "ce2", replace(TINY, base=str(bad)))


def test_export_checks_int8_and_refuses_a_disagreement(tmp_path: Path, reranker_dir: Path,
                                                       sample_data: Path,
                                                       sample_index: Path) -> None:
    copy = tmp_path / "ce"
    shutil.copytree(reranker_dir, copy)
    strict = CrossAgreement(min_pearson=1.01)
    with pytest.raises(ArtifactError, match="int8 disagrees"):
        export_reranker(copy, int8=True, data=sample_data, agreement=strict)
    assert not (copy / "onnx").exists() and "onnx" not in json.loads(
        (copy / MANIFEST).read_text())
    with pytest.raises(AisleError, match="onnx-int8"):
        load_reranker(copy, "onnx-int8")
    lax = CrossAgreement(min_pearson=0.0, min_pair_order=0.0)
    section = export_reranker(copy, int8=True, data=sample_data, agreement=lax)
    assert section["fp32_max_abs_diff"] <= 1e-3
    # The first layer's feed-forward output stays fp32 (towers/quantize.py), nothing else.
    [kept] = section["int8_fp32_nodes"]
    assert kept.endswith("layer.0/output/dense/MatMul")
    floats, integer = float_weight_matmuls(copy / "onnx" / "model_qint8.onnx")
    assert floats == [kept] and integer > 0
    assert load_reranker(copy).backend == "onnx-int8"  # auto takes the checked export
    # A stricter re-export refused leaves that export, and says so.
    with pytest.raises(ArtifactError, match="keeps the export it had, or torch if it had none"):
        export_reranker(copy, int8=True, data=sample_data, agreement=strict)
    assert json.loads((copy / MANIFEST).read_text())["onnx"] == section
    assert load_reranker(copy).backend == "onnx-int8"
    pairs = [("drill", "a cordless drill"), ("paint", "white paint")]
    torch_scores = load_reranker(copy, "torch").scorer.score(pairs)
    np.testing.assert_allclose(load_reranker(copy, "onnx-fp32").scorer.score(pairs),
                               torch_scores, atol=1e-3)
    # int8 scales each call's activations once: a pair's score must not depend on the pairs
    # scored beside it (a short title beside a long description), bit for bit, in any order.
    int8 = load_reranker(copy, "onnx-int8").scorer
    mixed = [*pairs, ("garden hose", "garden hose reel " * 60), ("Ünïcödé", "電動ドリル 🔨 ß")]
    alone = np.concatenate([int8.score([p]) for p in mixed])
    np.testing.assert_array_equal(int8.score(mixed), alone)
    np.testing.assert_array_equal(int8.score(mixed[::-1]), alone[::-1])
    # Split across worker threads or not, each pair is its own call: the same scores.
    manifest = json.loads((copy / MANIFEST).read_text())
    graph = copy / "onnx" / "model_qint8.onnx"
    one = OnnxCrossScorer.from_export(copy, manifest, graph, int8=True, threads=1)
    three = OnnxCrossScorer.from_export(copy, manifest, graph, int8=True, threads=3)
    assert (one.workers.n, three.workers.n) == (1, 3)
    np.testing.assert_array_equal(three.score(mixed * 3), np.tile(alone, 3))
    np.testing.assert_array_equal(one.score(mixed), alone)
    # The service's rerank_threads sets the workers.
    from aisle.serving.config import ServeConfig
    from aisle.serving.snapshot import load_snapshot

    assert load_reranker(copy, "onnx-int8", threads=2).scorer.workers.n == 2  # type: ignore[attr-defined]
    served = load_snapshot(ServeConfig(index=str(sample_index), rerank=str(copy),
                                       rerank_threads=1, watch_interval_s=0))
    assert served.retriever.reranker is not None
    assert served.retriever.reranker.scorer.workers.n == 1  # type: ignore[attr-defined]
    # ... nor a query's answer on its company.
    from aisle.data.dataset import load_dataset

    retriever = open_index_retriever(sample_index, None, load_dataset(sample_data),
                                     reranker=load_reranker(copy, "onnx-int8"))
    alone = retriever.search_texts(QUERIES[:1], 10)[0]
    together = retriever.search_texts(QUERIES, 10)[0]
    assert alone.reranked > 0 and alone.hits == together.hits
    (copy / "onnx" / "model_qint8.onnx").write_bytes(b"not a graph")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_reranker(copy, "onnx-int8")


def test_query_time_reads_the_text_training_read(sample_data: Path, sample_index: Path) -> None:
    from aisle.data.dataset import load_dataset
    from aisle.rerank.train import catalog_texts

    ds = load_dataset(sample_data)
    trained_on = catalog_texts(ds)
    retriever = open_index_retriever(sample_index, None, ds)
    served = retriever.rerank_texts(sorted(trained_on))
    assert served == trained_on
    assert any(" | brand: " in t or " | category: " in t for t in served.values())


def test_first_stage_lists_are_kept_per_query_runtime(sample_data: Path, sample_index: Path,
                                                     tmp_path: Path) -> None:
    """Another int8 export of the query tower ranks a little differently over the same index:
    its first-stage lists are computed again, not read from the other's file."""
    from aisle.data.dataset import load_dataset
    from aisle.rerank.train import first_stage

    ds = load_dataset(sample_data)
    retriever = open_index_retriever(sample_index, None, ds)
    qids = sorted(ds.qrels("train"))[:5]
    kept = first_stage(retriever, ds, qids, 10, tmp_path)
    assert first_stage(retriever, ds, qids, 10, tmp_path) == kept
    assert len(list(tmp_path.glob("first-stage-*.json"))) == 1
    model = retriever.model

    class AnotherExport:
        runtime = query_runtime = "onnx-int8.11111111"

        def __getattr__(self, name: str) -> object:
            return getattr(model, name)

    retriever.model = AnotherExport()  # type: ignore[assignment]
    assert first_stage(retriever, ds, qids, 10, tmp_path) == kept  # same vectors here
    assert len(list(tmp_path.glob("first-stage-*.json"))) == 2


def test_a_cross_encoder_is_current_only_for_the_query_tower_its_first_stage_ran_on(
    reranker_dir: Path, sample_data: Path, sample_index: Path, tmp_path: Path
) -> None:
    """``make demo`` reuses a trained cross-encoder only when the index's default query
    tower is the one whose candidates it learnt from; a manifest that does not say which
    (written before it was recorded) is trained again."""
    from aisle.data.dataset import load_dataset
    from aisle.rerank.train import reranker_is_current
    from aisle.retrieval.retriever import index_query_runtime
    from aisle.retrieval.store import load_index

    ds, index = load_dataset(sample_data), load_index(sample_index)
    manifest = json.loads((reranker_dir / MANIFEST).read_text())
    assert manifest["first_stage"]["query_runtime"] == index_query_runtime(index.manifest)
    assert reranker_is_current(reranker_dir, TINY, ds, index)
    own = manifest["first_stage"]["query_runtime"]
    for i, runtime in enumerate((own, "onnx-int8.11111111+static.0123456789ab", None)):
        other = tmp_path / f"ce-{i}"
        shutil.copytree(reranker_dir, other)
        changed = json.loads(json.dumps(manifest))
        if runtime is None:
            del changed["first_stage"]["query_runtime"]
        else:
            changed["first_stage"]["query_runtime"] = runtime
        (other / MANIFEST).write_text(json.dumps(changed))
        assert reranker_is_current(other, TINY, ds, index) == (runtime == own), runtime
    # The index's model cannot be read (moved, say): nothing is current for it.
    moved = json.loads(json.dumps(index.manifest))
    moved["model"]["ref"] = str(tmp_path / "no-such-model")
    moved["model"].pop("tower_config", None)
    gone = dataclasses.replace(index, manifest=moved)
    assert not reranker_is_current(reranker_dir, TINY, ds, gone)


def test_queries_take_turns_and_a_turn_waited_for_is_spent_budget(
        sample_data: Path, sample_index: Path) -> None:
    """Two threads re-rank at once (the service's lanes): the second query's scoring waits
    for the first's, no longer than its budget; past it, it keeps its first-stage order at
    once instead of being scored late."""
    import threading
    import time
    from collections.abc import Sequence

    from aisle.data.dataset import load_dataset
    from aisle.rerank.model import Reranker
    from aisle.retrieval.rerank import RerankConfig

    class SlowScorer:
        def __init__(self) -> None:
            self.running = 0
            self.most = 0
            self.seconds = 1.0
            self.started = threading.Event()

        def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
            self.started.set()
            self.running += 1
            self.most = max(self.most, self.running)
            time.sleep(self.seconds)
            self.running -= 1
            return np.arange(len(pairs), dtype=np.float32)  # the first stage's order reversed

    scorer = SlowScorer()
    stage = Reranker(scorer, RerankConfig(depth=5, weight=0.7), {}, Path("."), "slow")
    retriever = open_index_retriever(sample_index, None, load_dataset(sample_data),
                                     reranker=stage)
    queries = retriever.prepare(["cordless drill", "white paint"])
    first = retriever.search(queries, 10, rerank_depth=0)
    ranked = [[(h.product_id, h.score) for h in f.hits] for f in first]
    answers: dict[int, list[object]] = {}

    def rerank(i: int, budget_s: float) -> None:
        deadline = time.monotonic() + budget_s
        answers[i] = retriever.rerank(queries[i : i + 1], ranked[i : i + 1], 10, 5, deadline)

    threads = [threading.Thread(target=rerank, args=(0, 5.0))]
    threads[0].start()
    assert scorer.started.wait(10)  # the first query holds the turn
    threads.append(threading.Thread(target=rerank, args=(1, 0.2)))
    waited = time.monotonic()
    threads[1].start()
    threads[1].join(10)
    waited = time.monotonic() - waited
    threads[0].join(10)
    assert not any(t.is_alive() for t in threads)
    assert scorer.most == 1  # never two queries on the scorer at once
    # Re-ranked: the scorer reverses the first stage's top 5 and w 0.7 lets it.
    assert [p for p, _ in answers[0][0]][:5] == [p for p, _ in ranked[0]][:5][::-1]
    assert answers[1][0] is ranked[1]  # its budget ran out waiting for the turn: first stage
    assert waited < 0.8  # it did not wait out the first query's 1 s turn, only its budget
    # With the turn free, the same budget is enough.
    scorer.seconds = 0.0
    again = retriever.rerank(queries[1:], ranked[1:], 10, 5, time.monotonic() + 0.3)[0]
    assert [p for p, _ in again][:5] == [p for p, _ in ranked[1]][:5][::-1]


def test_a_cross_encoder_of_weight_0_is_never_scored(sample_data: Path,
                                                     sample_index: Path) -> None:
    """Weight 0 (what dev picks when the cross-encoder does not beat the first stage) leaves
    every order as it is: searches answer in first-stage order without paying for scoring,
    and say that nothing was re-ranked."""
    from collections.abc import Sequence

    from aisle.data.dataset import load_dataset
    from aisle.rerank.model import Reranker
    from aisle.retrieval.rerank import RerankConfig

    class Unwanted:
        def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
            raise AssertionError("a weight-0 stage scored pairs")

    ds = load_dataset(sample_data)
    stage = Reranker(Unwanted(), RerankConfig(depth=5, weight=0.0), {}, Path("."), "none")
    retriever = open_index_retriever(sample_index, None, ds, reranker=stage)
    bare = open_index_retriever(sample_index, None, ds)
    texts = ["cordless drill", "white paint"]
    for asked in (None, 5):
        got = retriever.search_texts(texts, 10, rerank_depth=asked)
        want = bare.search_texts(texts, 10)
        assert [[h.product_id for h in f.hits] for f in got] == [
            [h.product_id for h in f.hits] for f in want]
        assert [f.reranked for f in got] == [0, 0]


def test_loading_a_cross_encoder_of_weight_0_says_it_will_not_re_rank(
        reranker_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    copy = shutil.copytree(reranker_dir, tmp_path / "ce")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["rerank"]["weight"] = 0.0
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="aisle.rerank.model"):
        assert load_reranker(copy).config.weight == 0.0
    assert any("weight 0" in r.getMessage() and "--rerank-weight" in r.getMessage()
               for r in caplog.records)
    caplog.clear()  # a weight given in its place is what searches use: nothing to warn of
    with caplog.at_level(logging.WARNING, logger="aisle.rerank.model"):
        assert load_reranker(copy, weight=0.5).config.weight == 0.5
    assert not [r for r in caplog.records if "weight 0" in r.getMessage()]
