"""Could a static query tower stand in for the transformer one? (#24's cold path)

A cold hybrid query's largest CPU share is the query tower: MiniLM-L6, int8, about a millisecond
a query here. A static tower (the mean of one learnt vector per word piece, as
sentence-transformers' ``StaticEmbedding``) costs a table lookup. This bench learns one from the
index's own query tower and measures what it gives up, with nothing written to disk:

    python bench/static_query.py --data runs/demo/data --index runs/demo/index

The student starts from the query tower's input word-piece embeddings and a linear map (identity
at first), and is trained to reproduce the query tower's vectors (cosine) on the train split's
queries, prepared as every search prepares them, and on the catalog's titles as stand-in
queries. It never sees a judgment, and the product vectors (the index) stay as they are. The
linear map is then folded into the table (the mean commutes with it), so a query costs one
tokenizer call and a mean.

Printed: on ``--split`` (dev), hybrid at the index's fusion and dense alone, each as nDCG@10,
condensed nDCG@10, judged@10, recall@100 and the paired bootstrap 95% interval of the nDCG@10
difference against the query tower, per seed; then each tower's CPU time a query, one query a
call, and the ratio.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from query_path import per_query, table
from tokenizers import Tokenizer

from aisle.data.dataset import load_dataset
from aisle.evaluation.run import open_index_retriever
from aisle.retrieval.config import Mode
from aisle.retrieval.retriever import Retriever
from aisle.towers.layout import load_towers
from aisle.towers.model import directory_pooling, resolve_model_ref

log = logging.getLogger("bench.static_query")
Encode = Callable[[Sequence[str]], np.ndarray]


class StaticStudent(torch.nn.Module):
    """Mean of word-piece vectors, then a linear map; unit vectors out."""

    def __init__(self, tokenizer: Tokenizer, table: torch.Tensor, dim: int) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.unk = tokenizer.token_to_id("[UNK]") or 0
        self.emb = torch.nn.EmbeddingBag.from_pretrained(table.clone(), freeze=False, mode="mean")
        self.lin = torch.nn.Linear(table.shape[1], dim)
        with torch.no_grad():  # identity where the widths agree: the start is the input table
            self.lin.weight.copy_(torch.eye(dim, table.shape[1]))
            self.lin.bias.zero_()

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids or [self.unk] for e in
                self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        ids = self.ids(texts)
        flat = torch.tensor([t for row in ids for t in row])
        offsets = torch.tensor([0, *np.cumsum([len(row) for row in ids])[:-1].tolist()])
        return F.normalize(self.lin(self.emb(flat, offsets)), dim=-1)  # (B, D)

    def table(self) -> np.ndarray:
        """One row per word piece, the linear map folded in (the mean commutes with it)."""
        with torch.no_grad():
            return (self.emb.weight @ self.lin.weight.T + self.lin.bias).numpy()

    def folded(self) -> Encode:
        """The trained tower as numpy: a mean of ``table`` rows, then unit length."""
        table = self.table()

        def encode(texts: Sequence[str]) -> np.ndarray:
            rows = np.stack([table[i].mean(axis=0) for i in self.ids(texts)])
            return rows / np.linalg.norm(rows, axis=1, keepdims=True)

        return encode


def save_student(student: StaticStudent, out: Path) -> Path:
    """Write the folded tower as a sentence-transformers directory (``StaticEmbedding``, then
    ``Normalize``): ``SentenceTransformer(out).encode`` gives what ``folded()`` gives, for any
    text with a word piece (an empty text is a zero vector there, [UNK]'s here)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    from aisle.artifacts import atomic_dir

    static = StaticEmbedding(Tokenizer.from_str(student.tokenizer.to_str()),
                             embedding_weights=student.table())
    with atomic_dir(out, None) as tmp:
        SentenceTransformer(modules=[static, Normalize()], device="cpu").save(
            str(tmp), create_model_card=False)
    return out


def train_student(student: StaticStudent, texts: list[str], targets: np.ndarray, epochs: int,
                  batch: int, seed: int) -> None:
    """Cosine distillation: each text's student vector towards the query tower's."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([{"params": student.emb.parameters(), "lr": 3e-3},
                            {"params": student.lin.parameters(), "lr": 1e-3}])
    goal = torch.from_numpy(targets)
    for epoch in range(epochs):
        order = torch.randperm(len(texts), generator=gen)
        total = 0.0
        for start in range(0, len(texts), batch):
            idx = order[start:start + batch]
            loss = (1 - (student([texts[i] for i in idx]) * goal[idx]).sum(-1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log.info("seed %d epoch %d: mean 1 - cosine %.4f", seed, epoch + 1, total / len(texts))


def encode_all(encode: Encode, texts: list[str], batch: int = 256) -> np.ndarray:
    out = [encode(texts[s:s + batch]) for s in range(0, len(texts), batch)]
    return np.concatenate(out).astype(np.float32)


def scored(retriever: Retriever, ds_qrels: dict[str, dict[str, float]], top_grade: float,
           qids: list[str], queries: list, vectors: np.ndarray, mode: Mode
           ) -> dict[str, np.ndarray]:
    found = retriever.search(queries, 100, mode, vectors)
    runs = {q: [h.product_id for h in f.hits] for q, f in zip(qids, found, strict=True)}
    return per_query(runs, ds_qrels, top_grade)


def cpu_ms(encode: Encode, texts: Sequence[str]) -> float:
    for text in texts[:20]:  # untimed: first-call costs
        encode([text])
    started = time.process_time()
    for text in texts:
        encode([text])
    return (time.process_time() - started) / len(texts) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared or canonical dir")
    parser.add_argument("--index", type=Path, required=True, help="an index built over it")
    parser.add_argument("--split", default="dev", help="the split scored (train is learnt on)")
    parser.add_argument("--seeds", default="13,14", help="one student per seed")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--titles", type=int, default=0,
                        help="catalog titles learnt on as stand-in queries (0: all)")
    parser.add_argument("--timed", type=int, default=1000, help="queries timed per tower")
    parser.add_argument("--out", type=Path, default=None,
                        help="also save the first seed's static tower here, as a "
                        "sentence-transformers directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    ds = load_dataset(args.data)
    retriever = open_index_retriever(args.index, None, ds)
    model = retriever.model
    texts = ds.query_texts()
    split_of = dict(zip(ds.queries["query_id"], ds.queries["split"], strict=True))
    train = [texts[q] for q in texts if split_of[q] == "train"]
    titles = [str(t) for t in ds.products["title"]]
    titles = titles[:args.titles] if args.titles else titles
    # Learnt on the texts as the query tower reads them: prepared (normalised, corrected).
    learnt = sorted({q.text for q in retriever.prepare(train)} | {q.text for q in
                                                                   retriever.prepare(titles)})
    log.info("%d train queries and %d titles: %d distinct prepared texts", len(train),
             len(titles), len(learnt))
    teacher: Encode = lambda batch: model.encode_query(batch).numpy()  # noqa: E731
    targets = encode_all(teacher, learnt)

    model_dir = resolve_model_ref(retriever.index.model_ref)
    query_st, _ = load_towers(model_dir, directory_pooling(model_dir), "cpu")
    tokenizer = Tokenizer.from_str(query_st.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    table0 = query_st[0].auto_model.get_input_embeddings().weight.detach().float()

    qrels = ds.qrels(args.split)
    assert ds.top_grade is not None
    qids = [q for q in qrels if q in texts]
    prepared = retriever.prepare([texts[q] for q in qids])
    searched = [q.text for q in prepared]
    students: list[tuple[int, Encode]] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        student = StaticStudent(tokenizer, table0, model.dim)
        train_student(student, learnt, targets, args.epochs, args.batch, seed)
        students.append((seed, student.folded()))
        if args.out is not None and len(students) == 1:
            log.info("saved the static query tower of seed %d to %s", seed,
                     save_student(student, args.out))

    for mode in ("hybrid", "dense"):
        rows = [(f"{mode}: the query tower ({model.runtime})",
                 scored(retriever, qrels, ds.top_grade, qids, prepared,
                        encode_all(teacher, searched), mode), "")]  # type: ignore[arg-type]
        for seed, encode in students:
            rows.append((f"{mode}: static query tower, seed {seed}",
                         scored(retriever, qrels, ds.top_grade, qids, prepared,
                                encode_all(encode, searched), mode), ""))  # type: ignore[arg-type]
        fused = f"; weight {retriever.fusion.weight}" if mode == "hybrid" else ""
        table(f"{mode} ({args.split}, k = 100{fused}; no latency here: see below)", rows)

    timed = searched[:args.timed]
    tower = cpu_ms(teacher, timed)
    static = cpu_ms(students[0][1], timed)
    print(f"\nquery encoding, one query a call, {len(timed)} {args.split} queries: "
          f"CPU ms a query")
    print("| tower | CPU ms | x query tower |\n| --- | --- | --- |")
    print(f"| query tower ({model.runtime}) | {tower:.3f} | 1.00 |")
    print(f"| static (numpy) | {static:.3f} | {static / tower:.4f} |")


if __name__ == "__main__":
    main()
