"""One infinite cell in a CSV: caught by ExampleValidator in one line naming the column and the split; a Trainer
whose loss or metrics come out NaN fails and says so (never a SUCCESS with NaN metrics, never a traceback)."""

import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from kubetfx.components.common import tfmd
from kubetfx.components.data_validation import statistics, validation
from kubetfx.pipelines.cli import main as cli
from kubetfx.pipelines.local import runner as local_runner

from helpers.messages import user_error


@pytest.fixture
def penguins_with_inf(tmp_path, penguins_table):
    values = penguins_table.column("bill_length_mm").to_pylist()
    values[5] = float("inf")
    table = penguins_table.set_column(penguins_table.schema.get_field_index("bill_length_mm"), "bill_length_mm",
                                      pa.array(values, pa.float64()))
    path = tmp_path / "penguins.csv"
    pacsv.write_csv(table, str(path))
    assert "inf" in path.read_text()
    return str(path)


def _float_schema(disallow_inf=None) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    feature = schema.feature.add(name="x", type=schema_pb2.FLOAT)
    if disallow_inf is not None:
        feature.float_domain.disallow_inf = disallow_inf
    return schema


@pytest.mark.parametrize("disallow_inf, flagged", [(None, True), (True, True), (False, False)])
def test_infinite_values_are_an_anomaly_unless_the_schema_allows_them(disallow_inf, flagged):
    table = pa.table({"x": pa.array([[1.0], [float("-inf")], [2.0]], pa.list_(pa.float32()))})
    dataset = statistics.generate_statistics(table, "train").datasets[0]
    schema = _float_schema(disallow_inf)
    result = validation.validate_split(validation.SchemaIndex(schema, "schema.pbtxt"), "train", dataset)
    types = [f.type_name for f in result.findings]
    assert types == (["FLOAT_TYPE_HAS_INF"] if flagged else []), types


def test_an_infinite_cell_stops_the_run_at_example_validator_in_one_line(tmp_path, capsys, penguins_with_inf):
    code = cli.main(["run", "--data", penguins_with_inf, "--label", "species", "--root", str(tmp_path / "root")])
    captured = capsys.readouterr()
    message = user_error(code, captured.err, local_runner.EXIT_FAILED)
    first = captured.err.splitlines()[0]
    assert first.startswith("kubetfx: example-validator failed: "), captured.err
    assert "bill_length_mm" in first and "FLOAT_TYPE_HAS_INF" in first, first
    assert any(f"{split}/bill_length_mm" in first for split in ("train", "eval")), first
    assert "infinite" in message and "trainer" not in captured.out


def test_a_trainer_whose_loss_is_nan_fails_and_says_so(tmp_path, capsys, penguins_with_inf):
    """Told to go on past the anomaly, the infinite value reaches the Trainer: its loss is NaN, and it fails."""
    root = tmp_path / "root"
    code = cli.main(["run", "--data", penguins_with_inf, "--label", "species", "--root", str(root),
                     "--set", "fail_on_anomalies=false"])
    captured = capsys.readouterr()
    user_error(code, captured.err, local_runner.EXIT_FAILED)
    first = captured.err.splitlines()[0]
    assert first.startswith("kubetfx: trainer failed: ") and "NaN" in first, captured.err
    assert "Task 'trainer' finished with status FAILURE" in captured.out
    assert not os.path.exists(root / "model-repository" / "penguins")
    runs = sorted(os.listdir(root / "pipeline-root"))
    assert not os.path.exists(root / "pipeline-root" / runs[-1] / "trainer" / "model")  # nothing half-written


def test_the_inferred_schema_stays_silent_on_infinity_and_the_curated_one_can_allow_it(tmp_path):
    """SchemaGen writes no disallow_inf (like TFDV); ExampleValidator reads that as 'not allowed'."""
    from kubetfx.components.schema_gen import executor as schema_gen

    table = pa.table({"x": pa.array([[1.0], [2.0]], pa.list_(pa.float32()))})
    stats_dir = tmp_path / "statistics"
    tfmd.write_statistics(str(stats_dir), "train", statistics.generate_statistics(table, "train"))
    schema_gen.run(str(stats_dir), str(tmp_path / "schema"))
    schema = tfmd.read_schema(str(tmp_path / "schema"))
    assert not schema.feature[0].float_domain.HasField("disallow_inf")
