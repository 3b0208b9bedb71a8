"""``aisle static-query``: learn a model's static query tower from its own query tower.

The student (aisle/towers/static.py) is the mean of one vector per word piece, then a linear
map, then unit length. It starts from the query transformer's input word-piece embeddings (the
map the identity), and learns by cosine distillation to give the query tower's vector for each
text: the data's train-split queries and its catalog titles as stand-in queries, prepared as a
search prepares them (normalised; lower-cased where the tower is case-blind). It never sees a
judgment, and the product tower is not touched, so an index built with the model serves with
it. The map is folded into the table at the end (the mean commutes with it), so a query costs
one tokenizer call and a mean.

The teacher is the query tower the model serves with (its int8 export where it has one): the
static tower stands in for it, against the product vectors that runtime put in the index.
Agreement (cosine with the teacher) is measured on texts held out of training, and the
export is refused below ``min_mean_cosine``. Measured on homedepot with the demo's cascade
(docs/results.md): about 0.003 of dev hybrid nDCG@10 for a 50x cheaper query tower.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from aisle.errors import AisleError
from aisle.towers.model import TwoTowerModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticConfig:
    # Three passes over ~65k homedepot texts: the held-out cosine has flattened by then.
    epochs: int = 3
    batch_size: int = 512
    seed: int = 13
    table_lr: float = 3e-3
    map_lr: float = 1e-3
    # Catalog titles learnt on as stand-in queries (0: none, -1: all): they cover the words
    # the catalog uses that the train queries never did.
    titles: int = -1
    held_out: float = 0.02  # share of the texts kept out of training to measure agreement
    min_mean_cosine: float = 0.85  # refuse a student this far from its teacher (a broken run)

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1)):
            if getattr(self, name) < low:
                raise AisleError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not 0.0 < self.held_out < 0.5:
            raise AisleError(f"held_out must be in (0, 0.5), got {self.held_out}")
        if not 0.0 <= self.min_mean_cosine <= 1.0:
            raise AisleError(f"min_mean_cosine must be in [0, 1], got {self.min_mean_cosine}")


class StaticStudent(torch.nn.Module):
    """Mean of word-piece vectors, then a linear map; unit vectors out."""

    def __init__(self, tokenizer: Any, table: torch.Tensor, dim: int) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.emb = torch.nn.EmbeddingBag.from_pretrained(table.clone(), freeze=False, mode="mean")
        self.lin = torch.nn.Linear(table.shape[1], dim)
        with torch.no_grad():  # identity where the widths agree: the start is the input table
            self.lin.weight.copy_(torch.eye(dim, table.shape[1]))
            self.lin.bias.zero_()

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors. A text with no word piece gets the bias's direction here and the
        zero vector once folded (as in sentence-transformers); none is learnt on."""
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        flat = torch.tensor([t for row in ids for t in row])
        offsets = torch.tensor([0, *np.cumsum([len(row) for row in ids])[:-1].tolist()])
        return F.normalize(self.lin(self.emb(flat, offsets)), dim=-1)  # (B, D)

    def table(self) -> np.ndarray:
        """One row per word piece, the linear map folded in (the mean commutes with it)."""
        with torch.no_grad():
            return (self.emb.weight @ self.lin.weight.T + self.lin.bias).numpy()


def student_for(model: TwoTowerModel) -> StaticStudent:
    """A student started from ``model``'s query transformer (torch): its input word-piece
    table and its tokenizer, cut at the query length."""
    from sentence_transformers.sentence_transformer import modules as models
    from tokenizers import Tokenizer

    first = model.query.model[0]
    if not isinstance(first, models.Transformer):
        raise AisleError(f"a static query tower starts from a transformer's word pieces; this "
                         f"query tower starts with {type(first).__name__}")
    tokenizer = Tokenizer.from_str(first.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(model.config.max_query_length)
    table = first.auto_model.get_input_embeddings().weight.detach().float().cpu()
    return StaticStudent(tokenizer, table, model.dim)


def training_texts(queries: Sequence[str], titles: Sequence[str], fold_case: bool
                   ) -> list[str]:
    """The distinct texts learnt on, prepared as a search prepares a query (normalised, and
    lower-cased where the tower is case-blind; spelling is left out: no index is needed)."""
    from aisle.retrieval.querytext import normalise

    texts = {normalise(t) for t in (*queries, *titles)}
    return sorted(t.lower() if fold_case else t for t in texts if t)


def train_student(student: StaticStudent, texts: Sequence[str], targets: np.ndarray,
                  cfg: StaticConfig) -> None:
    """Cosine distillation: each text's student vector towards the teacher's."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam([{"params": student.emb.parameters(), "lr": cfg.table_lr},
                            {"params": student.lin.parameters(), "lr": cfg.map_lr}])
    goal = torch.from_numpy(targets)
    steps = -(-len(texts) // cfg.batch_size)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(texts), generator=gen)
        total = 0.0
        for start in tqdm(range(0, len(texts), cfg.batch_size), total=steps, unit="batch",
                          desc=f"static query tower, epoch {epoch + 1}/{cfg.epochs}"):
            idx = order[start:start + cfg.batch_size]
            loss = (1 - (student([texts[i] for i in idx]) * goal[idx]).sum(-1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log.info("epoch %d: mean 1 - cosine %.4f", epoch + 1, total / len(texts))


def agreement(student: StaticStudent, texts: Sequence[str], targets: np.ndarray
              ) -> dict[str, float]:
    """Cosine of the student's vectors with the teacher's: mean and 1st percentile."""
    with torch.no_grad():
        cos = (student(texts).numpy() * targets).sum(axis=1)
    return {"mean_cosine": round(float(cos.mean()), 4),
            "p1_cosine": round(float(np.percentile(cos, 1)), 4), "texts": len(texts)}


def distill(teacher: TwoTowerModel, start: TwoTowerModel, queries: Sequence[str],
            titles: Sequence[str], cfg: StaticConfig) -> tuple[StaticStudent, dict[str, Any]]:
    """A static student of ``teacher``'s query tower, started from ``start``'s (the same
    weights on torch); and what the manifest records of it."""
    from aisle.retrieval.querytext import case_blind

    picked = list(titles) if cfg.titles < 0 else list(titles)[:cfg.titles]
    texts = training_texts(queries, picked, case_blind(teacher))
    if teacher.config.normalise_units:  # as the tower reads them (it reads them so at search)
        from aisle.towers.units import normalise_units

        texts = sorted({normalise_units(t) for t in texts})
    random.Random(cfg.seed).shuffle(texts)
    n_out = max(1, round(len(texts) * cfg.held_out))
    if len(texts) - n_out < 1:
        raise AisleError(f"{len(texts)} distinct texts are too few to learn a static query "
                         "tower from; pass data with train queries or a catalog")
    log.info("learning a static query tower on %d texts (%d held out)", len(texts) - n_out,
             n_out)
    targets = teacher.encode_query(texts, progress=True).numpy()
    torch.manual_seed(cfg.seed)
    student = student_for(start)
    train_student(student, texts[n_out:], targets[n_out:], cfg)
    agreed = agreement(student, texts[:n_out], targets[:n_out])
    log.info("static query tower against %s: mean cosine %.4f, 1st percentile %.4f on %d "
             "held-out texts", teacher.runtime, agreed["mean_cosine"], agreed["p1_cosine"],
             n_out)
    if agreed["mean_cosine"] < cfg.min_mean_cosine:
        raise AisleError(f"the static query tower agrees with the query tower at mean cosine "
                         f"{agreed['mean_cosine']} < min_mean_cosine {cfg.min_mean_cosine}; "
                         "nothing was written (train longer, or on more texts)")
    record = {"teacher_runtime": teacher.runtime, "texts": len(texts) - n_out,
              "config": asdict(cfg), "agreement": agreed}
    return student, record


def save_student(student: StaticStudent, out: Path) -> None:
    """Write the folded tower as a sentence-transformers directory (``StaticEmbedding`` then
    ``Normalize``) at ``out``, which must not exist (an ``atomic_dir`` temp)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from tokenizers import Tokenizer

    static = StaticEmbedding(Tokenizer.from_str(student.tokenizer.to_str()),
                             embedding_weights=student.table())
    SentenceTransformer(modules=[static, Normalize()], device="cpu").save(
        str(out), create_model_card=False)


def export_static(model: str | Path, data: Path, cfg: StaticConfig | None = None
                  ) -> dict[str, Any]:
    """Learn ``model``'s static query tower on ``data`` and publish it into the model
    directory (``static_query/``, then the manifest's ``static_query`` section); the section.
    Nothing is written when it fails or is refused."""
    import hashlib
    import json
    import shutil

    from aisle.artifacts import MANIFEST, atomic_dir, atomic_write_text, read_manifest
    from aisle.data.dataset import load_dataset
    from aisle.errors import ArtifactError
    from aisle.towers.model import KIND, load_model, resolve_model_ref, write_card
    from aisle.towers.static import STATIC_DIR

    cfg = cfg or StaticConfig()
    src = resolve_model_ref(model)
    if not (src / MANIFEST).is_file():
        raise ArtifactError(f"{model}: not an aisle model directory; save a copy with `aisle "
                            "export --out DIR` (or train one) and learn its static tower there")
    weights = read_manifest(src, KIND).get("weights_fingerprint")
    if not weights:
        raise ArtifactError(f"{src}: the manifest records no weights_fingerprint; re-save it")
    ds = load_dataset(Path(data))
    queries = ds.queries.loc[ds.queries["split"] == "train", "query"].astype(str).tolist()
    titles = ds.products["title"].astype(str).tolist()
    teacher = load_model(src, query_tower="transformer")  # as it serves: int8 where exported
    start = load_model(src, backend="torch", query_tower="transformer")
    student, record = distill(teacher, start, queries, titles, cfg)
    # A folder named by its table, never rewritten in place: a loader reads the section's
    # folder, and until the manifest names the new one every reader gets the old pair.
    table = student.table()
    folder = f"{STATIC_DIR}-{hashlib.sha256(table.tobytes()).hexdigest()[:12]}"
    if read_manifest(src, KIND).get("weights_fingerprint") != weights:
        raise ArtifactError(f"{src} was saved again while its static tower was learnt; run "
                            "`aisle static-query` again")
    with atomic_dir(src / folder, None) as tmp:
        save_student(student, tmp)
    manifest = read_manifest(src, KIND)  # as it is now: an ONNX export may have landed
    old = (manifest.get("static_query") or {}).get("dir")
    section = {"dir": folder, "weights_fingerprint": weights,
               "data": {t: ds.fingerprint(t) for t in ("queries", "products")},
               **record}
    body = json.dumps({**manifest, "static_query": section}, indent=2, sort_keys=True) + "\n"
    atomic_write_text(src / MANIFEST, body)
    write_card(src)
    if old and old != folder and (src / old).is_dir():  # loaded towers hold their tables
        shutil.rmtree(src / old, ignore_errors=True)
    log.info("published the static query tower to %s", src / folder)
    return section


__all__ = ["StaticConfig", "StaticStudent", "distill", "export_static", "save_student"]
