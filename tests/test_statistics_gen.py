"""StatisticsGen executor on real penguin data, checked against pyarrow/NumPy computed independently."""

import collections
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl.coders import example_coder

from kubetfx.components.common import layout, tfmd, tfrecord
from kubetfx.components.common.errors import InputDataError
from kubetfx.components.data_validation import statistics
from kubetfx.components.statistics_gen import executor

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
CATEGORICAL = ["species", "island", "sex"]
DECILES = np.linspace(0.0, 1.0, 11)
STANDARD = statistics_pb2.Histogram.STANDARD
QUANTILES = statistics_pb2.Histogram.QUANTILES
Stats = statistics_pb2.FeatureNameStatistics


def _features(dataset) -> dict:
    return {tfmd.feature_name(f): f for f in dataset.features}


def _histogram(num_stats, kind):
    (histogram,) = [h for h in num_stats.histograms if h.type == kind]
    return histogram


def _stored_numbers(column: pa.ChunkedArray) -> np.ndarray:
    """Non-null values as tf.Example stores them (float32 for floating columns), as float64."""
    column = column.drop_null()
    if pa.types.is_floating(column.type):
        column = column.cast(pa.float32())
    return column.to_numpy().astype(np.float64)


@pytest.fixture
def penguin_stats(penguin_examples, tmp_path):
    output_dir = str(tmp_path / "statistics")
    report_path = str(tmp_path / "report" / "statistics.md")
    metadata = executor.run(penguin_examples, output_dir, report_path=report_path)
    return output_dir, report_path, metadata


def test_penguin_statistics_match_arrow(penguin_stats, penguins_table):
    output_dir, _, _ = penguin_stats
    cut = penguins_table.num_rows * 2 // 3
    tables = {"train": penguins_table.slice(0, cut), "eval": penguins_table.slice(cut)}
    assert layout.list_splits(output_dir) == ["eval", "train"]
    for split, table in tables.items():
        stats_list = tfmd.read_statistics(output_dir, split)
        assert len(stats_list.datasets) == 1
        dataset = stats_list.datasets[0]
        assert dataset.name == split
        assert dataset.num_examples == table.num_rows
        features = _features(dataset)
        assert sorted(features) == sorted(table.column_names)

        for name in NUMERIC:
            feature = features[name]
            expected_type = Stats.FLOAT if pa.types.is_floating(table.schema.field(name).type) else Stats.INT
            assert feature.type == expected_type, name
            assert list(feature.path.step) == [name]
            num = feature.num_stats
            values = _stored_numbers(table.column(name))
            common = num.common_stats
            assert common.num_non_missing == table.num_rows and common.num_missing == 0
            assert (common.min_num_values, common.max_num_values, common.tot_num_values) == (1, 1, table.num_rows)
            assert common.avg_num_values == pytest.approx(1.0)
            assert num.mean == pytest.approx(values.mean(), rel=1e-6)
            assert num.std_dev == pytest.approx(values.std(), rel=1e-5)  # population std dev
            assert num.num_zeros == np.count_nonzero(values == 0)
            assert num.min == pytest.approx(values.min(), rel=1e-6)
            assert num.max == pytest.approx(values.max(), rel=1e-6)
            assert num.median == pytest.approx(np.median(values), rel=1e-6)

            standard = _histogram(num, STANDARD)
            assert sum(b.sample_count for b in standard.buckets) == table.num_rows
            if values.min() < values.max():
                expected_counts, expected_edges = np.histogram(values, bins=10, range=(values.min(), values.max()))
                assert [b.sample_count for b in standard.buckets] == expected_counts.tolist()
                assert [b.low_value for b in standard.buckets] == pytest.approx(expected_edges[:-1].tolist(), rel=1e-6)
                assert standard.buckets[-1].high_value == pytest.approx(values.max(), rel=1e-6)
            else:
                assert len(standard.buckets) == 1

            quantiles = _histogram(num, QUANTILES)
            assert len(quantiles.buckets) == 10
            assert sum(b.sample_count for b in quantiles.buckets) == pytest.approx(table.num_rows)
            boundaries = [quantiles.buckets[0].low_value] + [b.high_value for b in quantiles.buckets]
            assert boundaries == pytest.approx(np.quantile(values, DECILES).tolist(), rel=1e-6)
            assert standard.num_nan == quantiles.num_nan == 0

            values_histogram = common.num_values_histogram
            assert values_histogram.type == QUANTILES and len(values_histogram.buckets) == 10
            assert sum(b.sample_count for b in values_histogram.buckets) == pytest.approx(table.num_rows)

        for name in CATEGORICAL:
            feature = features[name]
            assert feature.type == Stats.STRING, name
            string = feature.string_stats
            values = table.column(name).to_pylist()
            counts = collections.Counter(values)
            assert string.common_stats.num_non_missing == table.num_rows
            assert string.unique == len(counts)
            assert string.avg_length == pytest.approx(np.mean([len(v.encode()) for v in values]), rel=1e-6)
            expected_top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode()))
            assert [(t.value, t.frequency) for t in string.top_values] == expected_top
            ranks = string.rank_histogram.buckets
            assert [(b.low_rank, b.high_rank, b.label, b.sample_count) for b in ranks] == \
                [(i, i, v, c) for i, (v, c) in enumerate(expected_top)]
            assert sum(b.sample_count for b in ranks) == table.num_rows


def test_known_penguin_values(penguin_stats):
    output_dir, _, _ = penguin_stats
    train = _features(tfmd.read_statistics(output_dir, "train").datasets[0])
    assert train["island"].string_stats.unique == 3
    # The CSV is ordered by species: the first 222 complete rows are the 146 Adelie and 76 Gentoo.
    species = train["species"].string_stats
    assert [(t.value, t.frequency) for t in species.top_values] == [("Adelie", 146), ("Gentoo", 76)]
    year = train["year"].num_stats
    assert 2007 <= year.min <= year.median <= year.max <= 2009


def test_missing_values_are_counted(make_examples_artifact, penguins_raw_table, tmp_path):
    examples_dir = make_examples_artifact({"train": penguins_raw_table})
    metadata = executor.run(examples_dir, str(tmp_path / "out"))
    assert metadata["num_examples"] == {"train": 344}
    dataset = tfmd.read_statistics(str(tmp_path / "out"), "train").datasets[0]
    features = _features(dataset)
    for name in NUMERIC + CATEGORICAL:
        column = penguins_raw_table.column(name)
        kind = features[name].WhichOneof("stats")
        common = getattr(features[name], kind).common_stats
        assert common.num_missing == column.null_count, name
        assert common.num_non_missing == 344 - column.null_count, name
    assert features["sex"].string_stats.common_stats.num_missing == 11
    for name in ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]:
        num = features[name].num_stats
        assert num.common_stats.num_missing == 2
        values = _stored_numbers(penguins_raw_table.column(name))
        assert num.mean == pytest.approx(values.mean(), rel=1e-6)
        assert sum(b.sample_count for b in _histogram(num, STANDARD).buckets) == 342
    assert features["year"].num_stats.common_stats.num_missing == 0


def test_report_and_metadata(penguin_stats, penguins_table):
    output_dir, report_path, metadata = penguin_stats
    cut = penguins_table.num_rows * 2 // 3
    assert metadata == {
        "tfx_type": "ExampleStatistics",
        "split_names": json.dumps(["eval", "train"]),
        "num_examples": {"train": cut, "eval": penguins_table.num_rows - cut},
        "features": 8,
    }
    text = open(report_path, encoding="utf-8").read()
    assert "## Split `train`" in text and "## Split `eval`" in text
    assert "### Numeric features" in text and "### Categorical features" in text
    for name in NUMERIC + CATEGORICAL:
        assert f"`{name}`" in text
    assert "Biscoe" in text and "Adelie" in text
    assert any(char in text for char in "▁▂▃▄▅▆▇█")  # histogram sparklines


def test_output_is_deterministic(penguin_examples, tmp_path):
    outputs = []
    for name in ("a", "b"):
        executor.run(penguin_examples, str(tmp_path / name))
        with open(os.path.join(layout.split_dir(str(tmp_path / name), "train"), layout.STATISTICS_FILE), "rb") as f:
            outputs.append(f.read())
    assert outputs[0] == outputs[1]


def test_selected_splits(penguin_examples, tmp_path):
    metadata = executor.run(penguin_examples, str(tmp_path / "out"), splits=["eval"])
    assert layout.list_splits(str(tmp_path / "out")) == ["eval"]
    assert json.loads(metadata["split_names"]) == ["eval"]
    with pytest.raises(InputDataError, match="'test'"):
        executor.run(penguin_examples, str(tmp_path / "out2"), splits=["test"])
    assert not os.path.exists(tmp_path / "out2")


def _write_records(examples_dir: str, split: str, batch: pa.RecordBatch) -> None:
    split_dir = layout.split_dir(examples_dir, split)
    os.makedirs(split_dir)
    tfrecord.write_file(os.path.join(split_dir, layout.examples_file_name(0, 1)),
                        example_coder.RecordBatchToExamplesEncoder().encode(batch))


def test_multivalent_nan_and_bytes_features(tmp_path):
    """Lists of several values, empty lists, missing features, NaN and non-UTF-8 bytes."""
    nan = float("nan")
    batch = pa.RecordBatch.from_arrays([
        pa.array([[1, 2, 3], None, [], [0], [5, 5]], pa.large_list(pa.int64())),
        pa.array([[1.5, nan], [0.0], None, [nan], [-2.0, 4.0, 4.0]], pa.large_list(pa.float32())),
        pa.array([[b"\xff\xfe", b"b"], [b"b"], [b"a"], None, [b"a", b"b"]], pa.large_list(pa.large_binary())),
        pa.array([[b"x"], [b"y"], [b"x"], [b"y"], [b"z"]], pa.large_list(pa.large_binary())),
    ], ["ints", "floats", "blobs", "tags"])
    examples_dir = str(tmp_path / "examples")
    _write_records(examples_dir, "train", batch)
    executor.run(examples_dir, str(tmp_path / "out"), report_path=str(tmp_path / "report.md"))
    features = _features(tfmd.read_statistics(str(tmp_path / "out"), "train").datasets[0])

    ints = features["ints"]
    assert ints.type == Stats.INT
    common = ints.num_stats.common_stats
    assert (common.num_non_missing, common.num_missing) == (4, 1)
    assert (common.min_num_values, common.max_num_values, common.tot_num_values) == (0, 3, 6)
    assert common.avg_num_values == pytest.approx(1.5)
    boundaries = [common.num_values_histogram.buckets[0].low_value] + \
        [b.high_value for b in common.num_values_histogram.buckets]
    assert boundaries == pytest.approx(np.quantile([3, 0, 1, 2], DECILES).tolist())
    values = np.array([1, 2, 3, 0, 5, 5], dtype=np.float64)
    num = ints.num_stats
    assert (num.min, num.median, num.max, num.num_zeros) == (0, 2.5, 5, 1)
    assert num.mean == pytest.approx(values.mean()) and num.std_dev == pytest.approx(values.std())

    floats = features["floats"].num_stats
    assert features["floats"].type == Stats.FLOAT
    finite = np.array([1.5, 0.0, -2.0, 4.0, 4.0])
    assert floats.common_stats.tot_num_values == 7  # NaNs are values (counted), excluded from the numbers
    assert floats.mean == pytest.approx(finite.mean()) and floats.std_dev == pytest.approx(finite.std())
    assert (floats.min, floats.median, floats.max, floats.num_zeros) == (-2.0, 1.5, 4.0, 1)
    for kind in (STANDARD, QUANTILES):
        histogram = _histogram(floats, kind)
        assert histogram.num_nan == 2
        assert sum(b.sample_count for b in histogram.buckets) == pytest.approx(5)

    blobs = features["blobs"]
    assert blobs.type == Stats.BYTES
    assert blobs.string_stats.unique == 3
    assert blobs.string_stats.invalid_utf8_count == 1
    assert [(t.value, t.frequency) for t in blobs.string_stats.top_values] == [("b", 3), ("a", 2), ("\ufffd\ufffd", 1)]
    assert blobs.string_stats.avg_length == pytest.approx(7 / 6)

    tags = features["tags"].string_stats
    assert features["tags"].type == Stats.STRING
    # Ties are broken by value: x and y both appear twice.
    assert [(t.value, t.frequency) for t in tags.top_values] == [("x", 2), ("y", 2), ("z", 1)]
    assert "`blobs`" in open(tmp_path / "report.md", encoding="utf-8").read()


def test_infinities_from_a_csv_reach_the_statistics(tmp_path):
    """`printf 'x\\n1.5\\n2.5\\ninf\\n'` through the real ExampleGen: max = inf, as TFDV writes it."""
    from kubetfx.components.example_gen import executor as example_gen

    (tmp_path / "data.csv").write_text("x,y\n1.5,-inf\n2.5,1\ninf,2\n-inf,inf\n3.5,nan\n")
    example_gen.run(str(tmp_path / "data.csv"), str(tmp_path / "examples"), splits="train:1", null_values=",")
    report_path = str(tmp_path / "report.md")
    executor.run(str(tmp_path / "examples"), str(tmp_path / "out"), report_path=report_path)
    features = _features(tfmd.read_statistics(str(tmp_path / "out"), "train").datasets[0])

    x, y = features["x"].num_stats, features["y"].num_stats
    assert (x.min, x.max, x.median) == (-np.inf, np.inf, 2.5)
    assert np.isnan(x.mean) and np.isnan(x.std_dev)  # +inf and -inf: no mean
    assert (y.min, y.max) == (-np.inf, np.inf) and _histogram(y, STANDARD).num_nan == 1
    standard = [(b.low_value, b.high_value, b.sample_count) for b in _histogram(x, STANDARD).buckets]
    # TFDV's layout: [-inf, -inf], ten equal-width buckets over the finite values, [inf, inf].
    assert standard[0] == (-np.inf, -np.inf, 1) and standard[-1] == (np.inf, np.inf, 1)
    assert len(standard) == 12 and (standard[1][0], standard[-2][1]) == (1.5, 3.5)
    assert sum(count for _, _, count in standard[1:-1]) == 3
    quantiles = [(b.low_value, b.high_value) for b in _histogram(x, QUANTILES).buckets]
    assert quantiles[0][0] == -np.inf and quantiles[-1][1] == np.inf
    assert not any(np.isnan(bound) for bucket in quantiles for bound in bucket)
    row = next(line for line in open(report_path, encoding="utf-8") if line.startswith("| `x` |"))
    assert "| -inf |" in row and "| inf |" in row and "(1 -inf, 1 +inf)" in row

    # Only +inf on top of finite values: the mean is +inf, min stays finite.
    (tmp_path / "one.csv").write_text("x\n1.5\n2.5\ninf\n")
    example_gen.run(str(tmp_path / "one.csv"), str(tmp_path / "examples-one"), splits="train:1")
    executor.run(str(tmp_path / "examples-one"), str(tmp_path / "out-one"))
    one = _features(tfmd.read_statistics(str(tmp_path / "out-one"), "train").datasets[0])["x"].num_stats
    assert (one.min, one.max, one.mean, one.median) == (1.5, np.inf, np.inf, 2.5)


def test_many_string_values_are_capped(tmp_path):
    values = [[f"v{i:05d}".encode()] * (1 + i % 3) for i in range(1500)]
    batch = pa.RecordBatch.from_arrays([pa.array(values, pa.large_list(pa.large_binary()))], ["token"])
    feature = statistics.generate_statistics(batch, "train").datasets[0].features[0]
    string = feature.string_stats
    assert string.unique == 1500
    assert len(string.top_values) == statistics.NUM_TOP_VALUES
    assert len(string.rank_histogram.buckets) == statistics.NUM_RANK_HISTOGRAM_BUCKETS
    # Frequency 3 first (i % 3 == 2), smallest value first among ties.
    assert [(t.value, t.frequency) for t in string.top_values[:2]] == [("v00002", 3), ("v00005", 3)]
    assert string.rank_histogram.buckets[-1].sample_count == 2


def test_empty_split_is_an_error(make_examples_artifact, penguins_table, tmp_path):
    examples_dir = make_examples_artifact({"train": penguins_table, "eval": penguins_table.slice(0, 0)})
    output_dir = tmp_path / "statistics"
    with pytest.raises(InputDataError) as error:
        executor.run(examples_dir, str(output_dir), report_path=str(tmp_path / "report.md"))
    assert "'eval'" in str(error.value) and examples_dir in str(error.value)
    assert not output_dir.exists()
    assert not (tmp_path / "report.md").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".statistics")]  # no temp leftovers


def test_missing_examples_dir(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        executor.run(str(tmp_path / "nope"), str(tmp_path / "out"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(InputDataError, match="no Split-"):
        executor.run(str(tmp_path / "empty"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_no_tensorflow_imported(penguin_examples, tmp_path):
    """Both executors run in a fresh interpreter without importing TensorFlow, TFT or Beam."""
    script = textwrap.dedent(f"""
        import sys
        from kubetfx.components.statistics_gen import executor as statistics_gen
        from kubetfx.components.schema_gen import executor as schema_gen
        statistics_gen.run({penguin_examples!r}, {str(tmp_path / 'stats')!r}, {str(tmp_path / 'stats.md')!r})
        schema_gen.run({str(tmp_path / 'stats')!r}, {str(tmp_path / 'schema')!r}, {str(tmp_path / 'schema.md')!r},
                       label_column="species")
        loaded = [m for m in ("tensorflow", "tensorflow_transform", "apache_beam") if m in sys.modules]
        assert not loaded, loaded
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
