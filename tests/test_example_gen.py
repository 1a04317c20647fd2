"""ExampleGen on real files: splits, determinism, spans, formats and bad input."""

import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from kubetfx.components.common import examples, layout
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.example_gen import executor, reading, splitting
from kubetfx.pipelines.synthetic import penguins as synthetic


def write_csv(path, table):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pacsv.write_csv(table, path)
    return str(path)


def decoded_rows(examples_dir, split):
    """Rows of one split as sorted tuples (single-value lists unwrapped)."""
    batch = examples.read_split(examples_dir, split)
    columns = sorted(batch.schema.names)
    values = [[None if v is None else v[0] for v in batch.column(c).to_pylist()] for c in columns]
    return sorted(zip(*values), key=repr)


def expected_rows(table):
    columns = sorted(table.column_names)
    rows = []
    for row in zip(*[table.column(c).to_pylist() for c in columns]):
        converted = []
        for value in row:
            if isinstance(value, str):
                value = value.encode()
            elif isinstance(value, float):
                value = float(np.float32(value))
            converted.append(value)
        rows.append(tuple(converted))
    return sorted(rows, key=repr)


def tree_digest(directory):
    digest = hashlib.sha256()
    for base, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, directory).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


@pytest.fixture
def penguins_csv(tmp_path, penguins_table):
    return write_csv(str(tmp_path / "in" / "penguins.csv"), penguins_table)


def test_splits_contain_every_row_once_with_values_intact(tmp_path, penguins_csv, penguins_table):
    out = str(tmp_path / "examples")
    metadata = executor.run(penguins_csv, out, splits="train:2,eval:1", label_column="species")

    assert layout.list_splits(out) == ["eval", "train"]
    counts = metadata["row_counts"]
    assert counts["train"] + counts["eval"] == penguins_table.num_rows == 333
    assert 0.55 < counts["train"] / 333 < 0.78  # hash split honours the 2:1 weights roughly
    assert json.loads(metadata[layout.SPLIT_NAMES]) == ["train", "eval"]
    assert metadata["columns"] == penguins_table.column_names  # CSV header order is recorded
    assert metadata["column_types"]["body_mass_g"] == "integer"
    assert metadata["column_types"]["bill_length_mm"] == "float"
    assert metadata["input_fingerprint"].startswith("sha256:")
    assert metadata["payload_format"] == "FORMAT_TF_EXAMPLE"
    for split in ("train", "eval"):
        files = os.listdir(layout.split_dir(out, split))
        assert files and all(f.startswith("data_tfrecord-") and f.endswith(".gz") for f in files)
        with open(os.path.join(layout.split_dir(out, split), files[0]), "rb") as handle:
            assert handle.read(2) == b"\x1f\x8b"  # gzipped, as TFX writes them
    got = decoded_rows(out, "train") + decoded_rows(out, "eval")
    assert sorted(got, key=repr) == expected_rows(penguins_table)


def test_rerun_gives_byte_identical_splits(tmp_path, penguins_csv):
    executor.run(penguins_csv, str(tmp_path / "a"))
    executor.run(penguins_csv, str(tmp_path / "b"))
    assert tree_digest(str(tmp_path / "a")) == tree_digest(str(tmp_path / "b"))


def test_same_values_split_alike_from_csv_and_parquet(tmp_path, penguins_table, penguins_csv):
    parquet = str(tmp_path / "in.parquet")
    pq.write_table(penguins_table, parquet)
    from_csv = executor.run(penguins_csv, str(tmp_path / "csv"))
    from_parquet = executor.run(parquet, str(tmp_path / "parquet"))
    assert from_csv["row_counts"] == from_parquet["row_counts"]
    assert decoded_rows(str(tmp_path / "csv"), "eval") == decoded_rows(str(tmp_path / "parquet"), "eval")


def test_a_pandas_category_column_in_parquet_is_stored_as_its_values(tmp_path, penguins_table, penguins_csv):
    """pandas writes a ``category`` column as an Arrow dictionary; the Examples hold its values, as from the CSV."""
    frame = penguins_table.to_pandas().astype({"island": "category", "sex": "category"})
    frame.to_parquet(tmp_path / "categories.parquet", index=False)
    assert pa.types.is_dictionary(pq.read_schema(tmp_path / "categories.parquet").field("island").type)
    from_parquet = executor.run(str(tmp_path / "categories.parquet"), str(tmp_path / "parquet"))
    from_csv = executor.run(penguins_csv, str(tmp_path / "csv"))
    assert from_parquet["column_types"]["island"] == from_csv["column_types"]["island"]
    assert decoded_rows(str(tmp_path / "csv"), "eval") == decoded_rows(str(tmp_path / "parquet"), "eval")


def test_missing_values_become_absent_features(tmp_path, penguins_raw_table):
    path = write_csv(str(tmp_path / "raw.csv"), penguins_raw_table)
    out = str(tmp_path / "examples")
    executor.run(path, out)
    missing_sex = sum(examples.read_split(out, s).column("sex").null_count for s in ("train", "eval"))
    assert missing_sex == penguins_raw_table.column("sex").null_count == 11


def all_values(examples_dir, column):
    """Every value of ``column`` over all splits: a None per example without it, then the values by repr."""
    values = []
    for split in layout.list_splits(examples_dir):
        values += [None if v is None else v[0] for v in examples.read_split(examples_dir, split).column(column)
                   .to_pylist()]
    return [v for v in values if v is None] + sorted((v for v in values if v is not None), key=repr)


SALES_CSV = ("region,units,price,note\n"
             "EU,3,1.5,ok\n"
             "NA,,2.5,null\n"      # North America; units empty; note the word "null"
             "NA,NA,N/A,\n"         # units and price NA tokens; note empty
             "APAC,7,null,ok\n"
             "NA,5,3.0,ok\n")


def test_na_stays_a_category_in_text_and_means_missing_in_numbers(tmp_path):
    (tmp_path / "sales.csv").write_text(SALES_CSV)
    out = str(tmp_path / "examples")
    report = tmp_path / "report.md"
    metadata = executor.run(str(tmp_path / "sales.csv"), out, splits="train:1", report_path=str(report))

    assert metadata["column_types"] == {"region": "string", "units": "integer", "price": "float", "note": "string"}
    assert all_values(out, "region") == [b"APAC", b"EU", b"NA", b"NA", b"NA"]   # North America kept
    assert all_values(out, "units") == [None, None, 3, 5, 7]
    assert all_values(out, "note") == [None, b"null", b"ok", b"ok", b"ok"]      # only the empty field is missing
    assert metadata["missing_values"] == {"units": {"": 1, "NA": 1}, "price": {"N/A": 1, "null": 1},
                                          "note": {"": 1}}
    assert metadata["na_like_values_kept"] == {"region": {"NA": 3}, "note": {"null": 1}}
    assert metadata["null_values"] == list(reading.DEFAULT_NULL_VALUES)
    assert metadata["string_null_values"] == [""]
    text = report.read_text()
    assert "## Missing values" in text
    assert "| `units` | integer | 2 | 40.0% | empty field × 1, `NA` × 1 |" in text
    assert "Text column `region` keeps `NA` × 3 as values" in text and "string_null_values" in text


def test_missing_tokens_are_configurable(tmp_path):
    (tmp_path / "sales.csv").write_text(SALES_CSV + "EU,-999,4.0,ok\n")
    out = str(tmp_path / "examples")
    metadata = executor.run(str(tmp_path / "sales.csv"), out, splits="train:1", string_null_values=",NA,null",
                            null_values='["", "NA", "N/A", "null", "-999"]')
    assert all_values(out, "region") == [None, None, None, b"APAC", b"EU", b"EU"]
    assert all_values(out, "units") == [None, None, None, 3, 5, 7]
    assert metadata["missing_values"]["region"] == {"NA": 3}
    assert metadata["missing_values"]["units"] == {"": 1, "-999": 1, "NA": 1}
    assert metadata["missing_values"]["note"] == {"": 1, "null": 1}
    assert metadata["na_like_values_kept"] == {}

    # No token at all: an empty field is not a number, so the column stays text and keeps every field.
    metadata = executor.run(str(tmp_path / "sales.csv"), str(tmp_path / "none"), splits="train:1",
                            null_values="[]", string_null_values="[]")
    assert metadata["column_types"]["units"] == "string" and metadata["missing_values"] == {}
    assert all_values(str(tmp_path / "none"), "note") == [b"", b"null", b"ok", b"ok", b"ok", b"ok"]


def test_nan_is_a_float_value_when_not_a_missing_token(tmp_path):
    (tmp_path / "x.csv").write_text("id,x\n1,1.5\n2,nan\n3,\n4,2.5\n")
    default = executor.run(str(tmp_path / "x.csv"), str(tmp_path / "a"), splits="train:1")
    assert default["missing_values"] == {"x": {"": 1, "nan": 1}}
    only_empty = executor.run(str(tmp_path / "x.csv"), str(tmp_path / "b"), splits="train:1", null_values=",")
    assert only_empty["missing_values"] == {"x": {"": 1}}
    values = all_values(str(tmp_path / "b"), "x")
    assert values[0] is None and values[1:3] == [1.5, 2.5] and np.isnan(values[3])


def test_a_column_without_values_in_one_file_takes_the_type_of_the_others(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "1.csv").write_text("id,mass,region\n1,3750,EU\n2,3800,NA\n")
    (tmp_path / "d" / "2.csv").write_text("id,mass,region\n3,NA,NA\n4,,NA\n")
    metadata = executor.run(str(tmp_path / "d"), str(tmp_path / "out"), splits="train:1")
    assert metadata["column_types"]["mass"] == "integer" and metadata["column_types"]["region"] == "string"
    assert metadata["missing_values"] == {"mass": {"": 1, "NA": 1}}
    assert all_values(str(tmp_path / "out"), "region") == [b"EU", b"NA", b"NA", b"NA"]
    # Only missing tokens in every file: text (a column of "NA" is the category NA).
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "1.csv").write_text("id,flag\n1,NA\n2,NA\n")
    metadata = executor.run(str(tmp_path / "e"), str(tmp_path / "out2"), splits="train:1")
    assert metadata["column_types"]["flag"] == "string" and metadata["missing_values"] == {}


def test_parquet_and_tfrecord_nulls_are_counted(tmp_path, penguins_raw_table):
    parquet = str(tmp_path / "raw.parquet")
    pq.write_table(penguins_raw_table, parquet)
    metadata = executor.run(parquet, str(tmp_path / "a"))
    assert metadata["missing_values"]["sex"] == {reading.NATIVE_NULL: 11}
    assert metadata["missing_values"]["bill_length_mm"] == {reading.NATIVE_NULL: 2}
    again = executor.run(os.path.join(str(tmp_path / "a"), "Split-*", "*.gz"), str(tmp_path / "b"))
    assert again["missing_values"]["sex"] == {reading.NATIVE_NULL: 11}


@pytest.mark.parametrize("value, match", [("[1, 2]", "null_values must be a JSON list of strings"),
                                          ("[\"NA\"", "null_values: not a valid JSON list")])
def test_bad_null_values(tmp_path, penguins_csv, value, match):
    assert_fails_cleanly(tmp_path, penguins_csv, match, ConfigError, null_values=value)


def test_partition_column_keeps_groups_together(tmp_path, penguins_csv):
    out = str(tmp_path / "examples")
    executor.run(penguins_csv, out, partition_column="body_mass_g", splits={"train": 1, "eval": 1})
    masses = {}
    for split in layout.list_splits(out):
        for value in examples.read_split(out, split).column("body_mass_g").to_pylist():
            masses.setdefault(value[0], set()).add(split)
    assert len(masses) > 50 and all(len(splits) == 1 for splits in masses.values())


def test_a_split_left_empty_is_an_error(tmp_path, penguins_csv):
    assert_fails_cleanly(tmp_path, penguins_csv, r"split '.*' got no rows .*partition column 'sex'",
                         partition_column="sex", splits="train:1,eval:1,test:1")


def test_three_splits_follow_the_weights(tmp_path):
    path = write_csv(str(tmp_path / "synthetic.csv"), synthetic.generate(20_000, seed=1))
    metadata = executor.run(path, str(tmp_path / "examples"), splits="train:8,eval:1,test:1", num_shards=2)
    counts = metadata["row_counts"]
    assert sum(counts.values()) == 20_000
    assert abs(counts["train"] / 20_000 - 0.8) < 0.02
    assert abs(counts["test"] / 20_000 - 0.1) < 0.02
    assert sorted(os.listdir(layout.split_dir(str(tmp_path / "examples"), "test"))) == [
        "data_tfrecord-00000-of-00002.gz", "data_tfrecord-00001-of-00002.gz"]


def test_span_pattern_picks_the_latest_span(tmp_path, penguins_table):
    for span, rows in ((1, 100), (2, 150), (10, 120)):
        write_csv(str(tmp_path / "data" / f"span-{span}" / "part.csv"), penguins_table.slice(0, rows))
    metadata = executor.run(str(tmp_path / "data" / "span-{SPAN}" / "*.csv"), str(tmp_path / "examples"))
    assert metadata[layout.SPAN] == 10
    assert sum(metadata["row_counts"].values()) == 120


def test_directory_of_files_and_fingerprint(tmp_path, penguins_table):
    directory = tmp_path / "dir"
    write_csv(str(directory / "a.csv"), penguins_table.slice(0, 200))
    write_csv(str(directory / "b.csv"), penguins_table.slice(200))
    first = executor.run(str(directory), str(tmp_path / "one"))
    again = executor.run(str(directory), str(tmp_path / "two"))
    assert sum(first["row_counts"].values()) == 333 and len(first["input_files"]) == 2
    assert first["input_fingerprint"] == again["input_fingerprint"]
    write_csv(str(directory / "b.csv"), penguins_table.slice(201))
    changed = executor.run(str(directory), str(tmp_path / "three"))
    assert changed["input_fingerprint"] != first["input_fingerprint"]


def test_tfrecord_input_round_trips(tmp_path, penguins_csv):
    first = str(tmp_path / "first")
    executor.run(penguins_csv, first)
    second = str(tmp_path / "second")
    metadata = executor.run(os.path.join(first, "Split-*", "*.gz"), second, splits="train:1,eval:1")
    assert metadata["input_format"] == "tfrecord" and sum(metadata["row_counts"].values()) == 333
    assert sorted(decoded_rows(first, "train") + decoded_rows(first, "eval"), key=repr) == \
        sorted(decoded_rows(second, "train") + decoded_rows(second, "eval"), key=repr)


def test_report_lists_splits_and_columns(tmp_path, penguins_csv):
    report = tmp_path / "report.md"
    executor.run(penguins_csv, str(tmp_path / "examples"), report_path=str(report))
    text = report.read_text()
    assert "| train |" in text and "| eval |" in text and "bill_length_mm" in text


# --- bad input: a clear message naming the file/column, and no artifact left behind ---------


def assert_fails_cleanly(tmp_path, input_uri, match, error=InputDataError, **kwargs):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        executor.run(str(input_uri), str(out), **kwargs)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_missing_input_file(tmp_path):
    assert_fails_cleanly(tmp_path, tmp_path / "nope.csv", r"input not found: .*nope\.csv")


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    assert_fails_cleanly(tmp_path, tmp_path / "empty.csv", r"empty\.csv is empty")


def test_header_only_file(tmp_path):
    (tmp_path / "header.csv").write_text("a,b,c\n")
    assert_fails_cleanly(tmp_path, tmp_path / "header.csv", r"header\.csv: no data rows")


def test_ragged_rows_name_the_line(tmp_path):
    (tmp_path / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5,6,7\n8,9,10\n")
    assert_fails_cleanly(tmp_path, tmp_path / "ragged.csv", r"ragged\.csv: line 3 has 4 fields but the header has 3")


def test_non_utf8_byte_names_line_and_column(tmp_path):
    (tmp_path / "latin.csv").write_bytes(b"name,island\nx,Biscoe\ny,Dr\xe9am\n")
    assert_fails_cleanly(tmp_path, tmp_path / "latin.csv",
                         r"latin\.csv: line 3, column 'island': byte 0xe9 is not valid utf-8.*encoding")
    # ...and the suggested fix works.
    metadata = executor.run(str(tmp_path / "latin.csv"), str(tmp_path / "ok"), encoding="latin-1", splits="train:1")
    assert sum(metadata["row_counts"].values()) == 2


def test_column_type_changing_between_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "1.csv").write_text("id,mass\n1,3750\n2,3800\n")
    (tmp_path / "d" / "2.csv").write_text("id,mass\n3,heavy\n4,light\n")
    assert_fails_cleanly(tmp_path, tmp_path / "d",
                         r"column 'mass' is integer in .*1\.csv but string in .*2\.csv")


def test_int_and_float_files_widen_to_float(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "1.csv").write_text("id,mass\n1,3750\n2,3800\n")
    (tmp_path / "d" / "2.csv").write_text("id,mass\n3,3900.5\n")
    metadata = executor.run(str(tmp_path / "d"), str(tmp_path / "out"), splits="train:1")
    assert metadata["column_types"]["mass"] == "float"


def test_label_column_absent(tmp_path, penguins_csv):
    assert_fails_cleanly(tmp_path, penguins_csv, r"label_column 'label' is not a column of .*penguins\.csv; "
                                                 r"columns are: species, island", label_column="label")


def test_bad_split_config(tmp_path, penguins_csv):
    assert_fails_cleanly(tmp_path, penguins_csv, "weight of 'eval' must be positive", ConfigError,
                         splits="train:1,eval:0")
    assert_fails_cleanly(tmp_path, penguins_csv, "is not name:weight", ConfigError, splits="train")


def test_corrupt_tfrecord(tmp_path):
    (tmp_path / "bad.tfrecord").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00garbagegarbage")
    assert_fails_cleanly(tmp_path, tmp_path / "bad.tfrecord", r"bad\.tfrecord: corrupt TFRecord length at byte 0")


def test_existing_output_is_never_overwritten(tmp_path, penguins_csv):
    out = tmp_path / "examples"
    out.mkdir()
    (out / "keep.txt").write_text("previous")
    with pytest.raises(FileExistsError):
        executor.run(penguins_csv, str(out))
    assert (out / "keep.txt").read_text() == "previous"


def test_row_hash_is_column_order_independent():
    table = pa.table({"a": [1, 2, None], "b": ["x", "y", "z"]})
    swapped = table.select(["b", "a"])
    assert np.array_equal(splitting.row_hashes(table, ["a", "b"]), splitting.row_hashes(swapped, ["b", "a"]))
    assert len(set(splitting.row_hashes(table, ["a", "b"]).tolist())) == 3


def test_the_examples_record_how_the_data_was_read_for_the_model(tmp_path):
    """The Examples' directory records what the Trainer copies into the model for scoring to read new data as this
    was read: a CSV's fields that meant missing, and a CSV's or Parquet's boolean columns (stored as INT 1/0);
    TFRecords hold neither fact."""
    (tmp_path / "sales.csv").write_text("region,units,paid\nEU,3,True\nNA,-999,False\nEU,,True\n")
    out = str(tmp_path / "examples")
    metadata = executor.run(str(tmp_path / "sales.csv"), out, splits="train:1", null_values=",-999",
                            string_null_values=",NA")
    assert metadata["column_types"]["paid"] == "bool" and sorted(all_values(out, "paid")) == [0, 1, 1]
    assert examples.reading_facts(out) == {"null_values": ["", "-999"], "string_null_values": ["", "NA"],
                                           "boolean_columns": ["paid"]}
    assert layout.list_splits(out) == ["train"]
    pq.write_table(pa.table({"units": [3, 5], "paid": [True, None], "sold": [False, True]}),
                   str(tmp_path / "sales.parquet"))
    executor.run(str(tmp_path / "sales.parquet"), str(tmp_path / "from-parquet"), splits="train:1")
    assert examples.reading_facts(str(tmp_path / "from-parquet")) == {"boolean_columns": ["paid", "sold"]}
    executor.run(os.path.join(out, "Split-train", "*"), str(tmp_path / "from-tfrecord"), splits="train:1")
    assert json.load(open(os.path.join(str(tmp_path / "from-tfrecord"), layout.EXAMPLES_READING_FILE))) == {
        "input_format": "tfrecord"}
    assert examples.reading_facts(str(tmp_path / "from-tfrecord")) == {}
