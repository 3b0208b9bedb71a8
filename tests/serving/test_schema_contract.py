"""The OpenAPI document is the contract: schemathesis, with every check it has, against a real
`aisle serve` (its own process, on a free port) over the sample index (whose products carry
text, number and boolean fields to filter on) and an autocomplete artifact. A schema-valid
request the service refuses (a filter condition its grammar admits included), a schema-invalid
one it accepts, an undocumented status or media type, an error in another shape, a 405 whose
Allow header leaves a method out: each fails here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis

from aisle.data.fields import FieldType
from aisle.serving.app import create_app
from aisle.serving.config import ServeConfig
from aisle.serving.openapi import contract
from aisle.towers.model import TwoTowerModel
from tests.serving.conftest import aisle_serve

ADMIN_TOKEN = "contract-token"

# The document schemathesis generates from: what the service documents at the default limits
# over the sample catalog's fields. test_the_service_serves_this_document holds the running
# service to it.
FIELDS: dict[str, FieldType] = {"brand": "string", "category": "string", "in_stock": "boolean",
                                "price": "number"}
DOCUMENT = contract(create_app(ServeConfig()), ServeConfig(), FIELDS)

CONFIG = schemathesis.Config.from_dict({
    "checks": {"enabled": True},  # every check, as `schemathesis run --checks all`
    # Reproducible: a fixed seed, and no example database replaying an earlier run.
    "seed": 20261203,
    # ASCII text only: schemathesis 4.32 reads \p{L} and \p{N} in a pattern as Latin letters
    # and ASCII digits (its core/jsonschema/patterns.py), in generating and in judging alike,
    # so it takes a query of other letters ("ʎʖ", "กา") for one the schema forbids and fails
    # the service for searching it. In ASCII its reading of the query pattern is exact.
    # Other scripts, emoji and odd bytes are tested in test_app.py and test_app_input.py.
    "generation": {"max-examples": 25, "database": "none", "codec": "ascii"},
    # A slow shared machine is no finding about the service.
    "suppress-health-check": ["too_slow"],
    # With the token, /admin/reload is exercised (200) as well as refused (ignored_auth
    # sends requests without it and expects 401).
    "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    # The coverage phase (every boundary case the schema defines) is off: on 2026-12-04, with
    # schemathesis 4.32.5 and hypothesis 6.170.27, it ran past 5 minutes without finishing, at
    # faf3039 as at today's code, drawing oversized strings for the batch queries' pattern
    # (faulthandler: coverage/_schema.py _generate_oversized_string). Boundary inputs (k, query
    # length, batch size) are tested directly in test_app_input.py; examples and fuzzing run.
    "phases": {"coverage": {"enabled": False}},
})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def autocomplete_index(tmp_path_factory: pytest.TempPathFactory,
                       base_model: TwoTowerModel) -> Path:
    from aisle.autocomplete.build import build_autocomplete
    from tests.autocomplete.conftest import SMALL, generated_dataset

    out = tmp_path_factory.mktemp("contract-ac") / "autocomplete"
    return build_autocomplete(generated_dataset(), base_model, out, SMALL)


@pytest.fixture(scope="module")
def served(sample_index: Path, autocomplete_index: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    """The base URL of `aisle serve` on a free port, once it is ready."""
    log = tmp_path_factory.mktemp("contract-serve") / "serve.log"
    with aisle_serve(["--index", str(sample_index), "--autocomplete", str(autocomplete_index),
                      "watch_interval_s=0"], log, {"AISLE_ADMIN_TOKEN": ADMIN_TOKEN}) as url:
        yield url


def test_the_service_serves_this_document(served: str, sample_index: Path) -> None:
    from aisle.retrieval.store import load_index

    assert load_index(sample_index).fields.types == FIELDS
    assert httpx.get(f"{served}/openapi.json").json() == DOCUMENT


@schema.parametrize()
def test_the_service_keeps_its_contract(case: schemathesis.Case, served: str) -> None:
    case.call_and_validate(base_url=served)
