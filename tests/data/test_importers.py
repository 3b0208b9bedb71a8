"""ESCI and WANDS importers on tiny hand-written fixtures (parquet and TSV under tmp_path)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aisle.data.dataset import load_dataset
from aisle.data.importers import add_import_parser, import_esci, import_wands
from aisle.data.importers.common import clean_text, hash_fraction, split_of
from aisle.errors import DataError

# ---------------------------------------------------------------- ESCI


ESCI_COLUMNS = ["query_id", "query", "product_id", "esci_label", "split", "product_title",
                "product_description", "product_bullet_point", "product_brand", "product_color",
                "product_locale"]  # fmt: skip
LAMP = ('Lamp, "Arc" 60"\nfloor', "<p>Bright &amp; tall</p><br>", "Steel base\nLED, 9W",
        "Lumi, Inc.", "Black")  # fmt: skip
ESCI = [
    (1, "floor lamp", "B01", "E", "train", *LAMP, "us"),
    (1, "floor lamp", "B02", "S", "train", "Desk lamp", "", "", "", "", "us"),
    (1, "floor lamp", "B03", "C", "train", "Light bulb", "", "", "", "", "us"),
    (1, "floor lamp", "B04", "I", "train", "Sofa", "", "", "", "", "us"),
    (2, "café table", "B01", "S", "test", *LAMP, "us"),
    (2, "café table", "B05", "E", "test", "Bistro table ☕", "", "", "", "", "us"),
    (3, "Café  Table", "B05", "E", "train", "Bistro table ☕", "", "", "", "", "us"),
    (4, "lámpara", "B01", "E", "train", "Lámpara de pie", "", "", "", "", "es"),
    (5, "rug 8x10", "B06", "E", "train", "Shag rug, 8' x 10'", "", "", "", "Ivory", "us"),
]


def esci_rows() -> list[dict[str, object]]:
    return [dict(zip(ESCI_COLUMNS, r, strict=True)) for r in ESCI]


def write_esci(path: Path, rows: list[dict[str, object]] | None = None) -> Path:
    pd.DataFrame(esci_rows() if rows is None else rows).to_parquet(path, index=False)
    return path


def test_esci_grades_products_and_text(tmp_path: Path) -> None:
    out = import_esci(write_esci(tmp_path / "esci.parquet"), tmp_path / "out")
    ds = load_dataset(out)
    j = ds.judgments.set_index(["query_id", "product_id"])
    assert j.loc[("1", "B01"), "grade"] == 3.0
    assert j.loc[("1", "B02"), "grade"] == 2.0
    assert j.loc[("1", "B03"), "grade"] == 1.0
    assert j.loc[("1", "B04"), "grade"] == 0.0
    grades = dict(zip(ds.judgments["raw_label"], ds.judgments["grade"], strict=True))
    assert grades == {"E": 3.0, "S": 2.0, "C": 1.0, "I": 0.0}
    # B01 and B05 appear in several rows but once in the catalog; the es row is filtered out.
    assert sorted(ds.products["product_id"]) == ["B01", "B02", "B03", "B04", "B05", "B06"]
    p = ds.products.set_index("product_id")
    assert p.loc["B01", "title"] == 'Lamp, "Arc" 60"\nfloor'
    assert p.loc["B01", "description"] == "Bright & tall\nSteel base\nLED, 9W\ncolor: Black"
    assert p.loc["B01", "brand"] == "Lumi, Inc."
    assert p.loc["B05", "title"] == "Bistro table ☕"
    assert set(ds.products["category"]) == {""}
    assert "4" not in set(ds.queries["query_id"])
    assert p.loc["B06", "description"] == "color: Ivory"
    assert len(ds.judgments) == 8


def test_esci_splits_deterministic(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci.parquet")
    a, b = import_esci(src, tmp_path / "a"), import_esci(src, tmp_path / "b")
    for name in ("queries.csv", "products.csv", "judgments.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    ds = load_dataset(a)
    split = dict(zip(ds.queries["query_id"], ds.queries["split"], strict=True))
    assert split["2"] == "test"
    # Query 3 is a train query whose text (case and spacing aside) is a test query's text.
    assert split["3"] == "test"
    # Fixed expectations: the sha256 split is the same on every machine and process.
    assert (split["1"], split["5"]) == ("train", "dev")
    assert split["1"] == split_of("floor lamp", dev=0.1, test=0.0)


def test_esci_locale(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci.parquet")
    es = load_dataset(import_esci(src, tmp_path / "es", locale="es"))
    assert list(es.products["title"]) == ["Lámpara de pie"]
    assert list(es.queries["query"]) == ["lámpara"]
    both = load_dataset(import_esci(src, tmp_path / "all", locale=None))
    # The same ASIN in two marketplaces is two products.
    assert {"us:B01", "es:B01"} <= set(both.products["product_id"])
    assert len(both.products) == 7
    assert len(both.judgments) == 9
    with pytest.raises(ValueError, match="locale 'fr'"):
        import_esci(src, tmp_path / "fr", locale="fr")


def test_esci_small_version_keeps_the_reduced_task_set(tmp_path: Path) -> None:
    # The dataset marks the rows of its reduced task-1 set small_version = 1; a source row
    # number in an error still counts every row of the file.
    rows = [{**r, "small_version": int(r["query_id"] in (1, 5))} for r in esci_rows()]
    src = write_esci(tmp_path / "esci.parquet", rows)
    small = load_dataset(import_esci(src, tmp_path / "small", small_version=True))
    assert sorted(small.queries["query"]) == ["floor lamp", "rug 8x10"]
    assert len(small.judgments) == 5
    assert sorted(small.products["product_id"]) == ["B01", "B02", "B03", "B04", "B06"]
    assert len(load_dataset(import_esci(src, tmp_path / "every")).judgments) == 8
    rows[8]["esci_label"] = "?"
    with pytest.raises(DataError, match=r"row 9 has esci_label '\?'"):
        import_esci(write_esci(src, rows), tmp_path / "bad", small_version=True)
    for r in rows:
        r["small_version"] = 0
    with pytest.raises(DataError, match="no rows for locale 'us' with small_version = 1"):
        import_esci(write_esci(src, rows), tmp_path / "none", small_version=True)
    with pytest.raises(DataError, match=r"missing column\(s\) \['small_version'\]"):
        import_esci(write_esci(src), tmp_path / "old", small_version=True)
    for r in rows:
        r["small_version"] = "yes"
    with pytest.raises(DataError, match=r"column 'small_version' is not whole numbers"):
        import_esci(write_esci(src, rows), tmp_path / "text", small_version=True)


def test_esci_missing_or_unreadable_source(tmp_path: Path) -> None:
    src, out = tmp_path / "esci.parquet", tmp_path / "out"
    with pytest.raises(DataError, match=r"esci\.parquet: file is missing"):
        import_esci(src, out)
    src.write_bytes(b"query_id,query\n1,lamp\n")
    with pytest.raises(DataError, match=r"esci\.parquet: not a readable parquet"):
        import_esci(src, out)
    rows = [{k: v for k, v in r.items() if k != "esci_label"} for r in esci_rows()]
    with pytest.raises(DataError, match=r"esci\.parquet: missing column\(s\) \['esci_label'\]"):
        import_esci(write_esci(src, rows), out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("row", "col", "value", "match"),
    [
        (3, "esci_label", "exact", r"row 4 has esci_label 'exact'.*use one of \['C', 'E'"),
        (1, "split", "validation", r"row 2 has split 'validation'"),
        (2, "query", "floor lamps", r"row 3 gives query_id '1' the text 'floor lamps'"),
        (0, "product_id", None, r"row 1 has no product_id"),
    ],
)
def test_esci_bad_values(tmp_path: Path, row: int, col: str, value: object, match: str) -> None:
    rows = esci_rows()
    rows[row][col] = value
    with pytest.raises(DataError, match=r"esci\.parquet: " + match):
        import_esci(write_esci(tmp_path / "esci.parquet", rows), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_esci_error_names_source_row_despite_locale_filter(tmp_path: Path) -> None:
    rows = esci_rows()
    rows.insert(0, {**rows[7], "esci_label": "X"})  # an es row: filtered out, still row 1
    rows[4]["esci_label"] = "?"
    with pytest.raises(DataError, match=r"esci\.parquet: row 5 has esci_label '\?'"):
        import_esci(write_esci(tmp_path / "esci.parquet", rows), tmp_path / "out")


def test_esci_non_utf8_bytes(tmp_path: Path) -> None:
    df = pd.DataFrame(esci_rows())
    table = pa.Table.from_pandas(df, preserve_index=False)
    titles = [t.encode() for t in df["product_title"]]
    titles[0] = b"Lamp \xff"
    table = table.set_column(
        table.schema.get_field_index("product_title"), "product_title", pa.array(titles)
    )
    src = tmp_path / "esci.parquet"
    pq.write_table(table, src)
    with pytest.raises(DataError, match=r"esci\.parquet: column 'product_title'.*not UTF-8"):
        import_esci(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_esci_failure_keeps_existing_output(tmp_path: Path) -> None:
    src = write_esci(tmp_path / "esci.parquet")
    out = import_esci(src, tmp_path / "out")
    before = (out / "judgments.csv").read_bytes()
    rows = esci_rows()
    rows[0]["esci_label"] = "?"
    with pytest.raises(DataError):
        import_esci(write_esci(src, rows), out)
    assert (out / "judgments.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------- WANDS

PRODUCTS = pd.DataFrame(
    [
        ["0", 'solid wood 36" table', "Tables", "Furniture / Dining / Tables",
         'a "sturdy" table,\nmade of oak', "color:brown|material:oak", "3", "4.5", "3"],
        ["1", "sofa, 3-seat", "Sofas", "Furniture / Living Room / Sofas", "", "", "", "", ""],
        ["2", "rug\twith tab", "Rugs", "", "soft\rand\r\nwarm", "", "1", "5", "1"],
        ["3", "lámpara ☀", "Lamps", "Lighting / Lamps", "brillante", "", "0", "", "0"],
    ],
    columns=["product_id", "product_name", "product_class", "category hierarchy",
             "product_description", "product_features", "rating_count", "average_rating",
             "review_count"],
)  # fmt: skip
QUERIES = pd.DataFrame(
    [["0", "oak table", "Tables"], ["1", "velvet sofa", "Sofas"], ["2", "shag rug", "Rugs"]],
    columns=["query_id", "query", "query_class"],
)
LABELS = pd.DataFrame(
    [["0", "0", "0", "Exact"], ["1", "0", "1", "Irrelevant"], ["2", "0", "2", "Partial"],
     ["3", "1", "1", "Exact"], ["4", "2", "2", "Exact"]],
    columns=["id", "query_id", "product_id", "label"],
)  # fmt: skip


def write_wands(
    src: Path,
    products: pd.DataFrame = PRODUCTS,
    queries: pd.DataFrame = QUERIES,
    labels: pd.DataFrame = LABELS,
) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    for name, df in (("product", products), ("query", queries), ("label", labels)):
        df.to_csv(src / f"{name}.csv", sep="\t", index=False)
    return src


def test_wands_import(tmp_path: Path) -> None:
    ds = load_dataset(import_wands(write_wands(tmp_path / "wands"), tmp_path / "out"))
    j = ds.judgments.set_index(["query_id", "product_id"])
    assert j.loc[("0", "0"), "grade"] == 2.0
    assert j.loc[("0", "2"), "grade"] == 1.0
    assert j.loc[("0", "1"), "grade"] == 0.0
    assert j.loc[("0", "1"), "raw_label"] == "Irrelevant"
    p = ds.products.set_index("product_id")
    assert len(p) == 4  # product 3 is unjudged but stays in the catalog
    assert p.loc["0", "title"] == 'solid wood 36" table'
    assert p.loc["0", "description"] == 'a "sturdy" table,\nmade of oak'
    assert p.loc["0", "category"] == "Furniture > Dining > Tables"
    assert p.loc["2", "category"] == "Rugs"
    assert p.loc["2", "title"] == "rug\twith tab"
    assert p.loc["2", "description"] == "soft\nand\nwarm"
    assert p.loc["3", "title"] == "lámpara ☀"
    assert set(p["brand"]) == {""}


def test_wands_splits_deterministic(tmp_path: Path) -> None:
    src = write_wands(tmp_path / "wands")
    a, b = import_wands(src, tmp_path / "a"), import_wands(src, tmp_path / "b")
    for name in ("queries.csv", "products.csv", "judgments.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    q = pd.read_csv(a / "queries.csv", dtype=str, keep_default_na=False)
    assert list(q["split"]) == ["train", "dev", "test"]  # fixed: sha256, not hash()
    assert list(q["split"]) == [split_of(t, dev=0.1, test=0.1) for t in q["query"]]


def test_split_hash_and_clean_text() -> None:
    texts = [f"query number {i}" for i in range(4000)]
    splits = pd.Series([split_of(t, dev=0.1, test=0.1) for t in texts]).value_counts(normalize=True)
    assert splits["train"] == pytest.approx(0.8, abs=0.03)
    assert splits["dev"] == pytest.approx(0.1, abs=0.02)
    assert splits["test"] == pytest.approx(0.1, abs=0.02)
    assert hash_fraction(" Oak  TABLE") == hash_fraction("oak table")
    assert hash_fraction("oak table") == pytest.approx(0.50519, abs=1e-5)
    assert clean_text("<b>a</b>&nbsp;&amp;  b\r\n\r\n c <br/>") == "a & b\nc"
    assert clean_text('<p class="x">Oak</p><!-- a\nnote --> <BR>table') == "Oak table"
    # A "<" that opens no tag is text: the old pattern cut it out up to the next ">".
    assert clean_text("USB <-> HDMI adapter") == "USB <-> HDMI adapter"
    assert clean_text("holds < 5 kg and > 2 kg") == "holds < 5 kg and > 2 kg"


def test_wands_missing_or_undecodable_file(tmp_path: Path) -> None:
    src, out = write_wands(tmp_path / "wands"), tmp_path / "out"
    with pytest.raises(DataError, match="not a directory"):
        import_wands(tmp_path / "nothing", out)
    (src / "query.csv").write_bytes(
        b"query_id\tquery\tquery_class\n0\toak table\tTables\n1\tcaf\xe9 sofa\tSofas\n"
    )
    with pytest.raises(DataError, match=r"query\.csv: line 3 has bytes that are not UTF-8"):
        import_wands(src, out)
    (write_wands(src) / "label.csv").unlink()
    with pytest.raises(DataError, match=r"label\.csv: file is missing.*'label'"):
        import_wands(src, out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("files", "match"),
    [
        (
            {"products": PRODUCTS.drop(columns=["product_name"])},
            r"product\.csv: missing column\(s\) \['product_name'\]",
        ),
        (
            {"labels": LABELS.assign(label=["Exact", "Irrelevant", "Partial", "exact!", "Exact"])},
            r"label\.csv: row 4 has label 'exact!'.*'Exact'",
        ),
        (
            {"labels": LABELS.assign(product_id=["0", "1", "2", "99", "2"])},
            r"label\.csv: row 4 has product_id '99', which is not in product\.csv",
        ),
        (
            {"labels": LABELS.assign(query_id=["0", "0", "0", "7", "2"])},
            r"label\.csv: row 4 has query_id '7', which is not in query\.csv",
        ),
        (
            {"products": PRODUCTS.assign(product_id=["0", "1", "2", "1"])},
            r"product\.csv: row 4 repeats product_id '1'",
        ),
        (
            {"labels": pd.concat([LABELS, LABELS.iloc[[0]].assign(id="5", label="Partial")])},
            r"label\.csv: query_id '0' and product_id '0' are judged more than once",
        ),
    ],
)
def test_wands_bad_input(tmp_path: Path, files: dict[str, pd.DataFrame], match: str) -> None:
    with pytest.raises(DataError, match=match):
        import_wands(write_wands(tmp_path / "wands", **files), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wands_repeats_and_empty_titles_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = pd.concat([LABELS, LABELS.iloc[[0]].assign(id="5")])
    products = PRODUCTS.assign(product_name=['solid wood 36" table', "  ", "rug", "lamp"])
    src = write_wands(tmp_path / "wands", products=products, labels=labels)
    with caplog.at_level("WARNING"):
        ds = load_dataset(import_wands(src, tmp_path / "out"))
    # The two judgments of the untitled product go with it, and the log says how many.
    assert "dropped 1 product(s) with no title, 0 query(ies) with no text and the 2 " \
        "judgment(s) of them" in caplog.text
    assert "1" not in set(ds.products["product_id"])
    assert "1" not in set(ds.judgments["product_id"])
    assert len(ds.judgments) == 3


def test_wands_long_description(tmp_path: Path) -> None:
    long = "sturdy oak " * 20_000  # over the csv module's default 128 KiB field limit
    products = PRODUCTS.assign(product_description=[long, "", "soft", "brillante"])
    ds = load_dataset(import_wands(write_wands(tmp_path / "wands", products=products),
                                   tmp_path / "out"))
    assert ds.products.set_index("product_id").loc["0", "description"] == long.strip()


def test_cli_hook(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="aisle")
    add_import_parser(parser.add_subparsers(dest="command"))
    src = write_wands(tmp_path / "wands")
    args = parser.parse_args(["import", "wands", "--src", str(src), "--out", str(tmp_path / "w")])
    assert args.func(args) == 0
    assert load_dataset(tmp_path / "w").products.shape[0] == 4
    esci = write_esci(tmp_path / "esci.parquet")
    argv = ["import", "esci", "--src", str(esci), "--out", str(tmp_path / "e"), "--locale", "all"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert len(load_dataset(tmp_path / "e").products) == 7
    rows = [{**r, "small_version": int(r["query_id"] == 5)} for r in esci_rows()]
    small = write_esci(tmp_path / "small.parquet", rows)
    args = parser.parse_args(["import", "esci", "--src", str(small), "--out",
                              str(tmp_path / "s"), "--small-version"])
    assert args.func(args) == 0
    assert list(load_dataset(tmp_path / "s").products["product_id"]) == ["B06"]
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "esci", "--src", "x", "--out", "y", "--locale", "fr"])


def test_invalid_importer_output_is_named_by_table_not_by_a_deleted_temporary_path(
    tmp_path: Path,
) -> None:
    from aisle.data.importers.common import write_canonical

    products = pd.DataFrame({"product_id": ["1 a", "2"], "title": ["Drill", "Saw"],
                             "description": "", "brand": "", "category": ""})
    queries = pd.DataFrame({"query_id": ["q1"], "query": ["drill"], "split": ["test"]})
    judgments = pd.DataFrame({"query_id": ["q1"], "product_id": ["2"], "grade": [1.0],
                              "raw_label": [""]})
    with pytest.raises(DataError) as caught:
        write_canonical(tmp_path / "out", products, queries, judgments)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'out'}: the importer produced invalid output "
                              "(products.csv: row 1 has product_id '1 a'")
    assert ".tmp-" not in message and "rows count the importer's output" in message
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
