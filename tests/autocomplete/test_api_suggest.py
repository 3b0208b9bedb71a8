from __future__ import annotations

from pathlib import Path

import aisle
from aisle.autocomplete.lookup import Autocomplete


def test_open_index_with_an_autocomplete_artifact_suggests(
    sample_index: Path, ac_index: Path
) -> None:
    idx = aisle.open_index(sample_index, autocomplete=ac_index)
    want = [s.text for s in Autocomplete.load(ac_index).suggest("moen sh", 5)]
    assert want and idx.suggest("moen sh", 5) == want
