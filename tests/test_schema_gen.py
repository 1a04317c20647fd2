"""SchemaGen executor: inference from real penguin statistics, and schema import."""

import os

import pyarrow as pa
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from kubetfx.components.common import tfmd
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.schema_gen import executor
from kubetfx.components.statistics_gen import executor as statistics_gen

NUMERIC_TYPES = {"bill_length_mm": schema_pb2.FLOAT, "bill_depth_mm": schema_pb2.FLOAT,
                 "flipper_length_mm": schema_pb2.INT, "body_mass_g": schema_pb2.INT, "year": schema_pb2.INT}
STRING_FEATURES = {"species": ["Adelie", "Chinstrap", "Gentoo"], "island": ["Biscoe", "Dream", "Torgersen"],
                   "sex": ["female", "male"]}


@pytest.fixture
def make_statistics(make_examples_artifact, tmp_path):
    counter = iter(range(1000))

    def _make(split_tables: dict[str, pa.Table]) -> str:
        output_dir = str(tmp_path / f"statistics-{next(counter)}")
        statistics_gen.run(make_examples_artifact(split_tables), output_dir)
        return output_dir

    return _make


@pytest.fixture
def penguin_statistics(make_statistics, penguins_table) -> str:
    return make_statistics({"train": penguins_table, "eval": penguins_table.slice(0, 100)})


def _features(schema: schema_pb2.Schema) -> dict:
    return {f.name: f for f in schema.feature}


def test_inferred_penguin_schema(penguin_statistics, tmp_path):
    output_dir = str(tmp_path / "schema")
    report_path = str(tmp_path / "schema.md")
    metadata = executor.run(penguin_statistics, output_dir, report_path=report_path, label_column="species")
    assert metadata == {"tfx_type": "Schema", "features": 8, "source": "inferred:eval,train"}
    assert os.listdir(output_dir) == ["schema.pbtxt"]
    schema = tfmd.read_schema(output_dir)
    features = _features(schema)
    assert sorted(features) == sorted(list(NUMERIC_TYPES) + list(STRING_FEATURES))

    for name, feature in features.items():
        # No value is missing in the complete rows: every feature is required, with shape [1].
        assert feature.presence.min_count == 1 and feature.presence.min_fraction == 1.0, name
        assert [d.size for d in feature.shape.dim] == [1], name
        assert not feature.HasField("value_count"), name
    for name, kind in NUMERIC_TYPES.items():
        assert features[name].type == kind, name
        # All penguin measurements are non-negative: min 0 and nothing else.
        domain = features[name].int_domain if kind == schema_pb2.INT else features[name].float_domain
        assert features[name].WhichOneof("domain_info") == ("int_domain" if kind == schema_pb2.INT else "float_domain")
        assert domain.HasField("min") and domain.min == 0 and not domain.HasField("max"), name

    string_domains = {d.name: list(d.value) for d in schema.string_domain}
    assert string_domains == STRING_FEATURES
    for name in STRING_FEATURES:
        assert features[name].type == schema_pb2.BYTES
        assert features[name].domain == name

    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    assert list(features["species"].not_in_environment) == ["SERVING"]
    assert all(not f.not_in_environment for n, f in features.items() if n != "species")

    text = open(report_path, encoding="utf-8").read()
    assert "split(s) `eval`, `train` (433 examples together)" in text
    for name in features:
        assert f"`{name}`" in text
    assert "Biscoe, Dream, Torgersen" in text and "not in SERVING" in text


def test_missing_values_and_options(make_statistics, penguins_raw_table, tmp_path):
    statistics_dir = make_statistics({"train": penguins_raw_table})
    executor.run(statistics_dir, str(tmp_path / "a"))
    features = _features(tfmd.read_schema(str(tmp_path / "a")))
    assert not tfmd.read_schema(str(tmp_path / "a")).default_environment  # no label_column
    # sex (11 missing) and the measurements (2 missing) are optional: no min_fraction, value_count instead of shape.
    for name in ["sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]:
        feature = features[name]
        assert feature.presence.min_count == 1 and not feature.presence.HasField("min_fraction"), name
        assert not feature.HasField("shape"), name
        assert (feature.value_count.min, feature.value_count.max) == (1, 1), name
    for name in ["species", "island", "year"]:
        assert features[name].presence.min_fraction == 1.0
        assert features[name].HasField("shape")

    # Without shape inference every feature gets a value_count; a small domain limit drops island's domain.
    executor.run(statistics_dir, str(tmp_path / "b"), infer_feature_shape=False, max_string_domain_size=2)
    schema = tfmd.read_schema(str(tmp_path / "b"))
    assert all(f.HasField("value_count") and not f.HasField("shape") for f in schema.feature)
    assert sorted(d.name for d in schema.string_domain) == ["sex"]
    features = _features(schema)
    assert not features["island"].HasField("domain") and not features["species"].HasField("domain")
    assert features["sex"].domain == "sex"


def test_negative_values_get_no_domain(make_statistics, tmp_path):
    table = pa.table({"temperature": pa.array([-3.5, 0.0, 12.25, 20.0]), "delta": pa.array([-2, 5, 7, 1]),
                      "count": pa.array([0, 5, 7, 1]), "weight": pa.array([0.0, 0.5, 3.0, 2.0])})
    statistics_dir = make_statistics({"eval": table})
    executor.run(statistics_dir, str(tmp_path / "schema"))
    features = _features(tfmd.read_schema(str(tmp_path / "schema")))
    assert features["temperature"].WhichOneof("domain_info") is None
    assert features["delta"].WhichOneof("domain_info") is None
    assert features["count"].WhichOneof("domain_info") == "int_domain" and features["count"].int_domain.min == 0
    assert features["weight"].WhichOneof("domain_info") == "float_domain"


def test_presence_and_shape_come_from_every_split(make_statistics, penguins_table, tmp_path):
    """A few missing values make a feature optional wherever the split hash put them."""
    complete = penguins_table.slice(0, 200)
    with_gaps = penguins_table.slice(200, 100)
    gaps = pa.array([None if i % 10 == 0 else v for i, v in enumerate(with_gaps["body_mass_g"].to_pylist())],
                    pa.int64())
    with_gaps = with_gaps.set_column(with_gaps.schema.get_field_index("body_mass_g"), "body_mass_g", gaps)
    schemas = {}
    for case, splits in {"gaps in eval": {"train": complete, "eval": with_gaps},
                         "gaps in train": {"train": with_gaps, "eval": complete}}.items():
        executor.run(make_statistics(splits), str(tmp_path / case), label_column="species")
        schemas[case] = tfmd.read_schema(str(tmp_path / case))
    assert schemas["gaps in eval"] == schemas["gaps in train"]
    body_mass = _features(schemas["gaps in eval"])["body_mass_g"]
    assert not body_mass.presence.HasField("min_fraction") and body_mass.presence.min_count == 1
    assert not body_mass.HasField("shape") and (body_mass.value_count.min, body_mass.value_count.max) == (1, 1)
    assert _features(schemas["gaps in eval"])["bill_length_mm"].presence.min_fraction == 1.0

    # TFX's exclude_splits leaves a split out: from train alone body_mass_g is complete again.
    executor.run(make_statistics({"train": complete, "eval": with_gaps}), str(tmp_path / "train only"),
                 exclude_splits="eval")
    assert _features(tfmd.read_schema(str(tmp_path / "train only")))["body_mass_g"].presence.min_fraction == 1.0


def test_domains_and_types_cover_every_split(make_statistics, tmp_path):
    train = pa.table({"colour": ["red", "blue", "red"], "size": pa.array([1, 2, 3]), "only_eval": [None, None, None]})
    evaluation = pa.table({"colour": ["green", "red", "red"], "size": pa.array([0.5, 2.0, -1.0]),
                           "only_eval": ["x", "y", "x"]})
    executor.run(make_statistics({"train": train, "eval": evaluation}), str(tmp_path / "schema"))
    schema = tfmd.read_schema(str(tmp_path / "schema"))
    features = _features(schema)
    assert {d.name: list(d.value) for d in schema.string_domain} == {"colour": ["blue", "green", "red"],
                                                                    "only_eval": ["x", "y"]}
    assert features["size"].type == schema_pb2.FLOAT  # INT in train, FLOAT in eval
    assert features["size"].WhichOneof("domain_info") is None  # eval has -1.0
    # Absent from every train example: present in 3 of 6, so optional.
    assert not features["only_eval"].presence.HasField("min_fraction") and not features["only_eval"].HasField("shape")


def test_infinite_values_are_named_but_not_rejected(make_statistics, tmp_path):
    table = pa.table({"ratio": pa.array([1.5, 2.5, float("inf")]), "count": pa.array([1, 2, 3])})
    report_path = str(tmp_path / "schema.md")
    executor.run(make_statistics({"train": table}), str(tmp_path / "schema"), report_path=report_path)
    ratio = _features(tfmd.read_schema(str(tmp_path / "schema")))["ratio"]
    assert ratio.WhichOneof("domain_info") == "float_domain" and not ratio.float_domain.disallow_inf  # as TFDV
    text = open(report_path, encoding="utf-8").read()
    assert "`ratio` has infinite values (min 1.5, max inf)" in text and "disallow_inf: false" in text
    assert "`count` has infinite" not in text


def test_imported_schema_round_trip(penguin_statistics, tmp_path):
    inferred_dir = str(tmp_path / "inferred")
    executor.run(penguin_statistics, inferred_dir, label_column="species")
    curated = tmp_path / "curated" / "schema.pbtxt"
    curated.parent.mkdir()
    inferred = tfmd.read_schema(inferred_dir)
    inferred.feature[0].presence.min_fraction = 0.5  # a curated change
    curated.write_text("# Curated by hand.\n" + text_format.MessageToString(inferred), encoding="utf-8")

    output_dir = str(tmp_path / "imported")
    report_path = str(tmp_path / "imported.md")
    metadata = executor.run(None, output_dir, report_path=report_path, schema_file=str(curated))
    assert metadata == {"tfx_type": "Schema", "features": 8, "source": f"imported:{curated}"}
    assert tfmd.read_schema(output_dir) == inferred
    # Copied verbatim, comments included.
    assert open(tfmd.schema_path(output_dir), encoding="utf-8").read() == curated.read_text(encoding="utf-8")
    assert str(curated) in open(report_path, encoding="utf-8").read()

    with pytest.raises(ConfigError, match="'weight'"):
        executor.run(None, str(tmp_path / "labelled"), schema_file=str(curated), label_column="weight")
    assert not (tmp_path / "labelled").exists()

    # A SchemaGen artifact directory works as schema_file too, and statistics_dir may be "".
    executor.run("", str(tmp_path / "again"), schema_file=inferred_dir)
    assert tfmd.read_schema(str(tmp_path / "again")) == tfmd.read_schema(inferred_dir)


def test_bad_schema_file(tmp_path):
    bad = tmp_path / "bad.pbtxt"
    bad.write_text('feature {\n  name: "a"\n  typo: INT\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        executor.run(None, str(tmp_path / "out"), schema_file=str(bad))
    assert str(bad) in str(error.value) and "3:" in str(error.value) and "typo" in str(error.value)
    assert not (tmp_path / "out").exists()

    missing = str(tmp_path / "missing.pbtxt")
    with pytest.raises(ConfigError, match="missing.pbtxt"):
        executor.run(None, str(tmp_path / "out"), schema_file=missing)
    assert not (tmp_path / "out").exists()


def test_label_column_missing(penguin_statistics, tmp_path):
    with pytest.raises(ConfigError) as error:
        executor.run(penguin_statistics, str(tmp_path / "out"), report_path=str(tmp_path / "r.md"),
                     label_column="label")
    message = str(error.value)
    assert "'label'" in message and "species" in message and "body_mass_g" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.md").exists()


def test_missing_inputs(penguin_statistics, tmp_path):
    with pytest.raises(ConfigError, match=r"exclude_splits names \['test'\], not splits of .*splits: eval, train"):
        executor.run(penguin_statistics, str(tmp_path / "out"), exclude_splits="test")
    with pytest.raises(ConfigError, match="leaves no split"):
        executor.run(penguin_statistics, str(tmp_path / "out"), exclude_splits=["train", "eval"])
    with pytest.raises(ConfigError, match="schema_file"):
        executor.run(None, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
