from __future__ import annotations

import pytest

from aisle.data.synthetic import generate


def test_sample_sizes() -> None:
    tables = generate(n_products=40, n_queries=12, seed=3)
    assert len(tables["products"]) == 40
    assert tables["queries"]["query"].is_unique and len(tables["queries"]) == 12


def test_more_queries_than_the_vocabulary_makes_is_refused() -> None:
    # It used to draw forever, looking for a text it had not made yet.
    with pytest.raises(ValueError, match="distinct query texts at most"):
        generate(n_products=40, n_queries=100_000)
