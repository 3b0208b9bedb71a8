"""``--engine ray`` embeds the catalog as a Ray Data job, giving the local engine's vectors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aisle.indexing.embed_job import embed_catalog
from aisle.towers.model import TwoTowerModel


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    # address="local": a Ray of its own, never a cluster some other process left running.
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_and_local_engines_give_the_same_embeddings(
    local_ray: None,
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    data = prepare_catalog(catalog.iloc[:40], "cat")  # one block: one Ray job (~1 min here)
    local = embed_catalog(data, base_model, tmp_path / "local")
    remote = embed_catalog(data, base_model, tmp_path / "ray", engine="ray")
    assert remote.encoded == local.encoded == 40
    pd.testing.assert_frame_equal(local.rows, remote.rows)
    np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-5)
    # Ray's usage collection was off for the job: aisle sends nothing anywhere at run time.
    assert os.environ["RAY_DATA_USAGE_DISABLED"] == "1"


def test_ray_usage_collection_is_off_unless_the_environment_turns_it_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aisle.indexing.ray_engine import USAGE_OFF, quiet_usage

    for name in USAGE_OFF:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # the user's choice stands
    quiet_usage()
    assert os.environ["RAY_DATA_USAGE_DISABLED"] == "1"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"


def test_the_local_engine_does_not_import_ray() -> None:
    code = (
        "import sys; import aisle.indexing.build, aisle.indexing.update, aisle.cli; "
        "sys.exit('ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
