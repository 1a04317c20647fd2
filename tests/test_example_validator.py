"""ExampleValidator executor and the drift/skew distance functions, on real TFMD protos."""

import json
import math
import os
from collections import Counter

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from kubetfx.components.common import layout, tfmd
from kubetfx.components.common.errors import AnomaliesFoundError, ConfigError, InputDataError
from kubetfx.components.data_validation import drift, validation
from kubetfx.components.example_validator import executor

T = anomalies_pb2.AnomalyInfo.Type
FNS = statistics_pb2.FeatureNameStatistics
Measure = anomalies_pb2.DriftSkewInfo.Measurement


# --------------------------------------------------------------------------- TFDV-shaped statistics builders


def numeric(name, values, *, is_int=False, num_buckets=4, values_per_example=(1, 1)):
    """Numeric feature statistics from one value per example (None = missing, nan = NaN)."""
    feature = FNS(type=FNS.INT if is_int else FNS.FLOAT)
    feature.path.step.append(name)
    present = [v for v in values if v is not None]
    common = feature.num_stats.common_stats
    common.num_non_missing = len(present)
    common.num_missing = len(values) - len(present)
    common.min_num_values, common.max_num_values = values_per_example
    common.tot_num_values = len(present)
    common.avg_num_values = 1.0 if present else 0.0
    nan = sum(1 for v in present if isinstance(v, float) and math.isnan(v))
    finite = np.array([v for v in present if not (isinstance(v, float) and math.isnan(v))], dtype=np.float64)
    standard = feature.num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD, num_nan=nan)
    if finite.size:
        num = feature.num_stats
        num.mean, num.std_dev = float(finite.mean()), float(finite.std())
        num.min, num.max, num.median = float(finite.min()), float(finite.max()), float(np.median(finite))
        counts, edges = np.histogram(finite, bins=num_buckets, range=(num.min, num.max))
        for i, count in enumerate(counts):
            standard.buckets.add(low_value=float(edges[i]), high_value=float(edges[i + 1]),
                                 sample_count=float(count))
    return feature


def string(name, values):
    """String feature statistics (rank histogram + top values) from one value per example (None = missing)."""
    feature = FNS(type=FNS.STRING)
    feature.path.step.append(name)
    present = [v for v in values if v is not None]
    common = feature.string_stats.common_stats
    common.num_non_missing = len(present)
    common.num_missing = len(values) - len(present)
    common.min_num_values = common.max_num_values = 1
    common.tot_num_values = len(present)
    counts = sorted(Counter(present).items(), key=lambda kv: (-kv[1], kv[0]))
    feature.string_stats.unique = len(counts)
    for rank, (value, count) in enumerate(counts):
        feature.string_stats.top_values.add(value=value, frequency=count)
        feature.string_stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=value,
                                                        sample_count=count)
    return feature


def dataset(split, num_examples, *features):
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    ds = stats.datasets.add(name=split, num_examples=num_examples)
    ds.features.extend(features)
    return stats


def write_stats(directory, splits):
    """splits: {split: DatasetFeatureStatisticsList} -> a TFX-layout statistics artifact."""
    for split, stats in splits.items():
        tfmd.write_statistics(str(directory), split, stats)
    return str(directory)


N = 100
SPECIES = ["Adelie"] * 50 + ["Gentoo"] * 30 + ["Chinstrap"] * 20
ISLANDS = ["Biscoe"] * 50 + ["Dream"] * 35 + ["Torgersen"] * 15
BILL = [35.0 + 0.15 * i for i in range(N)]  # 35 .. 49.85
MASS = [3000 + 20 * i for i in range(N)]    # 3000 .. 4980


def penguin_features(**overrides):
    features = {
        "species": string("species", SPECIES),
        "island": string("island", ISLANDS),
        "bill_length_mm": numeric("bill_length_mm", BILL),
        "body_mass_g": numeric("body_mass_g", MASS, is_int=True),
    }
    features.update(overrides)
    return [f for f in features.values() if f is not None]


def penguin_stats(split, num_examples=N, **overrides):
    return dataset(split, num_examples, *penguin_features(**overrides))


SCHEMA_TEXT = """
feature { name: "species" type: BYTES domain: "species"
          presence { min_fraction: 1.0 min_count: 1 } shape { dim { size: 1 } } }
feature { name: "island" type: BYTES
          string_domain { value: "Biscoe" value: "Dream" value: "Torgersen" }
          presence { min_count: 1 } value_count { min: 1 max: 1 } }
feature { name: "bill_length_mm" type: FLOAT float_domain { min: 30 max: 60 }
          presence { min_fraction: 1.0 min_count: 1 } shape { dim { size: 1 } } }
feature { name: "body_mass_g" type: INT int_domain { min: 2500 max: 6500 }
          presence { min_fraction: 1.0 min_count: 1 } shape { dim { size: 1 } } }
string_domain { name: "species" value: "Adelie" value: "Chinstrap" value: "Gentoo" }
"""


def make_schema(extra="", base=SCHEMA_TEXT):
    return text_format.Parse(base + extra, schema_pb2.Schema())


def feature_of(schema, name):
    return next(f for f in schema.feature if f.name == name)


@pytest.fixture
def workspace(tmp_path):
    """Factory writing stats/schema; returns paths for executor.run."""
    counter = iter(range(100))

    class Workspace:
        root = tmp_path

        def stats(self, splits):
            return write_stats(tmp_path / f"stats-{next(counter)}", splits)

        def schema(self, schema):
            path = tmp_path / f"schema-{next(counter)}.pbtxt"
            path.write_text(text_format.MessageToString(schema))
            return str(path)

        def out(self):
            i = next(counter)
            return str(tmp_path / f"anomalies-{i}"), str(tmp_path / f"report-{i}.md")

    return Workspace()


def validate(ws, splits, schema=None, **kwargs):
    """Run the executor (fail_on_anomalies=False unless given); returns (metadata, out_dir, report_text)."""
    out, report_path = ws.out()
    kwargs.setdefault("fail_on_anomalies", False)
    meta = executor.run(ws.stats(splits), ws.schema(schema or make_schema()), out, report_path=report_path,
                        **kwargs)
    with open(report_path, encoding="utf-8") as handle:
        return meta, out, handle.read()


def reasons(out, split):
    """feature -> [(type name, description)] from the written SchemaDiff.pb."""
    anomalies = tfmd.read_anomalies(out, split)
    return {name: [(T.Name(r.type), r.description) for r in info.reason]
            for name, info in anomalies.anomaly_info.items()}


def only_reason(out, split, feature):
    found = reasons(out, split)
    assert list(found) == [feature], found
    assert len(found[feature]) == 1, found[feature]
    return found[feature][0]


# --------------------------------------------------------------------------- clean data and outputs


def test_clean_data_has_no_anomalies_and_writes_tfx_layout(workspace):
    schema = make_schema()
    meta, out, report_text = validate(workspace, {"train": penguin_stats("train"), "eval": penguin_stats("eval")},
                                      schema, fail_on_anomalies=True)
    assert meta == {"tfx_type": "ExampleAnomalies", "split_names": json.dumps(["eval", "train"]),
                    "anomaly_counts": {"eval": 0, "train": 0}, "anomalies_found": 0, "blessed": 1}
    assert layout.list_splits(out) == ["eval", "train"]
    for split in ("train", "eval"):
        path = os.path.join(out, f"Split-{split}", "SchemaDiff.pb")
        assert os.path.isfile(path)
        anomalies = anomalies_pb2.Anomalies()
        with open(path, "rb") as handle:
            anomalies.ParseFromString(handle.read())
        assert not anomalies.anomaly_info
        assert not anomalies.data_missing
        assert anomalies.baseline == schema
        assert anomalies.anomaly_name_format == anomalies_pb2.Anomalies.SERIALIZED_PATH
    assert "# ExampleValidator" in report_text
    assert report_text.count("No anomalies") >= 2
    # No temp leftovers next to the artifact.
    assert not [p for p in os.listdir(workspace.root) if p.startswith(".")]


def test_schema_can_be_a_schemagen_directory(workspace, tmp_path):
    schema_dir = tmp_path / "schema_artifact"
    schema_dir.mkdir()
    tfmd.write_schema(tfmd.schema_path(str(schema_dir)), make_schema())
    out, _ = workspace.out()
    meta = executor.run(workspace.stats({"train": penguin_stats("train")}), str(schema_dir), out)
    assert meta["anomalies_found"] == 0 and meta["blessed"] == 1


# --------------------------------------------------------------------------- individual checks


def test_missing_column(workspace):
    meta, out, report_text = validate(workspace, {"train": penguin_stats("train", bill_length_mm=None)})
    kind, description = only_reason(out, "train", "bill_length_mm")
    assert kind == "SCHEMA_MISSING_COLUMN"
    assert "'bill_length_mm'" in description and "FLOAT" in description and "'train'" in description
    assert meta["anomaly_counts"] == {"train": 1} and meta["blessed"] == 0
    assert "SCHEMA_MISSING_COLUMN" in report_text and "`bill_length_mm`" in report_text


def test_optional_feature_may_be_absent(workspace):
    schema = make_schema('feature { name: "comment" type: BYTES presence { min_count: 0 } }')
    meta, _, _ = validate(workspace, {"train": penguin_stats("train")}, schema)
    assert meta["anomalies_found"] == 0


def test_new_column(workspace):
    stats = dataset("train", N, *penguin_features(), string("comment", ["ok"] * N))
    _, out, _ = validate(workspace, {"train": stats})
    kind, description = only_reason(out, "train", "comment")
    assert kind == "SCHEMA_NEW_COLUMN"
    assert "'comment'" in description and "STRING" in description and "not in the schema" in description


def test_type_change_float_to_string(workspace):
    changed = string("bill_length_mm", [f"{v:.1f}mm" for v in BILL])
    _, out, _ = validate(workspace, {"train": penguin_stats("train", bill_length_mm=changed)})
    kind, description = only_reason(out, "train", "bill_length_mm")
    assert kind == "UNEXPECTED_DATA_TYPE"
    assert "Expected data of type FLOAT (from the schema) but got STRING" in description
    assert "'bill_length_mm'" in description


def test_unexpected_string_values_lists_examples_and_fraction(workspace):
    values = SPECIES[:96] + ["Emperor"] * 3 + ["King"]
    _, out, _ = validate(workspace, {"train": penguin_stats("train", species=string("species", values))})
    kind, description = only_reason(out, "train", "species")
    assert kind == "ENUM_TYPE_UNEXPECTED_STRING_VALUES"
    assert "'species'" in description
    assert "'Emperor' (3)" in description and "'King' (1)" in description
    assert description.index("'Emperor'") < description.index("'King'")  # most frequent first
    assert "4.0%" in description and "(4 of 100)" in description


def test_unexpected_string_values_example_list_is_capped(workspace):
    values = SPECIES[:93] + [f"odd{i}" for i in range(7)]
    _, out, _ = validate(workspace, {"train": penguin_stats("train", species=string("species", values))})
    _, description = only_reason(out, "train", "species")
    assert description.count("'odd") == validation.MAX_EXAMPLE_VALUES
    assert "and 2 more" in description and "7.0%" in description


@pytest.mark.parametrize("min_mass, expect_anomaly", [(0.9, False), (0.99, True)])
def test_min_domain_mass(workspace, min_mass, expect_anomaly):
    schema = make_schema()
    feature_of(schema, "species").distribution_constraints.min_domain_mass = min_mass
    values = SPECIES[:96] + ["Emperor"] * 4
    meta, out, _ = validate(workspace, {"train": penguin_stats("train", species=string("species", values))},
                            schema)
    assert meta["anomalies_found"] == (1 if expect_anomaly else 0)
    if expect_anomaly:
        kind, description = only_reason(out, "train", "species")
        assert kind == "ENUM_TYPE_UNEXPECTED_STRING_VALUES" and "min_domain_mass" in description


def test_low_fraction_present(workspace):
    schema = make_schema()
    island = feature_of(schema, "island")
    island.presence.min_fraction = 0.95
    values = ISLANDS[:90] + [None] * 10
    _, out, _ = validate(workspace, {"train": penguin_stats("train", island=string("island", values))}, schema)
    kind, description = only_reason(out, "train", "island")
    assert kind == "FEATURE_TYPE_LOW_FRACTION_PRESENT"
    assert "'island'" in description and "90.0%" in description and "(90 of 100)" in description
    assert "0.95" in description


def test_missing_values_in_fixed_shape_feature(workspace):
    values = BILL[:95] + [None] * 5
    _, out, _ = validate(workspace, {"train": penguin_stats("train", bill_length_mm=numeric("bill_length_mm", values))})
    found = reasons(out, "train")
    assert list(found) == ["bill_length_mm"]
    assert [k for k, _ in found["bill_length_mm"]] == ["FEATURE_TYPE_LOW_FRACTION_PRESENT", "INVALID_FEATURE_SHAPE"]
    info = tfmd.read_anomalies(out, "train").anomaly_info["bill_length_mm"]
    assert info.short_description == "Multiple errors" and info.severity == anomalies_pb2.AnomalyInfo.ERROR
    assert list(info.path.step) == ["bill_length_mm"]


def test_low_number_present(workspace):
    schema = make_schema()
    feature_of(schema, "island").presence.min_count = 20
    values = ISLANDS[:10] + [None] * 90
    _, out, _ = validate(workspace, {"train": penguin_stats("train", island=string("island", values))}, schema)
    kind, description = only_reason(out, "train", "island")
    assert kind == "FEATURE_TYPE_LOW_NUMBER_PRESENT"
    assert "'island'" in description and "10 examples" in description and "min_count 20" in description


def test_value_counts(workspace):
    too_many = numeric("bill_length_mm", BILL, values_per_example=(1, 3))
    too_few = string("island", ISLANDS)
    too_few.string_stats.common_stats.min_num_values = 0
    _, out, _ = validate(workspace, {"train": penguin_stats("train", bill_length_mm=too_many, island=too_few)})
    found = reasons(out, "train")
    assert [k for k, _ in found["bill_length_mm"]] == ["FEATURE_TYPE_HIGH_NUMBER_VALUES"]
    assert "maximum 3 values" in found["bill_length_mm"][0][1]
    assert [k for k, _ in found["island"]] == ["FEATURE_TYPE_LOW_NUMBER_VALUES"]


@pytest.mark.parametrize("values, expected, text", [
    (MASS[:-1] + [1500], "INT_TYPE_SMALL_INT", "as small as 1500, below the schema's int_domain min 2500"),
    (MASS[:-1] + [8000], "INT_TYPE_BIG_INT", "as large as 8000, above the schema's int_domain max 6500"),
])
def test_int_out_of_range(workspace, values, expected, text):
    stats = penguin_stats("train", body_mass_g=numeric("body_mass_g", values, is_int=True))
    _, out, _ = validate(workspace, {"train": stats})
    kind, description = only_reason(out, "train", "body_mass_g")
    assert kind == expected and "'body_mass_g'" in description and text in description


@pytest.mark.parametrize("values, expected, text", [
    (BILL[:-1] + [25.5], "FLOAT_TYPE_SMALL_FLOAT", "as small as 25.5, below the schema's float_domain min 30"),
    (BILL[:-1] + [65.25], "FLOAT_TYPE_BIG_FLOAT", "as large as 65.25, above the schema's float_domain max 60"),
])
def test_float_out_of_range(workspace, values, expected, text):
    stats = penguin_stats("train", bill_length_mm=numeric("bill_length_mm", values))
    _, out, _ = validate(workspace, {"train": stats})
    kind, description = only_reason(out, "train", "bill_length_mm")
    assert kind == expected and "'bill_length_mm'" in description and text in description


def test_nan_disallowed(workspace):
    stats = {"train": penguin_stats("train", bill_length_mm=numeric("bill_length_mm", BILL[:-2] + [math.nan] * 2))}
    meta, _, _ = validate(workspace, stats)
    assert meta["anomalies_found"] == 0  # NaN allowed unless disallow_nan
    schema = make_schema()
    feature_of(schema, "bill_length_mm").float_domain.disallow_nan = True
    _, out, _ = validate(workspace, stats, schema)
    kind, description = only_reason(out, "train", "bill_length_mm")
    assert kind == "FLOAT_TYPE_HAS_NAN" and "'bill_length_mm'" in description and "2 NaN values" in description


def test_inf_disallowed(workspace):
    feature = numeric("bill_length_mm", BILL)
    feature.num_stats.max = math.inf  # what StatisticsGen reports when a value is infinite
    stats = {"train": penguin_stats("train", bill_length_mm=feature)}
    schema = make_schema()
    feature_of(schema, "bill_length_mm").float_domain.disallow_inf = True
    _, out, _ = validate(workspace, stats, schema)
    found = reasons(out, "train")["bill_length_mm"]
    assert any(kind == "FLOAT_TYPE_HAS_INF" and "infinite values" in text for kind, text in found)


def test_empty_split_is_data_missing(workspace):
    meta, out, _ = validate(workspace, {"train": penguin_stats("train"), "eval": dataset("eval", 0)})
    anomalies = tfmd.read_anomalies(out, "eval")
    assert anomalies.data_missing
    assert [T.Name(r.type) for r in anomalies.dataset_anomaly_info.reason] == ["NO_DATA_IN_SPAN"]
    assert meta["anomaly_counts"] == {"eval": 1, "train": 0}


def test_environments_serving_split_may_lack_label(workspace):
    schema = make_schema('default_environment: "TRAINING" default_environment: "SERVING"')
    feature_of(schema, "species").not_in_environment.append("SERVING")
    meta, out, _ = validate(workspace, {"train": penguin_stats("train"),
                                        "serving": penguin_stats("serving", species=None)}, schema)
    assert meta["anomalies_found"] == 0
    # ... but a training split must have it.
    meta, out, _ = validate(workspace, {"train": penguin_stats("train", species=None)}, schema)
    assert only_reason(out, "train", "species")[0] == "SCHEMA_MISSING_COLUMN"


def test_deprecated_feature_is_not_checked(workspace):
    schema = make_schema()
    feature_of(schema, "bill_length_mm").lifecycle_stage = schema_pb2.DEPRECATED
    meta, _, _ = validate(workspace, {"train": penguin_stats("train", bill_length_mm=string("bill_length_mm", ["x"] * N))},
                          schema)
    assert meta["anomalies_found"] == 0


# --------------------------------------------------------------------------- drift and skew


def shifted_species():
    return string("species", ["Adelie"] * 30 + ["Gentoo"] * 50 + ["Chinstrap"] * 20)  # L-inf vs SPECIES = 0.2


def drift_measurements(out, split):
    anomalies = tfmd.read_anomalies(out, split)
    return {".".join(info.path.step): [(Measure.Type.Name(m.type), m.value,
                                        m.threshold if m.HasField("threshold") else None)
                                       for m in info.drift_measurements]
            for info in anomalies.drift_skew_info}


@pytest.mark.parametrize("threshold, expect_anomaly", [(0.1, True), (0.3, False)])
def test_drift_schema_threshold(workspace, threshold, expect_anomaly):
    schema = make_schema()
    feature_of(schema, "species").drift_comparator.infinity_norm.threshold = threshold
    previous = workspace.stats({"train": penguin_stats("train")})
    meta, out, report_text = validate(workspace, {"train": penguin_stats("train", species=shifted_species())},
                                      schema, comparison_statistics_dir=previous)
    measured = drift_measurements(out, "train")
    (kind, value, recorded_threshold), = measured["species"]
    assert kind == "L_INFTY" and value == pytest.approx(0.2) and recorded_threshold == pytest.approx(threshold)
    # Numeric features get a JSD measurement (no threshold set): identical data -> 0.
    (kind, value, recorded_threshold), = measured["bill_length_mm"]
    assert kind == "JENSEN_SHANNON_DIVERGENCE" and value == pytest.approx(0.0) and recorded_threshold is None
    assert meta["anomalies_found"] == (1 if expect_anomaly else 0)
    if expect_anomaly:
        kind, description = only_reason(out, "train", "species")
        assert kind == "COMPARATOR_L_INFTY_HIGH"
        assert "'species'" in description and "0.2" in description and "0.1" in description
        assert "'Gentoo'" in description or "'Adelie'" in description
        assert "ANOMALY" in report_text
    assert "### Drift" in report_text and "L-infinity" in report_text and "no threshold" in report_text


def test_drift_parameter_thresholds_and_jsd(workspace):
    previous = workspace.stats({"train": penguin_stats("train"), "eval": penguin_stats("eval")})
    moved = numeric("bill_length_mm", [v + 7.5 for v in BILL])  # half the range shifted out
    current = {"train": penguin_stats("train", bill_length_mm=moved), "eval": penguin_stats("eval")}
    meta, out, _ = validate(workspace, current, comparison_statistics_dir=previous,
                            linf_threshold=0.5, jsd_threshold=0.1)
    assert meta["anomaly_counts"] == {"eval": 0, "train": 1}
    kind, description = only_reason(out, "train", "bill_length_mm")
    assert kind == "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" and "'bill_length_mm'" in description
    (_, value, threshold), = drift_measurements(out, "train")["bill_length_mm"]
    assert 0.1 < value <= 1.0 and threshold == pytest.approx(0.1)
    (_, value, threshold), = drift_measurements(out, "train")["species"]
    assert value == pytest.approx(0.0) and threshold == pytest.approx(0.5)
    # The schema's comparator wins over the parameter.
    schema = make_schema()
    feature_of(schema, "bill_length_mm").drift_comparator.jensen_shannon_divergence.threshold = 0.9
    meta, out, _ = validate(workspace, current, schema, comparison_statistics_dir=previous, jsd_threshold=0.1)
    assert meta["anomalies_found"] == 0


def test_drift_without_matching_split_is_noted(workspace):
    previous = workspace.stats({"train": penguin_stats("train")})
    meta, _, report_text = validate(workspace, {"train": penguin_stats("train"), "eval": penguin_stats("eval")},
                                    comparison_statistics_dir=previous, linf_threshold=0.0)
    assert meta["anomalies_found"] == 0
    assert "No split 'eval' in the comparison statistics" in report_text


def test_skew_ignores_label_not_in_serving(workspace):
    schema = make_schema('default_environment: "TRAINING" default_environment: "SERVING"')
    species = feature_of(schema, "species")
    species.not_in_environment.append("SERVING")
    species.skew_comparator.infinity_norm.threshold = 0.01
    feature_of(schema, "island").skew_comparator.infinity_norm.threshold = 0.1
    serving_islands = string("island", ["Biscoe"] * 20 + ["Dream"] * 35 + ["Torgersen"] * 45)
    serving = workspace.stats({"serving": penguin_stats("serving", species=shifted_species(),
                                                        island=serving_islands)})
    meta, out, report_text = validate(workspace, {"train": penguin_stats("train"), "eval": penguin_stats("eval")},
                                      schema, comparison_statistics_dir=serving, comparison_mode="skew")
    assert meta["anomaly_counts"] == {"eval": 0, "train": 1}
    kind, description = only_reason(out, "train", "island")
    assert kind == "COMPARATOR_L_INFTY_HIGH" and "training and serving" in description
    anomalies = tfmd.read_anomalies(out, "train")
    skew = {".".join(i.path.step): i for i in anomalies.drift_skew_info}
    assert "species" not in skew
    (measurement,) = skew["island"].skew_measurements
    assert measurement.type == Measure.L_INFTY and measurement.value == pytest.approx(0.3)
    assert measurement.threshold == pytest.approx(0.1) and not skew["island"].drift_measurements
    assert not tfmd.read_anomalies(out, "eval").drift_skew_info
    assert "### Skew" in report_text


def test_skew_needs_a_train_split(workspace):
    serving = workspace.stats({"serving": penguin_stats("serving")})
    out, _ = workspace.out()
    with pytest.raises(InputDataError, match="'train'"):
        executor.run(workspace.stats({"training": penguin_stats("training")}), workspace.schema(make_schema()),
                     out, comparison_statistics_dir=serving, comparison_mode="skew")
    assert not os.path.exists(out)


# --------------------------------------------------------------------------- failing and errors


def test_fail_on_anomalies_raises_after_writing_everything(workspace):
    stats_dir = workspace.stats({
        "train": dataset("train", N, *penguin_features(), string("comment", ["x"] * N)),
        "eval": penguin_stats("eval", bill_length_mm=string("bill_length_mm", ["?"] * N)),
    })
    out, report_path = workspace.out()
    with pytest.raises(AnomaliesFoundError) as raised:
        executor.run(stats_dir, workspace.schema(make_schema()), out, report_path=report_path)
    message = str(raised.value)
    lines = message.splitlines()
    assert any(line.startswith("train/comment: SCHEMA_NEW_COLUMN: ") for line in lines)
    assert any(line.startswith("eval/bill_length_mm: UNEXPECTED_DATA_TYPE: Expected data of type FLOAT")
               for line in lines)
    assert "2 anomalies" in message
    assert "fail_on_anomalies=False" in message and "schema" in message and "fix the data" in message
    # Artifact and report are complete.
    assert layout.list_splits(out) == ["eval", "train"]
    assert list(reasons(out, "train")) == ["comment"]
    assert list(reasons(out, "eval")) == ["bill_length_mm"]
    with open(report_path, encoding="utf-8") as handle:
        report_text = handle.read()
    assert "SCHEMA_NEW_COLUMN" in report_text and "UNEXPECTED_DATA_TYPE" in report_text


def test_fail_on_anomalies_false_returns_counts(workspace):
    meta, out, _ = validate(workspace, {
        "train": penguin_stats("train", bill_length_mm=None, species=string("species", SPECIES[:99] + ["Emperor"])),
        "eval": penguin_stats("eval"),
    }, fail_on_anomalies=False)
    assert meta["anomaly_counts"] == {"eval": 0, "train": 2}
    assert meta["anomalies_found"] == 2 and meta["blessed"] == 0
    assert json.loads(meta["split_names"]) == ["eval", "train"]


@pytest.mark.parametrize("kwargs, match", [
    ({"comparison_mode": "compare"}, "comparison_mode"),
    ({"linf_threshold": -0.5}, "linf_threshold"),
    ({"jsd_threshold": float("nan")}, "jsd_threshold"),
])
def test_bad_parameters(workspace, kwargs, match):
    out, _ = workspace.out()
    with pytest.raises(ConfigError, match=match):
        executor.run(workspace.stats({"train": penguin_stats("train")}), workspace.schema(make_schema()), out,
                     **kwargs)
    assert not os.path.exists(out)


def test_failures_before_writing_leave_no_output(workspace, tmp_path):
    out, report_path = workspace.out()
    with pytest.raises(InputDataError, match="no Split-"):
        executor.run(str(tmp_path / "nowhere"), workspace.schema(make_schema()), out, report_path=report_path)
    with pytest.raises(ConfigError, match="schema file not found"):
        executor.run(workspace.stats({"train": penguin_stats("train")}), str(tmp_path / "none.pbtxt"), out)
    dangling = make_schema('feature { name: "sex" type: BYTES domain: "sexes" }')
    with pytest.raises(ConfigError, match="feature 'sex' refers to domain 'sexes'"):
        executor.run(workspace.stats({"train": penguin_stats("train")}), workspace.schema(dangling), out)
    assert not os.path.exists(out) and not os.path.exists(report_path)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


# --------------------------------------------------------------------------- distance functions


def test_linf_distance():
    assert drift.linf_distance({"a": 5, "b": 5}, {"a": 50, "b": 50}) == (0.0, "a")
    assert drift.linf_distance({"a": 3}, {"b": 7}) == (1.0, "a")
    # 0.5/0.3/0.2 vs 0.3/0.5/0.2: largest difference 0.2 (first such value in sorted order).
    value, which = drift.linf_distance({"A": 50, "G": 30, "C": 20}, {"A": 30, "G": 50, "C": 20})
    assert value == pytest.approx(0.2) and which == "A"
    assert drift.linf_distance({}, {"a": 1}) is None
    assert drift.linf_distance({"a": 0}, {"a": 1}) is None


def test_jensen_shannon_divergence_discrete():
    assert drift.jensen_shannon_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert drift.jensen_shannon_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    # P = (1/2, 1/2, 0), Q = (0, 1/2, 1/2), M = (1/4, 1/2, 1/4): KL(P||M) = KL(Q||M) = 1/2.
    assert drift.jensen_shannon_divergence([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5)
    assert drift.jensen_shannon_divergence({"x": 1, "y": 1}, {"y": 1, "z": 1}) == pytest.approx(0.5)
    assert drift.jensen_shannon_divergence([0, 0], [1, 1]) is None
    with pytest.raises(ValueError):
        drift.jensen_shannon_divergence([1], [1, 2])


def test_histogram_jsd_rebins_with_uniform_density():
    # Identical, and the same mass on different but compatible boundaries.
    assert drift.histogram_jensen_shannon_divergence([(0, 1, 3), (1, 2, 5)], [(0, 1, 3), (1, 2, 5)]) == 0.0
    assert drift.histogram_jensen_shannon_divergence([(0, 2, 4)], [(0, 1, 2), (1, 2, 2)]) == pytest.approx(0.0)
    # Disjoint supports.
    assert drift.histogram_jensen_shannon_divergence([(0, 1, 10)], [(2, 3, 10)]) == pytest.approx(1.0)
    # [0,2]:4 rebinned to (1/2, 1/2) vs [0,1]:4 = (1, 0); M = (3/4, 1/4).
    expected = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * math.log2(1 / 0.75)
    assert drift.histogram_jensen_shannon_divergence([(0, 2, 4)], [(0, 1, 4)]) == pytest.approx(expected)
    assert expected == pytest.approx(0.311278, abs=1e-6)
    # Partial overlap: [0,4]:8 vs [2,6]:8 -> cells [0,2],[2,4],[4,6] = (1/2,1/2,0) vs (0,1/2,1/2) -> 0.5.
    assert drift.histogram_jensen_shannon_divergence([(0, 4, 8)], [(2, 6, 8)]) == pytest.approx(0.5)
    # Point masses and NaN get cells of their own.
    assert drift.histogram_jensen_shannon_divergence([(5, 5, 10)], [(5, 5, 3)]) == pytest.approx(0.0)
    assert drift.histogram_jensen_shannon_divergence([(5, 5, 10)], [(4, 6, 10)]) == pytest.approx(1.0)
    assert drift.histogram_jensen_shannon_divergence([(0, 1, 1)], [(0, 1, 1)], nan_a=1, nan_b=1) == pytest.approx(0.0)
    assert drift.histogram_jensen_shannon_divergence([], [], nan_a=2, nan_b=0) is None
    # Buckets with an infinite bound cannot be spread uniformly: they keep a cell per side of the axis.
    with_inf = [(-math.inf, 0, 2), (0, 1, 6), (1, math.inf, 2)]
    assert drift.histogram_jensen_shannon_divergence(with_inf, with_inf) == pytest.approx(0.0)
    assert drift.histogram_jensen_shannon_divergence([(-math.inf, 0, 1)], [(1, math.inf, 1)]) == pytest.approx(1.0)
    aligned = drift.align_histograms([(0, 2, 4)], [(1, 3, 2)])
    assert aligned == ([2.0, 2.0, 0.0], [0.0, 1.0, 1.0])
