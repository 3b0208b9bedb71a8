"""Validation of canonical CSV directories and preparation into parquet + manifest."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from aisle.data.dataset import iter_product_blocks, load_dataset, prepare, product_count
from aisle.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

PRODUCTS = (
    "product_id,title,description,brand,category\n"
    'p1,"Oak table, 36""",' + '"solid oak,\nseats 4",Acme,Furniture > Tables\n'
    "p2,Sofa ☕,,,\n"
    "p3,Rug,soft,,Rugs\n"
)
QUERIES = "query_id,query,split\nq1,oak table,train\nq2,café sofa,dev\nq3,rug,test\n"
JUDGMENTS = (
    "query_id,product_id,grade,raw_label\n"
    "q1,p1,2.0,Exact\n"
    "q1,p2,0,Irrelevant\n"
    "q2,p2,1.5,2.5\n"
    "q3,p3,0.333,\n"
)


def write_dir(
    path: Path,
    products: str | bytes | None = PRODUCTS,
    queries: str | bytes | None = QUERIES,
    judgments: str | bytes | None = JUDGMENTS,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in (("products", products), ("queries", queries), ("judgments", judgments)):
        if text is not None:
            data = text.encode("utf-8") if isinstance(text, str) else text
            (path / f"{name}.csv").write_bytes(data)
    return path


def reversed_rows(text: str) -> str:
    """The same CSV with its data rows in reverse order (rows here hold no raw newlines)."""
    df = pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False)
    return str(df.iloc[::-1].to_csv(index=False))


def test_load_csv_dir(tmp_path: Path) -> None:
    ds = load_dataset(write_dir(tmp_path / "d"))
    assert ds.name == "d" and ds.root is None
    assert ds.products["title"].tolist() == ['Oak table, 36"', "Sofa ☕", "Rug"]
    assert ds.products["description"].iloc[0] == "solid oak,\nseats 4"
    assert ds.judgments["grade"].dtype == "float64"
    assert ds.judgments["raw_label"].tolist() == ["Exact", "Irrelevant", "2.5", ""]
    assert ds.qrels("train") == {"q1": {"p1": 2.0, "p2": 0.0}}
    assert ds.qrels("test") == {"q3": {"p3": 0.333}}


def test_prepare_round_trip(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "d")
    out = prepare(src, tmp_path / "prepared")
    csv_ds, pq_ds = load_dataset(src), load_dataset(out)
    assert pq_ds.root == out and pq_ds.name == "d"
    for t in ("products", "queries", "judgments"):
        a, b = getattr(csv_ds, t), getattr(pq_ds, t)
        assert a.astype(object).equals(b.astype(object)), t
        assert csv_ds.fingerprint(t) == pq_ds.fingerprint(t), t
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "aisle.dataset"
    assert manifest["counts"] == {"products": 3, "queries": 3, "judgments": 4}
    assert manifest["fingerprints"] == {t: csv_ds.fingerprint(t) for t in manifest["counts"]}
    assert manifest["top_grade"] == 2.0
    # Preparing a prepared dir gives the same content.
    again = prepare(out, tmp_path / "again")
    assert (
        json.loads((again / "manifest.json").read_text())["fingerprint"]
        == (manifest["fingerprint"])
    )
    assert product_count(out) == 3
    assert sum(len(b) for b in iter_product_blocks(out)) == 3


def test_fingerprints_ignore_row_order(tmp_path: Path) -> None:
    a = prepare(write_dir(tmp_path / "a"), tmp_path / "pa")
    b_src = write_dir(
        tmp_path / "b",
        products=reversed_rows(PRODUCTS),
        queries=reversed_rows(QUERIES),
        judgments=reversed_rows(JUDGMENTS),
    )
    b = prepare(b_src, tmp_path / "pb")
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    assert load_dataset(b_src).products["product_id"].tolist() == ["p3", "p2", "p1"]
    assert ma["counts"] == mb["counts"]
    assert ma["fingerprints"] == mb["fingerprints"]
    assert ma["fingerprint"] == mb["fingerprint"]
    changed = write_dir(tmp_path / "c", judgments=JUDGMENTS.replace("1.5", "1.0"))
    assert load_dataset(changed).fingerprint("judgments") != ma["fingerprints"]["judgments"]


def test_catalog_only(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "catalog", queries=None, judgments=None)
    ds = load_dataset(src)
    assert len(ds.products) == 3 and ds.queries.empty and ds.judgments.empty
    with pytest.raises(DataError, match="no queries in split 'test'"):
        ds.split_queries("test")
    out = prepare(src, tmp_path / "prepared")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"products": 3, "queries": 0, "judgments": 0}
    assert manifest["top_grade"] is None
    assert load_dataset(out).queries.empty


def test_prepare_replaces_existing_output(tmp_path: Path) -> None:
    out = prepare(write_dir(tmp_path / "a"), tmp_path / "prepared")
    prepare(write_dir(tmp_path / "b", queries=None, judgments=None), out)
    assert json.loads((out / "manifest.json").read_text())["counts"]["judgments"] == 0


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"products": None}, r"products\.csv: file is missing"),
        ({"queries": None}, r"queries\.csv: file is missing but judgments\.csv needs it"),
        (
            {"products": PRODUCTS.replace("brand,", "make,")},
            r"products\.csv: missing column\(s\) \['brand'\]",
        ),
        (
            {"judgments": JUDGMENTS.replace("grade,", "score,")},
            r"judgments\.csv: missing column\(s\) \['grade'\]",
        ),
        (
            {"products": PRODUCTS + "p2,Another sofa,,,\n"},
            r"products\.csv: row 4 repeats product_id='p2'",
        ),
        (
            {"queries": QUERIES + "q1,oak,train\n"},
            r"queries\.csv: row 4 repeats query_id='q1'",
        ),
        (
            {"judgments": JUDGMENTS + "q1,p9,1,x\n"},
            r"judgments\.csv: row 5 has product_id 'p9', which is not in the products table",
        ),
        (
            {"judgments": JUDGMENTS + "q7,p1,1,x\n"},
            r"judgments\.csv: row 5 has query_id 'q7', which is not in the queries table",
        ),
        (
            {"judgments": JUDGMENTS + "q3,p1,1,x\nq3,p1,2,y\n"},
            r"judgments\.csv: row 6 repeats query_id='q3', product_id='p1'",
        ),
        (
            {"judgments": JUDGMENTS.replace("1.5", "high")},
            r"judgments\.csv: row 3 has grade 'high', not a number",
        ),
        (
            {"judgments": JUDGMENTS.replace("1.5", "-1")},
            r"judgments\.csv: row 3 has grade '-1'; grades must be finite and >= 0",
        ),
        (
            {"judgments": JUDGMENTS.replace("1.5", "inf")},
            r"judgments\.csv: row 3 has grade 'inf'",
        ),
        (
            {"queries": QUERIES.replace("café sofa", "  ")},
            r"queries\.csv: row 2 has an empty 'query'",
        ),
        (
            {"products": PRODUCTS.replace("p3,Rug", "p3,")},
            r"products\.csv: row 3 has an empty 'title'",
        ),
        (
            {"queries": QUERIES.replace("q3,rug,test", "q3,rug,validation")},
            r"queries\.csv: row 3 has split 'validation'; use one of \['train', 'dev', 'test'\]",
        ),
        (
            {"queries": QUERIES.encode().replace("café".encode(), b"caf\xe9")},
            r"queries\.csv: line 3 has bytes that are not UTF-8",
        ),
        (
            # The quoted newline in row 1 makes the bad byte sit on line 4 of the file.
            {"products": PRODUCTS.encode().replace("☕".encode(), b"\xff")},
            r"products\.csv: line 4 has bytes that are not UTF-8",
        ),
        ({"products": ""}, r"products\.csv: not a readable CSV"),
        (
            # One field more than the header on every row: pandas would read the first as a
            # row index and shift every column one place.
            {"products": "product_id,title,description,brand,category\np1,Drill,d,b,c,EXTRA\n"},
            r"products\.csv: row 1 has 6 fields, the header has 5; quote fields",
        ),
        (
            {"queries": QUERIES.replace("train\n", "train,\n").replace("dev\n", "dev,\n")},
            r"queries\.csv: row 1 has 4 fields, the header has 3 \(a trailing separator\?\)",
        ),
        (
            {"products": PRODUCTS.replace("p3,Rug,soft,,Rugs", "p3,Rug")},
            r"products\.csv: row 3 has 2 fields, the header has 5",
        ),
        (
            {"queries": QUERIES.replace("query_id,query,split", "query_id,query,split,query")},
            r"queries\.csv: the header repeats column\(s\) \['query'\]",
        ),
        (
            # A trailing separator on every line (a spreadsheet export): pandas names the empty
            # header 'Unnamed: 5', which is nowhere in the file.
            {"products": "product_id,title,description,brand,category,\np1,Drill,,,,\n"},
            r"products\.csv: header column 6 has no name \(a trailing separator\?\)",
        ),
        *(
            (
                {"queries": QUERIES.replace("split\n", "split,count\n").replace(
                    "train\n", "train,5\n").replace("dev\n", f"dev,{bad}\n").replace(
                    "test\n", "test,0\n")},
                rf"queries\.csv: row 2 has count '{re.escape(bad)}'; counts are whole numbers",
            )
            for bad in ("inf", "1e30", "1.7", "-1", "many", "")
        ),
        (
            {"queries": QUERIES + 'q4,"unclosed,train\n'},
            r"queries\.csv: not a readable CSV",
        ),
        # TREC run and qrels files split on spaces: such an id would be misread there.
        (
            {"products": PRODUCTS.replace("p3,Rug", "p 3,Rug")},
            r"products\.csv: row 3 has product_id 'p 3', with white space in it",
        ),
        (
            {"queries": QUERIES.replace("q2,", "q\t2,")},
            r"queries\.csv: row 2 has query_id 'q\\t2', with white space in it",
        ),
    ],
)
def test_invalid_dir(tmp_path: Path, files: dict[str, str | bytes | None], match: str) -> None:
    src = write_dir(tmp_path / "d", **files)
    with pytest.raises(DataError, match=match):
        load_dataset(src)
    with pytest.raises(DataError, match=match):
        prepare(src, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp dir left behind


def test_blank_lines_and_a_quote_inside_a_field_read_as_pandas_reads_them(tmp_path: Path) -> None:
    # All-space lines are skipped; a field that opens with a quote closed early
    # ('"12" drill') is read as pandas always read it, not refused.
    products = PRODUCTS + "   \n" + 'p4,"12" drill,,,\n'
    ds = load_dataset(write_dir(tmp_path / "d", products=products))
    assert ds.products["title"].tolist()[-1] == "12 drill" and len(ds.products) == 4


def test_query_counts_are_whole_numbers(tmp_path: Path) -> None:
    queries = QUERIES.replace("split\n", "split,count\n").replace("train\n", "train,5\n")
    queries = queries.replace("dev\n", "dev,3.0\n").replace("test\n", "test,0\n")
    ds = load_dataset(write_dir(tmp_path / "d", queries=queries))
    assert ds.queries["count"].tolist() == [5, 3, 0]
    assert ds.queries["count"].dtype == "int64"


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(tmp_path / "missing")


def test_field_longer_than_the_csv_module_default_is_read(tmp_path: Path) -> None:
    # Python's csv module refuses fields over 128 KiB unless told otherwise; pandas does not.
    long = "oak " * 50_000
    products = PRODUCTS + f'p4,Long table,"{long}",,\n'
    ds = load_dataset(write_dir(tmp_path / "d", products=products))
    assert ds.products["description"].iloc[-1] == long


def test_dataset_name_of_a_relative_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_dir(tmp_path / "homedepot")
    monkeypatch.chdir(src)
    assert load_dataset(Path(".")).name == "homedepot"
    assert json.loads((prepare(Path("."), tmp_path / "p") / "manifest.json").read_text())[
        "name"] == "homedepot"


def test_utf8_bom_accepted(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "d", queries=b"\xef\xbb\xbf" + QUERIES.encode())
    assert load_dataset(src).queries["query_id"].tolist() == ["q1", "q2", "q3"]


def test_prepared_dir_modified(tmp_path: Path) -> None:
    out = prepare(write_dir(tmp_path / "d"), tmp_path / "prepared")
    (out / "judgments.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"judgments\.parquet: unreadable"):
        load_dataset(out)


def test_a_table_edited_in_place_with_its_row_count_kept_is_refused(tmp_path: Path) -> None:
    """The manifest's counts and fingerprints describe the tables as prepared; an edit that
    keeps the row count (a title fixed by hand) used to load as the prepared table."""
    import pyarrow.parquet as pq

    from aisle.data.dataset import catalog_manifest

    out = prepare(write_dir(tmp_path / "d"), tmp_path / "prepared")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # a copy holds the same bytes: it loads, as the original
    assert load_dataset(copy).products.equals(load_dataset(out).products)
    assert catalog_manifest(copy) == catalog_manifest(out)
    for table in ("products", "queries"):
        edited = tmp_path / f"edited-{table}"
        shutil.copytree(out, edited)
        frame = pq.read_table(edited / f"{table}.parquet")
        column = "title" if table == "products" else "query"
        values = frame.column(column).to_pylist()
        values[0] = values[0] + " (edited)"
        frame = frame.set_column(frame.schema.get_field_index(column), column,
                                 pa.array(values, frame.schema.field(column).type))
        pq.write_table(frame, edited / f"{table}.parquet")
        with pytest.raises(DataError, match=rf"{table}\.parquet: its bytes are not those "
                           r"`aisle prepare` wrote.*run `aisle prepare` again"):
            load_dataset(edited)
    with pytest.raises(DataError, match=r"products\.parquet: its bytes are not those"):
        catalog_manifest(tmp_path / "edited-products")
    catalog_manifest(tmp_path / "edited-queries")  # the catalog jobs read products alone
    # As the message says: preparing the edited directory again takes the edit.
    again = prepare(tmp_path / "edited-products", tmp_path / "again")
    assert load_dataset(again).products["title"].iloc[0].endswith(" (edited)")
    # A manifest from before the bytes were recorded is not checked.
    manifest = json.loads((edited / "manifest.json").read_text())
    del manifest["files"]
    (edited / "manifest.json").write_text(json.dumps(manifest))
    assert load_dataset(edited).queries["query"].iloc[0].endswith(" (edited)")


def test_the_bytes_a_prepared_table_was_parsed_from_are_the_bytes_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_dataset hashes the bytes it parsed. Reading the file a second time for the hash
    passed an edited table whose prepared bytes were put back between the two reads (and
    read a large table twice)."""
    import pyarrow.parquet as pq
    from pandas.testing import assert_frame_equal

    import aisle.data.dataset as dataset

    out = prepare(write_dir(tmp_path / "d"), tmp_path / "prepared")
    loaded = load_dataset(out)
    for table in ("products", "queries", "judgments"):  # the same frames as a read by path
        assert_frame_equal(getattr(loaded, table), pq.read_table(out / f"{table}.parquet")
                           .to_pandas())
    path = out / "products.parquet"
    prepared = path.read_bytes()
    frame = pq.read_table(path)
    titles = frame.column("title").to_pylist()
    titles[0] += " (edited)"
    pq.write_table(frame.set_column(frame.schema.get_field_index("title"), "title",
                                    pa.array(titles, frame.schema.field("title").type)), path)
    parse = dataset.pq.read_table

    def parse_then_restore(source: object, *args: object, **kwargs: object) -> pa.Table:
        table = parse(source, *args, **kwargs)
        if table.num_rows == len(titles) and "title" in table.column_names:
            path.write_bytes(prepared)  # the prepared bytes back, after the edit was parsed
        return table

    monkeypatch.setattr(dataset.pq, "read_table", parse_then_restore)
    with pytest.raises(DataError, match=r"products\.parquet: its bytes are not those"):
        load_dataset(out)


@pytest.mark.slow
def test_prepare_homedepot(tmp_path: Path) -> None:
    src = SHARED_DATA / "homedepot"
    if not src.is_dir():
        pytest.skip(f"{src} is not present")
    out = prepare(src, tmp_path / "homedepot")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"products": 54667, "queries": 11795, "judgments": 74067}
    ds = load_dataset(out)
    assert ds.queries["split"].value_counts().to_dict() == {
        "train": 9521,
        "dev": 1117,
        "test": 1157,
    }
    assert ds.judgments["grade"].between(0, 2).all()


def test_extra_product_columns_are_typed_fields(tmp_path: Path) -> None:
    data = tmp_path / "fields"
    data.mkdir()
    (data / "products.csv").write_text(
        "product_id,title,description,brand,category,price,in_stock,size,count\n"
        "p1,Drill,,DeWalt,tools,129.00,true,12 in.,pack of 2\n"
        "p2,Saw,,,tools, 45.5 ,FALSE,,1\n"
        "p3,Rug,,,,,,7,1.5\n"
    )
    products = load_dataset(data).products
    assert products["price"].tolist()[:2] == [129.0, 45.5] and pd.isna(products["price"][2])
    assert products["in_stock"].tolist()[:2] == [True, False] and pd.isna(products["in_stock"][2])
    assert products["size"].tolist() == ["12 in.", "", "7"]  # not every value is a number
    prepare(data, tmp_path / "prep")  # the types survive parquet
    prepared = load_dataset(tmp_path / "prep").products
    from aisle.data.fields import field_types

    assert field_types(prepared) == field_types(products) == {
        "brand": "string", "category": "string", "price": "number", "in_stock": "boolean",
        "size": "string", "count": "string"}  # a product's count is a field like any other


def test_a_column_of_codes_with_leading_zeros_stays_text(tmp_path: Path) -> None:
    data = tmp_path / "codes"
    data.mkdir()
    (data / "products.csv").write_text(
        "product_id,title,description,brand,category,upc,zip,weight\n"
        "p1,Drill,,,,00123,02139,0.5\n"
        "p2,Saw,,,,4567,10001,12\n"
    )
    products = load_dataset(data).products
    assert products["upc"].tolist() == ["00123", "4567"]  # read back as written
    assert products["zip"].tolist() == ["02139", "10001"]
    assert products["weight"].tolist() == [0.5, 12.0]  # "0.5" is a number, not a code
    prepare(data, tmp_path / "prep")
    from aisle.data.fields import field_types

    assert field_types(load_dataset(tmp_path / "prep").products) == {
        "brand": "string", "category": "string", "upc": "string", "zip": "string",
        "weight": "number"}


@pytest.mark.parametrize(("column", "message"), [
    ("unit price", "not a usable field name"),
    ("label", "a name aisle keeps for itself"),
])
def test_unusable_field_names_are_refused(tmp_path: Path, column: str, message: str) -> None:
    data = tmp_path / "bad"
    data.mkdir()
    (data / "products.csv").write_text(
        f"product_id,title,description,brand,category,{column}\np1,Drill,,,,1\n")
    with pytest.raises(DataError, match=message):
        load_dataset(data)


def _edit(prepared: Path, table: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    import pyarrow.parquet as pq

    frame = pq.read_table(prepared / f"{table}.parquet").to_pandas()
    pq.write_table(pa.Table.from_pandas(edit(frame), preserve_index=False),
                   prepared / f"{table}.parquet")


@pytest.mark.parametrize(("table", "edit", "message"), [
    ("products", lambda f: pd.concat([f, f.iloc[:1]]), r"products\.parquet: row 4 repeats "
     r"product_id='p1'"),
    ("products", lambda f: f.assign(title=["Oak", "", "Rug"]), r"row 2 has an empty 'title'"),
    ("products", lambda f: f.drop(columns="brand"), r"missing column\(s\) \['brand'\]"),
    ("products", lambda f: f.assign(product_id=[1, 2, 3]), r"row 1 has product_id 1, not text"),
    ("judgments", lambda f: pd.concat([f, pd.DataFrame(
        {"query_id": ["q1"], "product_id": ["nope"], "grade": [1.0], "raw_label": [""]})]),
     r"judgments\.parquet: row 5 has product_id 'nope', which is not in the products table"),
    ("judgments", lambda f: f.assign(grade=[2.0, 0.0, -5.0, 0.3]), r"row 3 has grade -5\.0"),
    ("queries", lambda f: f.assign(split=["train", "dev", "holdout"]), r"row 3 has split "
     r"'holdout'"),
])
def test_an_edited_prepared_directory_is_checked_as_its_csvs_were_when_prepared_again(
    tmp_path: Path, table: str, edit: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    """Preparing an edited prepared directory again (what its bytes check tells a user to do)
    used to publish the edit unchecked, with a new manifest vouching for it."""
    prepared = prepare(write_dir(tmp_path / "d"), tmp_path / "prepared")
    _edit(prepared, table, edit)
    with pytest.raises(DataError, match=message):
        prepare(prepared, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_a_prepared_table_rewritten_with_categories_is_prepared_again(tmp_path: Path) -> None:
    """pandas writes a category column as a dictionary; it reads back as text, not refused."""
    prepared = prepare(write_dir(tmp_path / "d"), tmp_path / "prepared")
    _edit(prepared, "queries", lambda f: f.assign(split=f["split"].astype("category")))
    again = load_dataset(prepare(prepared, tmp_path / "again"))
    assert again.queries["split"].tolist() == ["train", "dev", "test"]
    _edit(prepared, "queries", lambda f: f.assign(
        split=pd.Categorical(["train", None, "test"])))
    with pytest.raises(DataError, match=r"queries\.parquet: row 2 has split None, not text"):
        prepare(prepared, tmp_path / "again")


def test_a_prepared_directory_prepared_again_keeps_its_typed_fields(tmp_path: Path) -> None:
    data = write_dir(tmp_path / "d", products=(
        "product_id,title,description,brand,category,weight,cordless,upc\n"
        "p1,Drill,,,,0.5,true,00123\np2,Saw,,,,,,4567\np3,Rug,,,,12,false,\n"))
    first = load_dataset(prepare(data, tmp_path / "prepared")).products
    again = load_dataset(prepare(tmp_path / "prepared", tmp_path / "again")).products
    pd.testing.assert_frame_equal(again, first)
    assert again["cordless"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize("drop", ["counts", "name", "counts-list"])
def test_an_incomplete_prepared_manifest_is_refused_saying_what_to_do(
    tmp_path: Path, drop: str
) -> None:
    out = prepare(write_dir(tmp_path / "d"), tmp_path / "prepared")
    manifest = json.loads((out / "manifest.json").read_text())
    if drop == "counts-list":
        manifest["counts"] = [3, 3, 4]
    else:
        del manifest[drop]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest\.json: incomplete .*run `aisle prepare` "
                                        "again"):
        load_dataset(out)
    # Prepared again: the name falls back to the directory's, as for a CSV directory.
    assert load_dataset(prepare(out, tmp_path / "again")).name == (
        "prepared" if drop == "name" else "d")


def test_a_broken_link_to_a_table_is_an_error_not_a_table_left_out(tmp_path: Path) -> None:
    data = write_dir(tmp_path / "d", judgments=None)
    (data / "judgments.csv").symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(DataError, match=r"judgments\.csv: a link to .*nowhere\.csv, which is not "
                                        "a file"):
        load_dataset(data)
    (data / "judgments.csv").unlink()
    (data / "judgments.csv").mkdir()
    with pytest.raises(DataError, match=r"judgments\.csv: not a file"):
        load_dataset(data)


def test_a_column_of_long_whole_numbers_stays_text(tmp_path: Path) -> None:
    """Past 2**53 a float64 rounds: two 18-digit codes used to read back as one number."""
    data = write_dir(tmp_path / "d", products=(
        "product_id,title,description,brand,category,sscc,stock\n"
        "p1,Drill,,,,123456789012345678,9007199254740992\n"
        "p2,Saw,,,,123456789012345679,3\n"
        "p3,Rug,,,,,-12\n"))
    products = load_dataset(data).products
    assert products["sscc"].tolist() == ["123456789012345678", "123456789012345679", ""]
    assert products["stock"].tolist() == [2.0**53, 3.0, -12.0]  # 2**53 is still exact


def test_a_query_text_in_two_splits_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queries = QUERIES + "q4,Oak  Table,test\n"
    with caplog.at_level("WARNING"):
        ds = load_dataset(write_dir(tmp_path / "d", queries=queries))
    assert len(ds.queries) == 4
    assert re.search(r"queries\.csv: 1 query text\(s\) are in more than one split \(e\.g\. "
                     r"'oak table' in test and train\)", caplog.text)
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_dataset(write_dir(tmp_path / "clean"))
    assert "more than one split" not in caplog.text


def test_a_csv_directory_named_by_dot_dot_is_prepared_on_the_fly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisle.data.dataset import prepared_dir

    data = write_dir(tmp_path / "d")
    (data / "sub").mkdir()
    monkeypatch.chdir(data / "sub")
    with prepared_dir(Path("..")) as prepared:
        assert load_dataset(prepared).name == "d" and len(load_dataset(prepared).products) == 3
