"""Finding the served version of a versioned index root."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.errors import ArtifactError
from aisle.retrieval.layout import CURRENT, resolve_index_dir


def _root(tmp_path: Path, current: str) -> Path:
    (tmp_path / "versions" / "v1").mkdir(parents=True)
    (tmp_path / "versions" / "v1" / "manifest.json").write_text("{}")
    (tmp_path / CURRENT).write_text(current)
    return tmp_path


def test_current_names_the_served_version(tmp_path: Path) -> None:
    root = _root(tmp_path, "v1\n")
    assert resolve_index_dir(root) == root / "versions" / "v1"
    plain = tmp_path / "plain"  # an index directory without versions is itself
    plain.mkdir()
    assert resolve_index_dir(plain) == plain


@pytest.mark.parametrize("current", ["", "\n", "  \n"])
def test_an_empty_current_says_so_and_how_to_fix_it(tmp_path: Path, current: str) -> None:
    root = _root(tmp_path, current)
    with pytest.raises(ArtifactError, match=r"CURRENT is empty; .*aisle index promote --out"):
        resolve_index_dir(root)
