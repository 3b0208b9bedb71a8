"""Shared fixtures: one real small model per session, a seeded synthetic catalog, real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.data.synthetic import write_sample
from aisle.towers.model import TwoTowerModel, load_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def base_model() -> TwoTowerModel:
    """The real all-MiniLM-L6-v2 (22M parameters), loaded once."""
    return load_model(None)


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("sample") / "sample", n_products=300)


@pytest.fixture(scope="session")
def homedepot() -> Path:
    path = SHARED_DATA / "homedepot"
    if not (path / "products.csv").is_file():
        pytest.skip("../shared/data/homedepot is not present")
    return path


@pytest.fixture(scope="session")
def sample_index(
    tmp_path_factory: pytest.TempPathFactory, sample_data: Path, base_model: TwoTowerModel
) -> Path:
    from aisle.indexing.build import build_index

    return build_index(sample_data, base_model, tmp_path_factory.mktemp("idx") / "index")


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory: pytest.TempPathFactory, sample_data: Path,
                 sample_index: Path) -> Path:
    """A tiny cross-encoder trained once over the sample index (real model, real training)."""
    from aisle.rerank.train import train_reranker
    from tests.rerank.conftest import TINY

    out = tmp_path_factory.mktemp("rerank") / "ce"
    train_reranker(sample_data, sample_index, out, TINY)
    return out


def reseal(directory: Path) -> None:
    """Record index ``directory``'s file sizes in its manifest as they are now. A test that
    edits a file to reach a check behind the size check (a row map relabelled, a BM25 file
    emptied) writes what a build would have recorded had the file been so when it ran."""
    import json

    from aisle.retrieval.store import file_sizes

    path = directory / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"] = file_sizes(directory)
    path.write_text(json.dumps(manifest), encoding="utf-8")
