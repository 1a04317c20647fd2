"""ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator across spans, on real files."""

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from kubetfx.components.common import tfmd
from kubetfx.components.common.errors import AnomaliesFoundError
from kubetfx.components.example_gen import executor as example_gen
from kubetfx.components.example_validator import executor as example_validator
from kubetfx.components.schema_gen import executor as schema_gen
from kubetfx.components.statistics_gen import executor as statistics_gen

LABEL = "species"


def write_span(root, span, table):
    path = os.path.join(root, f"span-{span}", "data.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pacsv.write_csv(table, path)


def ingest(tmp_path, name, data_root):
    """ExampleGen + StatisticsGen on the latest span; returns (metadata, statistics dir)."""
    examples = str(tmp_path / f"{name}-examples")
    metadata = example_gen.run(os.path.join(data_root, "span-{SPAN}", "*.csv"), examples, label_column=LABEL)
    statistics = str(tmp_path / f"{name}-statistics")
    statistics_gen.run(examples, statistics)
    return metadata, statistics


@pytest.fixture
def span_one(tmp_path, penguins_table):
    """Span 1 ingested, with its inferred schema (what a team would review and pin)."""
    data_root = str(tmp_path / "data")
    write_span(data_root, 1, penguins_table)
    metadata, statistics = ingest(tmp_path, "span1", data_root)
    schema = str(tmp_path / "span1-schema")
    schema_gen.run(statistics, schema, label_column=LABEL)
    return data_root, statistics, schema, metadata


def anomaly_reasons(anomalies_dir, split):
    anomalies = tfmd.read_anomalies(anomalies_dir, split)
    return {feature: [(anomalies_pb2.AnomalyInfo.Type.Name(r.type), r.description) for r in info.reason]
            for feature, info in anomalies.anomaly_info.items()}


def test_clean_span_has_no_anomalies(tmp_path, span_one):
    _, statistics, schema, metadata = span_one
    assert metadata["span"] == 1
    result = example_validator.run(statistics, schema, str(tmp_path / "anomalies"))
    assert result["anomalies_found"] == 0 and result["blessed"] == 1


def test_column_type_change_between_spans_is_an_anomaly(tmp_path, span_one, penguins_table):
    data_root, _, schema, _ = span_one
    as_text = pc.if_else(pc.greater(penguins_table["body_mass_g"], 4000), "heavy", "light")
    span_two = penguins_table.set_column(penguins_table.schema.get_field_index("body_mass_g"), "body_mass_g", as_text)
    write_span(data_root, 2, span_two)
    metadata, statistics = ingest(tmp_path, "span2", data_root)
    assert metadata["span"] == 2 and metadata["column_types"]["body_mass_g"] == "string"

    anomalies = str(tmp_path / "anomalies")
    with pytest.raises(AnomaliesFoundError, match=r"train/body_mass_g: UNEXPECTED_DATA_TYPE: .*INT.*STRING"):
        example_validator.run(statistics, schema, anomalies, report_path=str(tmp_path / "report.md"))
    reasons = anomaly_reasons(anomalies, "train")
    assert [kind for kind, _ in reasons["body_mass_g"]] == ["UNEXPECTED_DATA_TYPE"]
    assert "body_mass_g" in (tmp_path / "report.md").read_text()


def test_drift_between_spans(tmp_path, span_one, penguins_table):
    data_root, span_one_statistics, schema, _ = span_one
    only_gentoo = penguins_table.filter(pc.equal(penguins_table[LABEL], "Gentoo"))  # island and sizes drift
    write_span(data_root, 2, pa.concat_tables([only_gentoo, only_gentoo]))
    _, statistics = ingest(tmp_path, "span2", data_root)

    result = example_validator.run(statistics, schema, str(tmp_path / "drift"),
                                   comparison_statistics_dir=span_one_statistics, comparison_mode="drift",
                                   linf_threshold=0.3, jsd_threshold=0.3, fail_on_anomalies=False)
    reasons = anomaly_reasons(str(tmp_path / "drift"), "train")
    assert "COMPARATOR_L_INFTY_HIGH" in [kind for kind, _ in reasons["island"]]
    assert "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in [kind for kind, _ in reasons["body_mass_g"]]
    assert result["blessed"] == 0

    same = example_validator.run(span_one_statistics, schema, str(tmp_path / "no-drift"),
                                 comparison_statistics_dir=span_one_statistics,
                                 linf_threshold=0.01, jsd_threshold=0.01)
    assert same["anomalies_found"] == 0


def test_training_serving_skew(tmp_path, span_one, penguins_table):
    _, train_statistics, schema, _ = span_one
    serving = penguins_table.drop_columns([LABEL])
    serving_examples = str(tmp_path / "serving-examples")
    path = str(tmp_path / "serving.csv")
    pacsv.write_csv(serving, path)
    example_gen.run(path, serving_examples, splits="serving:1")
    serving_statistics = str(tmp_path / "serving-statistics")
    statistics_gen.run(serving_examples, serving_statistics)
    result = example_validator.run(train_statistics, schema, str(tmp_path / "skew"),
                                   comparison_statistics_dir=serving_statistics, comparison_mode="skew",
                                   linf_threshold=0.2, jsd_threshold=0.2)
    assert result["anomalies_found"] == 0  # same population; the label's absence at serving is expected


# --------------------------------------------------------------------------- missing values and infinities


def _rows_per_split(table: pa.Table, key: str) -> dict[str, list[int]]:
    """Row indices ExampleGen puts in train / eval (splits 2:1, partitioned by ``key``)."""
    assignment = example_gen.assign_splits(example_gen.row_hashes(table, [key]), [2.0, 1.0])
    return {split: [i for i, s in enumerate(assignment) if s == index] for index, split in enumerate(["train", "eval"])}


@pytest.mark.parametrize("gaps_in", ["train", "eval"])
def test_a_few_missing_values_pass_wherever_the_hash_puts_them(tmp_path, penguins_table, gaps_in):
    """NA in 5 rows: required-or-not must not depend on the split the rows land in."""
    table = penguins_table.append_column("id", pa.array(range(penguins_table.num_rows), pa.int64()))
    gap_rows = set(_rows_per_split(table, "id")[gaps_in][:5])
    path = tmp_path / "penguins.csv"
    pacsv.write_csv(table, str(path))
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index('"body_mass_g"')
    for row in gap_rows:
        fields = lines[row + 1].split(",")
        fields[column] = "NA"
        lines[row + 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")

    examples, statistics, schema = (str(tmp_path / name) for name in ("examples", "statistics", "schema"))
    metadata = example_gen.run(str(path), examples, partition_column="id", label_column=LABEL)
    assert metadata["missing_values"] == {"body_mass_g": {"NA": 5}}
    statistics_gen.run(examples, statistics)
    lacking = {s: tfmd.read_statistics(statistics, s).datasets[0] for s in ("train", "eval")}
    assert {s: next(f.num_stats.common_stats.num_missing for f in d.features if f.path.step == ["body_mass_g"])
            for s, d in lacking.items()} == {gaps_in: 5, "eval" if gaps_in == "train" else "train": 0}
    schema_gen.run(statistics, schema, label_column=LABEL)
    body_mass = next(f for f in tfmd.read_schema(schema).feature if f.name == "body_mass_g")
    assert not body_mass.presence.HasField("min_fraction") and not body_mass.HasField("shape")
    result = example_validator.run(statistics, schema, str(tmp_path / "anomalies"))
    assert result["anomalies_found"] == 0


def _ratio_table(values) -> pa.Table:
    rows = len(values)
    return pa.table({"id": pa.array(range(rows), pa.int64()), "ratio": pa.array(values, pa.float64()),
                     LABEL: pa.array(["Adelie", "Gentoo"] * (rows // 2) + ["Adelie"] * (rows % 2))})


def test_infinity_fails_validation_as_tfdv_does(tmp_path):
    """Real StatisticsGen output of CSVs with inf: HAS_INF with disallow_inf, BIG/SMALL_FLOAT against the range."""
    data_root = str(tmp_path / "data")
    write_span(data_root, 1, _ratio_table([0.5 + i / 10 for i in range(60)]))
    _, statistics = ingest(tmp_path, "span1", data_root)
    schema = str(tmp_path / "schema")
    schema_gen.run(statistics, schema, label_column=LABEL)
    inferred = tfmd.read_schema(schema)
    ratio = next(f for f in inferred.feature if f.name == "ratio")
    assert ratio.float_domain.min == 0 and not ratio.float_domain.disallow_inf  # TFDV does not infer disallow_inf

    infinite = [float("inf") if i % 6 == 1 else float("-inf") if i % 6 == 4 else 0.5 + i / 10 for i in range(60)]
    write_span(data_root, 2, _ratio_table(infinite))
    _, statistics = ingest(tmp_path, "span2", data_root)
    for split in ("train", "eval"):
        stats = next(f for f in tfmd.read_statistics(statistics, split).datasets[0].features
                     if f.path.step == ["ratio"])
        assert (stats.num_stats.min, stats.num_stats.max) == (float("-inf"), float("inf")), split

    # The inferred schema (min 0, disallow_inf unset): -inf is out of range, and infinite values are an anomaly
    # (TFDV lets them through unless disallow_inf is true; the Trainer would then see NaN losses).
    with pytest.raises(AnomaliesFoundError, match="ratio: FLOAT_TYPE_SMALL_FLOAT"):
        example_validator.run(statistics, schema, str(tmp_path / "inferred-anomalies"))
    reasons = anomaly_reasons(str(tmp_path / "inferred-anomalies"), "train")
    assert [kind for kind, _ in reasons["ratio"]] == ["FLOAT_TYPE_SMALL_FLOAT", "FLOAT_TYPE_HAS_INF"]

    # A curated schema that rejects infinities and bounds the range: every TFDV anomaly type fires.
    ratio.float_domain.disallow_inf = True
    ratio.float_domain.max = 10.0
    curated = str(tmp_path / "curated.pbtxt")
    tfmd.write_schema(curated, inferred)
    with pytest.raises(AnomaliesFoundError):
        example_validator.run(statistics, curated, str(tmp_path / "curated-anomalies"))
    for split in ("train", "eval"):
        kinds = [kind for kind, _ in anomaly_reasons(str(tmp_path / "curated-anomalies"), split)["ratio"]]
        assert kinds == ["FLOAT_TYPE_SMALL_FLOAT", "FLOAT_TYPE_BIG_FLOAT", "FLOAT_TYPE_HAS_INF"], split
