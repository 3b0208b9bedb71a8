from __future__ import annotations

from pathlib import Path

import pytest

from aisle.configs import load_config
from aisle.errors import AisleError
from aisle.retrieval.config import IndexConfig
from aisle.towers.config import TowerConfig
from aisle.training.config import TrainConfig


def test_toml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('seed = 7\n[step2]\nalpha = 0.0\n[tower]\npooling = "max"\n')
    cfg = load_config(TrainConfig, path, ["step1.epochs=3", "step2.shared=true"])
    assert cfg.seed == 7 and cfg.tower.pooling == "max"
    assert cfg.step1.epochs == 3 and cfg.step2.alpha == 0.0 and cfg.step2.shared is True
    # A partial [step2] table keeps step 2's own defaults for the keys it does not name.
    assert cfg.step2.min_grade_fraction == TrainConfig().step2.min_grade_fraction == 0.835
    assert cfg.step1.min_grade_fraction == 0.5
    assert cfg.step1.min_grade == cfg.step2.min_grade == 0.0  # no absolute grade


def test_the_shipped_cascade_config_is_the_code_default() -> None:
    from importlib import resources

    path = Path(str(resources.files("aisle") / "configs" / "cascade.toml"))
    assert load_config(TrainConfig, path) == TrainConfig()


def test_the_shipped_approximate_index_config_is_approximate() -> None:
    from importlib import resources

    from aisle.retrieval.config import APPROXIMATE

    path = Path(str(resources.files("aisle") / "configs" / "index-approximate.toml"))
    assert load_config(IndexConfig, path) == APPROXIMATE


def test_the_shipped_compact_index_config_builds_the_10m_rows_index() -> None:
    from importlib import resources

    path = Path(str(resources.files("aisle") / "configs" / "index-compact.toml"))
    config = load_config(IndexConfig, path)
    assert config.fast_scan and config.rerank_codes == "sq8" and 384 % config.pq_m == 0
    # The 10M row's build: residual codes, lists found through a graph (docs/results.md).
    assert config.pq_residual and config.coarse == "hnsw" and config.kmeans_iters == 10


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nope=1"], "unknown config key"),
        (["step1.epochs=many"], "is not of type int"),
        (["pooling=median"], "is not one of"),
        (["pooling"], "key=value"),
        (["bm25_analyzer=stem"], "is not one of"),
        (["bm25_k1=0"], "bm25_k1 must be > 0"),
        (["bm25_b=1.5"], r"bm25_b must be in \[0, 1\]"),
        # A nested table's own check names the table, since both steps share every key.
        (["step2.min_grade_fraction=0"], r"config table 'step2': min_grade_fraction must be"),
        (["step1.min_grade=-1"], r"config table 'step1': min_grade must be >= 0"),
    ],
)
def test_bad_overrides_say_what_is_wrong(overrides: list[str], message: str) -> None:
    cls: type = TowerConfig if overrides[0].startswith("pooling") else TrainConfig
    if overrides[0].startswith("bm25"):
        cls = IndexConfig
    with pytest.raises(AisleError, match=message):
        load_config(cls, None, overrides)


def test_missing_or_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(AisleError, match="does not exist"):
        load_config(TowerConfig, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("pooling = [")
    with pytest.raises(AisleError, match="not valid TOML"):
        load_config(TowerConfig, bad)


def test_a_nested_table_is_named_once() -> None:
    from aisle.autocomplete.config import AutocompleteConfig

    with pytest.raises(AisleError, match=r"^config table 'pairs': top_grade_fraction must be"):
        load_config(AutocompleteConfig, None, ["pairs.top_grade_fraction=0"])


def test_a_quoted_toml_value_is_read_as_override_text(tmp_path: Path) -> None:
    # Text is parsed wherever it comes from (as the AISLE_* variables are), so a quoted
    # number is its number, and a quoted value that is no whole number is still refused.
    path = tmp_path / "c.toml"
    path.write_text('[step1]\nepochs = "3"\nlr = "2e-5"\n')
    step1 = load_config(TrainConfig, path).step1
    assert (step1.epochs, step1.lr) == (3, 2e-5)
    path.write_text('[step1]\nepochs = "2.7"\n')
    with pytest.raises(AisleError, match=r"'step1.epochs': '2.7' is not of type int"):
        load_config(TrainConfig, path)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[step1]\nepochs = 2.7\n", r"'step1.epochs': 2.7 is a float, not int"),
        ("[step1]\nbatch_size = true\n", r"'step1.batch_size': True is a bool, not int"),
        ('base_model = ["a", "b"]\n', r"'base_model': \['a', 'b'\] is a list, not str"),
        ("[step2]\nlr = false\n", r"'step2.lr': False is a bool, not float"),
    ],
)
def test_a_toml_value_of_the_wrong_type_is_refused_not_cast(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(AisleError, match=message):
        load_config(TrainConfig, path)


def test_a_toml_int_is_a_float(tmp_path: Path) -> None:
    # `temperature = 1` in TOML is an int; a float key takes it as 1.0.
    path = tmp_path / "c.toml"
    path.write_text("[step2]\ntemperature = 1\n")
    assert load_config(TrainConfig, path).step2.temperature == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tower.product_fields=titel", r"product_fields \['titel'\]: use each of"),
        ("tower.product_fields=", r"product_fields \[''\]"),
        ("tower.product_fields=brand,category", "title included"),
        ("tower.product_fields=title,title", "at most once"),
        ("tower.max_product_length=0", "config table 'tower': max_product_length must be >= 1"),
        ("tower.batch_size=-4", "batch_size must be >= 1"),
    ],
)
def test_tower_fields_that_would_empty_the_product_text_are_refused(
    override: str, message: str
) -> None:
    with pytest.raises(AisleError, match=message):
        load_config(TrainConfig, None, [override])
    fields = load_config(TrainConfig, None, ["tower.product_fields=title,brand"]).tower
    assert fields.product_fields == ("title", "brand")


def test_a_tower_config_built_in_code_names_an_unknown_query_tower() -> None:
    # A config file's value is checked against the type first (the test above); code that
    # builds a TowerConfig itself meets the config's own check.
    with pytest.raises(AisleError, match=r"unknown query_tower 'fast'; use one of auto, "
                                         "transformer, static"):
        TowerConfig(query_tower="fast")  # type: ignore[arg-type]
