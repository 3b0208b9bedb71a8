"""A killed rollback never turns into a roll forward; a first build refused for its input
leaves no --out behind; a prepared catalog whose products file no longer holds what its
manifest counts is refused, not indexed under the fingerprint of another catalog; the build
command over an up-to-date plain index directory says so."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import aisle.indexing.versions as versions
from aisle.errors import DataError
from aisle.indexing.build import build_version
from aisle.indexing.update import update_version
from aisle.indexing.versions import current_id, list_versions, promote, rollback
from aisle.towers.model import TwoTowerModel


def _fake_versions(root: Path, ids: list[str]) -> None:
    for i, vid in enumerate(ids):
        d = root / "versions" / vid
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({"kind": "aisle.index", "created": i + 1,
                                                     "model": {"ref": "m", "fingerprint": "f"}}))
        promote(root, vid)


def test_a_rollback_killed_between_its_writes_then_run_again_goes_back_not_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    _fake_versions(root, ["a", "b", "c"])
    real = versions.atomic_write_text
    calls: list[Path] = []

    def killed_on_second_write(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two writes
        real(path, text)

    monkeypatch.setattr(versions, "atomic_write_text", killed_on_second_write)
    with pytest.raises(KeyboardInterrupt):
        rollback(root)
    monkeypatch.setattr(versions, "atomic_write_text", real)
    # Whatever the kill left, the operator's next rollback moves back from c, never onto it.
    assert current_id(root) in ("b", "c")
    assert rollback(root) in ("a", "b")
    assert current_id(root) != "c"


@pytest.mark.parametrize("data", ["typo", "empty"])
def test_a_first_build_refused_for_its_input_leaves_no_out_behind(
    data: str, tmp_path: Path, base_model: TwoTowerModel
) -> None:
    src = tmp_path / data
    if data == "empty":
        src.mkdir()
        (src / "products.csv").write_text("product_id,title,description,brand,category\n")
    root = tmp_path / "runs" / "index"
    # Each names the input given (not the temporary preparation of a CSV catalog).
    with pytest.raises(DataError, match=f"^{re.escape(str(src))}"):
        build_version(src, base_model, root)
    assert not root.exists()
    # A root that was there before the failed build stays, lock file and all.
    root.mkdir()
    with pytest.raises(DataError):
        build_version(src, base_model, root)
    assert root.is_dir()


def test_a_prepared_catalog_whose_products_file_was_replaced_is_refused(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
) -> None:
    day1 = prepare_catalog(catalog.iloc[:80], "day1")
    root = tmp_path / "root"
    first = build_version(day1, base_model, root).name
    # Another catalog's products copied over day1's after `aisle prepare`: the manifest (its
    # fingerprint and count) still describes the 80 products. An update used to call that
    # "already current", a build to index the 40 under the 80's fingerprint.
    other = prepare_catalog(catalog.iloc[:40], "other")
    shutil.copy(other / "products.parquet", day1 / "products.parquet")
    for job in (lambda: update_version(day1, root, base_model),
                lambda: build_version(day1, base_model, root, force=True),
                lambda: build_version(day1, base_model, tmp_path / "fresh")):
        with pytest.raises(DataError, match=r"80.*40|40.*80"):
            job()
    # The same count, one title edited in place: the manifest's fingerprint still calls it
    # the catalog of the current version, and an update used to say "already current".
    same = prepare_catalog(catalog.iloc[:80], "same")
    assert update_version(same, root, base_model).name == first  # unedited: current
    table = pq.read_table(same / "products.parquet")
    titles = table.column("title").to_pylist()
    titles[3] = "edited " + titles[3]
    pq.write_table(table.set_column(table.schema.get_field_index("title"), "title",
                                    pa.array(titles)), same / "products.parquet")
    for job in (lambda: update_version(same, root, base_model),
                lambda: build_version(same, base_model, tmp_path / "fresh")):
        with pytest.raises(DataError, match="bytes are not those `aisle prepare` wrote"):
            job()
    (day1 / "products.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="prepare"):
        build_version(day1, base_model, root, force=True)
    assert [v.id for v in list_versions(root)] == [first] and current_id(root) == first
    assert not (tmp_path / "fresh").exists()


def test_the_build_command_over_an_up_to_date_plain_index_says_so(
    catalog: pd.DataFrame,
    prepare_catalog: Callable[[pd.DataFrame, str], Path],
    base_model: TwoTowerModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aisle.cli import main
    from aisle.indexing.build import build_index

    data = prepare_catalog(catalog.iloc[:40], "d40")
    plain = build_index(data, base_model, tmp_path / "plain")  # what aisle demo writes
    capsys.readouterr()
    assert main(["index", "--data", str(data), "--out", str(plain)]) == 0
    out = capsys.readouterr().out
    # It used to say the index was "written ..., not current" and to promote a version
    # named after the directory, which does not exist.
    assert "not current" not in out and "promote" not in out
    assert f"{plain} is up to date" in out
    assert not (plain / "versions").exists()
