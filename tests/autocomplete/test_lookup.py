"""Build, reload and query a real artifact (base model, real or generated query log)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from aisle.autocomplete.lookup import Autocomplete
from aisle.autocomplete.store import load_artifact
from aisle.autocomplete.text import key, variant_key
from aisle.data.dataset import Dataset
from aisle.errors import AisleError, ArtifactError
from aisle.towers.model import TwoTowerModel

# Shown as "glacier bay toilet" (the log's "glaciar bay toiled", corrected) and "glacier bay
# toilets": not variants of one text, so only the embeddings can tell they are duplicates.
DUPLICATES = ("glacier bay toilet", "glacier bay toilets")
PREFIXES = ["gla", "glac", "glaci", "glacier", "glacier b", "glacier bay", "glacier bay t",
            "glacier bay toi", "glaciar", "glaciar bay t", "GLACIER BAY TOIL"]


@pytest.fixture(scope="module")
def ac(ac_index: Path) -> Autocomplete:
    return Autocomplete.load(ac_index)


def texts(ac: Autocomplete, prefix: str, k: int = 10) -> list[str]:
    return [s.text for s in ac.suggest(prefix, k)]


@pytest.mark.parametrize("k", [10, 50])
def test_glacier_duplicates_never_share_a_list(ac: Autocomplete, k: int) -> None:
    seen_any = False
    for prefix in PREFIXES:
        found = {key(t) for t in texts(ac, prefix, k)}
        assert not set(DUPLICATES) <= found, (prefix, found)
        seen_any |= bool(found & set(DUPLICATES))
    assert seen_any  # one of the two is suggested, so the check above means something
    # Without de-duplication both come back for the same prefix: the threshold does the work.
    raw = Autocomplete(ac.artifact, threshold=1.01)
    assert set(DUPLICATES) <= {key(t) for t in texts(raw, "glacier bay t", 50)}


def test_typo_tolerance(ac: Autocomplete) -> None:
    found = ac.suggest("moen dhow", 10)
    assert any(s.text.lower().startswith("moen shower") and s.edits == 1 for s in found)
    assert texts(ac, "gla") == texts(ac, "gla")  # deterministic
    assert all(s.edits == 0 for s in ac.suggest("gla", 10))  # under 4 characters: exact only


def test_case_accents_and_spaces_do_not_matter(ac: Autocomplete) -> None:
    assert texts(ac, "MÖEN   Sh") == texts(ac, "moen sh") != []
    assert texts(ac, "Échö") == texts(ac, "echo") != []


def test_ranking_popularity_then_tie_breaks(ac: Autocomplete) -> None:
    found = ac.suggest("glacier b", 10)
    tiers = [ac.tier[ac.texts.index(s.text)] for s in found]
    assert tiers == sorted(tiers)
    exact_log = [s.popularity for s in found if s.edits == 0 and s.source == "log"]
    assert exact_log == sorted(exact_log, reverse=True) and exact_log
    assert ac.suggest("zzzzqqq", 10) == [] and ac.suggest("   ", 10) == []
    assert len(ac.suggest("g", 3)) == 3


def test_catalog_suggestions_rank_below_the_log(ac: Autocomplete) -> None:
    mined = ac.texts[int(np.flatnonzero(ac.tier == 2)[0])]
    sources = [s.source for s in ac.suggest(key(mined)[:3], 1000)]
    assert "catalog" in sources
    assert sources == sorted(sources, key=lambda s: s != "log")


def test_artifact_describes_itself_and_reloads(ac_index: Path, ac: Autocomplete,
                                               base_model: TwoTowerModel) -> None:
    manifest = json.loads((ac_index / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"] == base_model.fingerprint
    assert manifest["counts"]["total"] == manifest["counts"]["log"] + manifest["counts"]["catalog"]
    assert manifest["threshold"] == manifest["config"]["threshold"]
    again = Autocomplete.load(ac_index)
    assert texts(again, "moen sh") == texts(ac, "moen sh")
    norms = np.linalg.norm(again.embeddings, axis=1)
    assert np.allclose(norms, 1, atol=1e-4)
    assert manifest["cleaning"]["case"] == "lower"
    assert manifest["cleaning"]["counts"]["dropped"] >= 1  # "glacier bay one pice flapper"
    # The stored vectors are the query tower's, of the spell-corrected text.
    row = again.texts.index("glacier bay toilet")
    fresh = base_model.encode_query([again.artifact.suggestions["canonical"][row]]).numpy()
    assert float(fresh[0] @ again.embeddings[row]) > 0.999


def test_glaci_shows_no_shouting_and_no_typo(ac: Autocomplete, ac_dataset: Dataset) -> None:
    typed = [q for q in ac_dataset.queries["query"] if key(q).startswith("glaci")]
    # The log has both (real homedepot queries, or the generated stand-in): the test means
    # something.
    assert any(q.isupper() for q in typed) and any(" pice " in q for q in typed)
    shown = texts(ac, "glaci", 50)
    assert len(shown) >= 5
    assert all(t == t.lower() for t in shown), shown
    assert not any("pice" in t.split() or "glaciar" in t for t in shown), shown


def test_no_two_suggestions_differ_only_by_case_or_spacing(ac: Autocomplete) -> None:
    assert all(t == t.lower() for t in ac.texts)
    assert len({variant_key(t) for t in ac.texts}) == len(ac.texts)
    raw = Autocomplete(ac.artifact, threshold=1.01)  # no semantic de-duplication
    for prefix in ["g", "gla", "glacier bay", "moen", "moen sh", "echo", "ridgid", "rigid 1"]:
        found = [variant_key(t) for t in texts(raw, prefix, 50)]
        assert len(set(found)) == len(found), prefix


def test_a_misspelt_query_counts_for_its_correction(ac: Autocomplete,
                                                   ac_dataset: Dataset) -> None:
    judged = ac_dataset.judgments.groupby("query_id").size()
    by_text = dict(zip(ac_dataset.queries["query"], ac_dataset.queries["query_id"], strict=True))
    both = judged[by_text["moen shower faucet"]] + judged[by_text["moen dhower faucet"]]
    popularity = dict(zip(ac.texts, ac.popularity, strict=True))
    assert popularity["moen shower faucet"] >= both
    assert not any("dhower" in t for t in ac.texts)


def test_an_artifact_built_before_cleaning_still_loads(
    ac_index: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "old"
    shutil.copytree(ac_index, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["cleaning"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="aisle.autocomplete.lookup"):
        index = Autocomplete.load(old)
    assert not index.cleaned and index.suggest("moen sh", 3)
    assert "rebuild it with `aisle autocomplete build`" in caplog.text
    assert Autocomplete.load(ac_index).cleaned


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "embeddings.npy").write_bytes(b"\x93NUMPY garbage"), "checksum"),
        (lambda d: (d / "suggestions.parquet").unlink(), "suggestions.parquet is missing"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "corrupt"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    ],
)
def test_corrupt_artifact_is_refused_clearly(ac_index: Path, tmp_path: Path, damage,  # type: ignore[no-untyped-def]
                                             message: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(ac_index, broken)
    damage(broken)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(broken)
    with pytest.raises(ArtifactError, match="no such autocomplete index"):
        load_artifact(tmp_path / "absent")


def small_index(log: list[tuple[str, int]], model: TwoTowerModel | None = None) -> Autocomplete:
    """An in-memory index of these log queries: embedded by ``model``, or else orthogonal
    (no two are duplicates)."""
    from dataclasses import asdict

    import pandas as pd

    from aisle.autocomplete.config import AutocompleteConfig
    from aisle.autocomplete.store import Artifact
    from aisle.autocomplete.suggestions import rank

    frame = rank(pd.DataFrame(
        [(t, key(t), t, "log", n) for t, n in log],
        columns=["text", "key", "canonical", "source", "popularity"]))
    vectors = (np.eye(len(frame), 16, dtype=np.float32) if model is None else
               model.encode_query(frame["canonical"].tolist()).numpy())
    manifest = {"config": asdict(AutocompleteConfig()), "threshold": 0.82, "version": "t",
                "cleaning": {}}
    return Autocomplete(Artifact(frame, vectors, manifest))


def test_a_typed_space_ends_the_word_even_with_typos() -> None:
    log = [("moenix faucet", 50), ("moen shower head", 10), ("moen faucet", 8), ("moen", 5)]
    small = small_index(log)

    def found(prefix: str) -> dict[str, int]:
        return {s.text: s.edits for s in small.suggest(prefix, 10)}

    assert "moenix faucet" in found("moen")  # still typing the word
    # A typed space ends it: "moenix" is not "moen" with the space substituted.
    assert found("moen ") == {"moen shower head": 0, "moen faucet": 0, "moen": 0}
    # The word itself may still be misspelt, by substitution, insertion or deletion.
    for typo in ("moem ", "moenn ", "mone "):
        assert found(typo) == {"moen shower head": 1, "moen faucet": 1, "moen": 1}, typo


def test_a_typed_space_after_a_short_word_keeps_the_word_itself() -> None:
    """Prefixes too short for typos take the exact paths, which looked the typed space up
    literally: "ge " lost "ge", its most popular suggestion (keys keep no trailing space)."""
    small = small_index([("ge", 732), ("ge profile", 40), ("gel stain", 30), ("g", 3),
                         ("g clamp", 2), ("lg washer", 9)])

    def found(prefix: str) -> list[str]:
        return [s.text for s in small.suggest(prefix, 10)]

    assert found("ge") == ["ge", "ge profile", "gel stain"]
    assert found("ge ") == ["ge", "ge profile"]  # in rank order; "gel stain" is another word
    assert found("GE ") == found("ge ")
    assert found("g ") == ["g", "g clamp"]
    assert found("lg ") == ["lg washer"]  # no suggestion "lg": nothing added
    assert found("ze ") == []


def test_invisible_characters_in_a_prefix_are_dropped_as_search_drops_them() -> None:
    small = small_index([("moen shower head", 10), ("moen", 5)])
    plain = [s.text for s in small.suggest("moen sh", 10)]
    assert plain == ["moen shower head"]
    for typed in ("\u200bmoen sh", "\ufeffmoen sh", "\x00moen sh", "mo\u00aden sh"):
        assert [s.text for s in small.suggest(typed, 10)] == plain, repr(typed)


def test_a_letter_left_out_or_added_is_one_edit() -> None:
    small = small_index([("glacier bay toilet", 50), ("dewalt drill", 8), ("moen", 5)])

    def found(prefix: str) -> dict[str, int]:
        return {s.text: s.edits for s in small.suggest(prefix, 10)}

    # A deletion used to cost 2 (the key cut at len(prefix) also loses its last letter), so
    # "dewlt" (1 edit allowed under 8 characters) found nothing.
    assert found("dewlt") == {"dewalt drill": 1}
    assert found("glcier") == found("glaciier") == {"glacier bay toilet": 1}
    assert found("glcier bay toi") == {"glacier bay toilet": 1}
    assert found("mowen") == {"moen": 1}
    assert found("glacier") == {"glacier bay toilet": 0} and found("dewalt dr") == {
        "dewalt drill": 0}


def test_typo_tolerance_never_changes_a_typed_number() -> None:
    small = small_index([("10,000 btu air conditioner", 90), ("14000 btu portable ac", 5),
                         ("3/8 inch drill bit", 40), ("3/4 inch plywood", 4),
                         ("dewalt 20v drill", 30), ("100 gal water heater", 50),
                         ("10 gal shop vac", 3)])

    def found(prefix: str) -> dict[str, int]:
        return {s.text: s.edits for s in small.suggest(prefix, 10)}

    # Each was reachable by editing a digit, and the more popular one came first.
    assert found("14000 btu") == {"14000 btu portable ac": 0}
    assert found("3/4 inch") == {"3/4 inch plywood": 0}
    # Nor by writing a digit the shopper did not type into a number they finished: "10 ga"
    # is 1 edit from "100 g", but 10 gallons are not 100.
    assert found("10 ga") == {"10 gal shop vac": 0}
    assert set(found("10")) == {"10,000 btu air conditioner", "100 gal water heater",
                                "10 gal shop vac"}
    # Letters still take edits around the numbers, and a number may still be half typed.
    assert found("dewlt 20v") == {"dewalt 20v drill": 1}
    assert found("dewalt 2") == {"dewalt 20v drill": 0}
    # A typed space finishes the number too, and a thousands comma is no digit.
    assert found("dewalt 2 ") == {}
    assert found("10000 btu") == {"10,000 btu air conditioner": 1}
    assert found("3/8 inch drl") == {"3/8 inch drill bit": 1}


def test_suggestions_that_state_different_numbers_are_not_duplicates(
    base_model: TwoTowerModel,
) -> None:
    # The base model puts "vanity 24 inch" at cosine 0.91 to "vanity 36 inch", over the
    # threshold; "vanity 36in" (0.93) is the same size written another way.
    small = small_index([("vanity 36 inch", 20), ("vanity 24 inch", 10), ("vanity 36in", 5)],
                        base_model)
    assert [s.text for s in small.suggest("vanity", 10)] == ["vanity 36 inch", "vanity 24 inch"]


def test_a_threshold_that_is_no_cosine_is_refused() -> None:
    small = small_index([("moen", 5)])
    for bad in (-2.0, float("nan")):
        with pytest.raises(AisleError, match="threshold is a cosine >= -1"):
            Autocomplete(small.artifact, threshold=bad)
