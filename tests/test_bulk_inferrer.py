"""The BulkInferrer and `kubetfx predict`: the predictor's own input path over files, TFX's PredictionLogs,
the table of inputs and predictions, and rows it must not score."""

import csv
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from kubetfx.components.bulk_inferrer import executor, prediction_logs
from kubetfx.components.common import examples, layout, tfrecord
from kubetfx.components.common.blessing import write_blessing
from kubetfx.pipelines.cli import main as cli


@pytest.fixture(scope="module")
def repository(tmp_path_factory, penguin_model, penguin_pipeline_artifacts) -> str:
    from helpers.predictor import push_model

    from kubetfx.components.common import tfmd

    repository = str(tmp_path_factory.mktemp("bulk-repository"))
    push_model(penguin_model["model"], repository, "penguin",
               schema=tfmd.schema_path(penguin_pipeline_artifacts["schema"]))
    return repository


@pytest.fixture(scope="module")
def eval_table(penguin_pipeline_artifacts) -> pa.Table:
    """The eval split as the CSV a user would have (one value per cell, the label included)."""
    batch = examples.read_split(penguin_pipeline_artifacts["examples"], "eval")
    columns = {}
    for name in batch.schema.names:
        values = batch.column(name).to_pylist()
        columns[name] = [v[0].decode() if v and isinstance(v[0], bytes) else (v[0] if v else None) for v in values]
    return pa.table(columns)


def _servable_outputs(model_dir: str, table: pa.Table) -> dict:
    from kubetfx.components.predictor import table_check

    servable = executor.load_model(model_dir)
    columns, good, _ = table_check.check(servable.rules, pa.RecordBatch.from_pydict(table.to_pydict()))
    assert good.all()
    return servable.run(columns)


def test_a_split_gives_prediction_logs_and_a_table_that_match_the_model(tmp_path, penguin_model,
                                                                        penguin_pipeline_artifacts, eval_table):
    blessing = str(tmp_path / "blessing")
    write_blessing(blessing, True, ["test"])
    result = executor.run(penguin_model["model"], penguin_pipeline_artifacts["examples"], str(tmp_path / "result"),
                          split="eval", model_blessing_dir=blessing, model_name="penguin")
    assert result["rows"] == result["scored"] == eval_table.num_rows and result["rejected"] == 0
    expected = _servable_outputs(penguin_model["model"], eval_table)
    # TFX's InferenceResult: gzipped TFRecords of PredictionLog protos, read with TensorFlow Serving's own classes.
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    records = tfrecord.read_file(str(tmp_path / "result" / layout.prediction_logs_file_name(0, 1)))
    assert len(records) == eval_table.num_rows
    logs = [prediction_log_pb2.PredictionLog.FromString(record) for record in records]
    first = logs[0].predict_log
    assert first.request.model_spec.name == "penguin" and first.request.model_spec.signature_name == "serving_raw"
    assert first.request.inputs["island"].string_val == [eval_table.column("island")[0].as_py().encode()]
    assert first.request.inputs["body_mass_g"].dtype == types_pb2.DT_INT64
    probabilities = np.array([list(log.predict_log.response.outputs["probabilities"].float_val) for log in logs])
    np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=1e-6)
    assert [log.predict_log.response.outputs["class_ids"].int64_val[0] for log in logs] == \
        expected["class_ids"].reshape(-1).tolist()
    assert [d.size for d in first.response.outputs["probabilities"].tensor_shape.dim] == [1, len(
        expected["probabilities"][0])]
    # The table: every input column, then the predictions.
    table = pq.read_table(str(tmp_path / "result" / "predictions.parquet"))
    assert table.column_names[:len(eval_table.column_names)] == eval_table.column_names
    info = json.load(open(os.path.join(penguin_model["model"], layout.MODEL_INFO_FILE)))
    names = info["class_names"]
    assert table.column("predicted_class").to_pylist() == [names[i] for i in expected["class_ids"].reshape(-1)]
    np.testing.assert_allclose(table.column(f"probability_{names[0]}").to_numpy(), expected["probabilities"][:, 0])
    assert table.column("species").to_pylist() == eval_table.column("species").to_pylist()


def test_an_unblessed_model_scores_nothing(tmp_path, penguin_model, penguin_pipeline_artifacts):
    blessing = str(tmp_path / "blessing")
    write_blessing(blessing, False, ["accuracy too low"])
    result = executor.run(penguin_model["model"], penguin_pipeline_artifacts["examples"], str(tmp_path / "result"),
                          model_blessing_dir=blessing)
    assert result["skipped"] and os.listdir(tmp_path / "result") == [layout.INFERENCE_SUMMARY_FILE]


def test_bad_rows_are_rejected_with_their_reason_and_the_rest_scored(tmp_path, repository, eval_table, capsys):
    rows = eval_table.drop(["species"]).to_pylist()
    rows[1]["bill_length_mm"] = "long"          # a wrong type
    rows[2]["island"] = "Atlantis"              # not in the training domain
    rows[3]["body_mass_g"] = 3750.5             # not an integer
    rows[4]["bill_depth_mm"] = None             # missing (NaN not allowed, as in serving)
    path = tmp_path / "new.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "scored.csv"
    code = cli.main(["predict", "--data", str(path), "--model", "penguin", "--repository", repository,
                     "--out", str(out)])
    printed, _ = capsys.readouterr()
    assert code == 0 and f"Scored {len(rows) - 4} of {len(rows)} rows with penguin version 1" in printed
    with open(tmp_path / "scored.rejects.csv", encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [(int(r["row"]), r["reason"]) for r in rejects] == [
        (1, "feature 'bill_length_mm': expected a number (got 'long')"),
        (2, "feature 'island': value not in the training domain (got 'Atlantis')"),
        (3, "feature 'body_mass_g': expected an integer (got '3750.5')"),
        (4, "feature 'bill_depth_mm': null (NaN) is not allowed for this feature (got '')")]
    scored = pacsv.read_csv(str(out))
    assert scored.num_rows == len(rows) - 4 and "predicted_class" in scored.column_names
    assert os.path.isfile(tmp_path / f"scored.{layout.prediction_logs_file_name(0, 1)}")


def test_a_missing_column_rejects_every_row_without_a_crash(tmp_path, repository, eval_table, capsys):
    path = tmp_path / "no-island.parquet"
    pq.write_table(eval_table.drop(["island"]), str(path))
    code = cli.main(["predict", "--data", str(path), "--model", "penguin:1", "--repository", repository,
                     "--out", str(tmp_path / "out.parquet")])
    printed, _ = capsys.readouterr()
    assert code == 1 and f"Scored 0 of {eval_table.num_rows} rows" in printed
    with open(tmp_path / "out.rejects.csv", encoding="utf-8") as handle:
        reasons = {row["reason"] for row in csv.DictReader(handle)}
    assert reasons == {"feature 'island': missing (no such column)"}


@pytest.mark.parametrize("args, words", [
    (["--data", "/no/such.csv", "--model", "penguin"], "--data /no/such.csv: not found"),
    (["--model", "penguin:9"], "no version 9 of model 'penguin'"),
    (["--model", "nosuch"], "no model 'nosuch'"),
    (["--out", "scores.txt"], "--out scores.txt: name a .parquet or .csv file"),
])
def test_predict_usage_errors_are_one_line_and_exit_2(tmp_path, repository, eval_table, capsys, args, words):
    data = tmp_path / "data.csv"
    pacsv.write_csv(eval_table, str(data))
    given = {"--data": str(data), "--model": "penguin", "--out": str(tmp_path / "o.csv")}
    for flag, value in zip(args[::2], args[1::2]):
        given[flag] = value
    argv = ["predict", "--repository", repository] + [x for kv in given.items() for x in kv]
    code = cli.main(argv)
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("kubetfx: ") and words in err and err.count("\n") == 1
    assert not [f for f in os.listdir(tmp_path) if f.startswith(("o.", "scores"))]


def test_prediction_log_encoding_round_trips_through_the_protos():
    from tensorflow_serving.apis import prediction_log_pb2

    outputs = {"probabilities": np.array([[0.25, 0.75], [1.0, 0.0]], np.float32),
               "class_ids": np.array([[1], [300]], np.int64),
               "classes": np.array([[b"b"], ["\u00e9t\u00e9"]], dtype=object), "value": np.array([1.5, -2.0])}
    inputs = {"x": np.array([1.0, 2.0], np.float32), "n": np.array([-5, 2 ** 40], np.int64)}
    records = prediction_logs.encode(inputs, outputs, "m", "serving_raw", version=3).to_pylist()
    second = prediction_log_pb2.PredictionLog.FromString(records[1]).predict_log
    assert second.request.model_spec.version.value == 3
    assert list(second.request.inputs["n"].int64_val) == [2 ** 40]
    assert list(second.response.outputs["class_ids"].int64_val) == [300]
    assert list(second.response.outputs["classes"].string_val) == ["\u00e9t\u00e9".encode()]
    assert list(second.response.outputs["value"].double_val) == [-2.0]
    assert [d.size for d in second.response.outputs["probabilities"].tensor_shape.dim] == [1, 2]


def test_framing_many_records_at_once_gives_the_reference_bytes():
    rng = np.random.default_rng(7)
    records = [bytes(rng.integers(0, 256, int(size), dtype=np.uint8)) for size in rng.integers(0, 300, 500)]
    records += [b"", b"x" * 70_000]
    column = pa.array([b"skipped"] + records, type=pa.large_binary()).slice(1)  # an offset into the buffers
    assert bytes(tfrecord.frame(column)) == tfrecord.encode_records(records)
    assert bytes(tfrecord.frame(pa.array([], pa.large_binary()))) == b""


def test_varints_of_one_size_and_of_several_are_protobufs_own():
    from google.protobuf.internal import encoder

    from kubetfx.components.common import protowire

    for values in ([2009] * 5, [1, 300, 2 ** 40, -1, 0], [127, 128], [-5, -5], [0]):
        assert protowire.varints(np.array(values)).to_pylist() == \
            [encoder._VarintBytes(v & (2 ** 64 - 1)) for v in values]  # noqa: SLF001


def test_prediction_logs_are_the_bytes_protobuf_itself_writes():
    """Constant outputs (class names), few distinct strings (a category), many distinct ones, several values
    per row, every dtype: each record is what ``SerializeToString(deterministic=True)`` gives for its parse."""
    from tensorflow_serving.apis import prediction_log_pb2

    n = 300
    rng = np.random.default_rng(3)
    categories = np.array(["Biscoe", "Dream", "\u00e9t\u00e9"], dtype=object)
    outputs = {"class_names": np.tile(np.array([[b"Adelie", b"Gentoo"]], dtype=object), (n, 1)),
               "classes": categories[rng.integers(0, 3, n)], "text": np.array([f"t{i}" * (i % 5) for i in range(n)],
                                                                                  dtype=object),
               "pairs": categories[rng.integers(0, 3, (n, 2))], "probabilities": rng.random((n, 2), dtype=np.float32),
               "constant": np.ones((n, 2)), "ids": rng.integers(-2 ** 40, 2 ** 40, (n, 1)),
               "flag": rng.random(n) > 0.5}
    inputs = {"x": rng.random(n).astype(np.float32), "island": categories[rng.integers(0, 2, n)],
              "year": np.full(n, 2009)}
    # Without a version: with one, ModelSpec's fields come as name, signature_name, version (any order parses).
    records = prediction_logs.encode(inputs, outputs, "m", "serving_raw").to_pylist()
    for index, record in enumerate(records):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.SerializeToString(deterministic=True) == record
        response = log.predict_log.response.outputs
        assert list(response["class_names"].string_val) == [b"Adelie", b"Gentoo"]
        assert list(response["pairs"].string_val) == [v.encode() for v in outputs["pairs"][index]]
        assert response["text"].string_val[0] == outputs["text"][index].encode()
        assert list(response["ids"].int64_val) == outputs["ids"][index].tolist()
        assert log.predict_log.request.inputs["island"].string_val[0] == inputs["island"][index].encode()


def test_many_batches_through_the_writer_threads_give_the_same_files(tmp_path, penguin_model, eval_table,
                                                                     monkeypatch):
    from kubetfx.components.bulk_inferrer import reading

    data = tmp_path / "data.csv"
    pacsv.write_csv(eval_table.drop(["species"]), str(data))
    model_dir = penguin_model["model"]
    one = executor.predict_to_file(model_dir, str(data), str(tmp_path / "one.parquet"))
    monkeypatch.setattr(reading, "BATCH_ROWS", 7)
    assert [len(batch) for _, batch in reading.batches([str(data)], "csv")] == \
        [7] * (eval_table.num_rows // 7) + ([eval_table.num_rows % 7] if eval_table.num_rows % 7 else [])
    many = executor.predict_to_file(model_dir, str(data), str(tmp_path / "many.parquet"))
    assert one["scored"] == many["scored"] == eval_table.num_rows
    logs = [(tmp_path / f"{stem}.{layout.prediction_logs_file_name(0, 1)}").read_bytes() for stem in ("one", "many")]
    assert logs[0] == logs[1]  # one gzip stream: the same bytes however the rows were batched
    assert pq.read_table(str(tmp_path / "one.parquet")).equals(pq.read_table(str(tmp_path / "many.parquet")))


def test_a_failing_writer_thread_fails_the_job_and_leaves_no_files(tmp_path, penguin_model, eval_table,
                                                                   monkeypatch):
    data = tmp_path / "data.csv"
    pacsv.write_csv(eval_table.drop(["species"]), str(data))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(prediction_logs, "encode", broken)
    with pytest.raises(OSError, match="disk full"):
        executor.predict_to_file(penguin_model["model"], str(data), str(tmp_path / "out.parquet"))
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]


def test_a_column_of_numbers_reads_as_the_per_row_rules_read_it(penguin_model):
    """All numbers: parsed at once; one bad value: per row. The good rows' values are the same."""
    from kubetfx.components.predictor import table_check

    rules = executor.load_model(penguin_model["model"]).rules
    rows = {"island": ["Biscoe"] * 4, "sex": ["male"] * 4, "bill_length_mm": ["39.1", "+.5", "1e2", "40"],
            "bill_depth_mm": ["18.7"] * 4, "flipper_length_mm": ["181", "190", "2e2", "195"],
            "body_mass_g": ["3750"] * 4, "year": ["2007"] * 4}
    columns, good, reasons = table_check.check(rules, pa.RecordBatch.from_pydict(rows))
    assert good.all() and not reasons
    rows = {name: values + ["nan" if name == "bill_length_mm" else values[0]] for name, values in rows.items()}
    slow, good, reasons = table_check.check(rules, pa.RecordBatch.from_pydict(rows))
    assert good.tolist() == [True] * 4 + [False] and list(reasons) == [4]
    for name, values in columns.items():
        np.testing.assert_array_equal(values, slow[name])


def test_small_csv_blocks_are_joined_into_whole_batches_in_order():
    from kubetfx.components.bulk_inferrer import reading

    blocks = [pa.record_batch({"a": pa.array([str(i) for i in range(start, start + size)], pa.string())})
              for start, size in ((0, 5), (5, 0), (5, 3), (8, 9), (17, 1))]
    batches = list(reading._rebatch(iter(blocks), 4))  # noqa: SLF001
    assert [batch.num_rows for batch in batches] == [4, 4, 4, 4, 2]
    assert [v for batch in batches for v in batch.column(0).to_pylist()] == [str(i) for i in range(18)]


def _coded(values: np.ndarray):
    from kubetfx.components.predictor.servable import CodedStrings

    distinct, codes = np.unique(values, return_inverse=True)
    return CodedStrings(codes.reshape(values.shape), distinct)


def _as_numpy(arrays: dict) -> dict:
    """Arrow text columns and coded string outputs as numpy gives them (object arrays)."""
    from kubetfx.components.predictor.servable import CodedStrings

    return {name: values.to_numpy(zero_copy_only=False).astype(object) if isinstance(values, pa.Array) else
            values.decoded() if isinstance(values, CodedStrings) else values for name, values in arrays.items()}


def _protobuf_logs(inputs: dict, outputs: dict, model_name: str, signature_name: str, version) -> list:
    """The straightforward path: one PredictionLog object per row, its tensors filled value by value."""
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    def fill(tensor, values: np.ndarray) -> None:
        tensor.tensor_shape.dim.add().size = 1
        for size in values.shape:
            tensor.tensor_shape.dim.add().size = size
        flat = values.reshape(-1)
        if values.dtype == object:
            tensor.dtype = types_pb2.DT_STRING
            tensor.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
        elif values.dtype == np.float32:
            tensor.dtype = types_pb2.DT_FLOAT
            tensor.float_val.extend(flat.tolist())
        elif values.dtype == np.float64:
            tensor.dtype = types_pb2.DT_DOUBLE
            tensor.double_val.extend(flat.tolist())
        elif values.dtype == np.bool_:
            tensor.dtype = types_pb2.DT_BOOL
            tensor.bool_val.extend(flat.tolist())
        else:
            tensor.dtype = types_pb2.DT_INT64
            tensor.int64_val.extend(flat.tolist())

    inputs, outputs = _as_numpy(inputs), _as_numpy(outputs)
    logs = []
    for row in range(len(next(iter(outputs.values())))):
        log = prediction_log_pb2.PredictionLog()
        for model_spec in (log.predict_log.request.model_spec, log.predict_log.response.model_spec):
            model_spec.name, model_spec.signature_name = model_name, signature_name
            if version is not None:
                model_spec.version.value = version
        for tensors, arrays in ((log.predict_log.request.inputs, inputs), (log.predict_log.response.outputs, outputs)):
            for name, values in arrays.items():
                fill(tensors[name], values[row:row + 1].reshape(values.shape[1:]))  # shape [1, ...]
        logs.append(log)
    return logs


@pytest.mark.parametrize("fill", ["native", "numpy"])
def test_the_laid_out_encoding_gives_the_protobuf_objects_messages_and_bytes(fill, monkeypatch):
    """Rows of one layout, of several (strings of several lengths, varints of several sizes), of too many (free
    text: the join instead), framed or not, framed rows filled in C or by numpy: the same bytes as protobuf's
    objects and as the element-wise join."""
    from tensorflow_serving.apis import prediction_log_pb2

    from kubetfx.components.common import protolayout

    if fill == "numpy":
        monkeypatch.setattr(protolayout, "_rowfill", None)
    elif protolayout._rowfill is None:  # noqa: SLF001
        pytest.skip("the native fill is not built (no C compiler at install)")
    rng = np.random.default_rng(11)
    n = 400
    categories = np.array(["Biscoe", "Dream", "\u00e9t\u00e9", ""], dtype=object)
    outputs = {"class_names": np.tile(np.array([[b"Adelie", b"Gentoo"]], dtype=object), (n, 1)),
               "classes": categories[rng.integers(0, 4, n)], "probabilities": rng.random((n, 3), dtype=np.float32),
               "ids": rng.integers(-2 ** 40, 2 ** 40, (n, 1)), "flag": rng.random(n) > 0.5}
    same_layout = {"x": rng.random(n).astype(np.float32), "year": np.full(n, 2009)}
    several = {**same_layout, "island": categories[rng.integers(0, 3, n)], "mass": rng.integers(0, 300, n)}
    free_text = {**several, "text": np.array([f"t{i}" * (i % 97) for i in range(n)], dtype=object)}
    for inputs, laid_out in ((same_layout, True), (several, True), (free_text, False)):
        message = prediction_logs.message(inputs, outputs, "m", "serving_raw", 7)
        assert (protolayout.laid_out(message, n) is not None) == laid_out
        records = prediction_logs.encode(inputs, outputs, "m", "serving_raw", 7).to_pylist()
        expected = _protobuf_logs(inputs, outputs, "m", "serving_raw", 7)
        assert [prediction_log_pb2.PredictionLog.FromString(record) for record in records] == expected
        assert records == [log.SerializeToString(deterministic=True) for log in expected] == \
            protolayout.joined(message, n).to_pylist()
        framed, count = prediction_logs.encode(inputs, outputs, "m", "serving_raw", 7, framed=True)
        written = io.BytesIO()
        framed(written)
        assert count == n and written.getvalue() == tfrecord.encode_records(records)
        # Text inputs as Arrow arrays and string outputs coded (the BulkInferrer's own forms): the same bytes.
        coded = {name: _coded(values) if values.dtype == object else values for name, values in outputs.items()}
        arrow = {name: pa.array(values.tolist()) if values.dtype == object else values
                 for name, values in inputs.items()}
        assert prediction_logs.encode(arrow, coded, "m", "serving_raw", 7).to_pylist() == records


def test_scored_rows_read_back_as_the_protobuf_objects_and_bad_rows_as_rejects(tmp_path, penguin_model, eval_table):
    """A few hundred rows, some bad: the log file, read as TFX's tools read it (tf.data, gzip), holds exactly the
    PredictionLogs protobuf's own objects give for the good rows, in order; the bad rows are rejects."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from kubetfx.components.predictor import table_check

    rows = (eval_table.drop(["species"]).to_pylist() * 8)[:300]
    bad = {5: ("bill_length_mm", "long"), 77: ("island", "Atlantis"), 150: ("body_mass_g", 3750.5),
           299: ("bill_depth_mm", None)}
    for row, (name, value) in bad.items():
        rows[row] = {**rows[row], name: value}
    data = tmp_path / "rows.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = executor.predict_to_file(penguin_model["model"], str(data), str(tmp_path / "out.parquet"),
                                      model_name="penguin")
    assert (result["scored"], result["rejected"]) == (len(rows) - len(bad), len(bad))
    with open(result["rejects"], encoding="utf-8") as handle:
        assert [int(r["row"]) for r in csv.DictReader(handle)] == sorted(bad)

    servable = executor.load_model(penguin_model["model"])
    batch = pacsv.read_csv(str(data), convert_options=pacsv.ConvertOptions(
        column_types={name: pa.string() for name in rows[0]}, strings_can_be_null=False)).to_batches()[0]
    columns, good, _ = table_check.check(servable.rules, batch)
    assert np.flatnonzero(~good).tolist() == sorted(bad)
    outputs = servable.run(columns)
    inputs = {feature.argument: columns[feature.name] for feature in servable.spec.features}
    signature = "serving_default" if servable._examples_argument else "serving_raw"  # noqa: SLF001
    version = int(servable.version) if str(servable.version).isdigit() else None
    expected = _protobuf_logs(inputs, outputs, "penguin", signature, version)
    records = [record.numpy() for record in tf.data.TFRecordDataset(result["prediction_logs"], compression_type="GZIP")]
    assert [prediction_log_pb2.PredictionLog.FromString(record) for record in records] == expected
    assert records == [log.SerializeToString(deterministic=True) for log in expected]


def test_record_crcs_from_a_template_and_the_varying_bytes_equal_crc32c_of_each_record():
    """CRC32C is affine: the template's CRC plus what each varying byte adds (looked up per position), for byte
    columns and for choices among a few values, equals google_crc32c over every whole record."""
    import google_crc32c

    rng = np.random.default_rng(3)
    for length, count in ((1, 5), (37, 200), (443, 1000)):
        template = bytearray(rng.integers(0, 256, length, dtype=np.uint8).tobytes())
        records = np.tile(np.frombuffer(bytes(template), dtype=np.uint8), (count, 1))
        start, width = length // 3, min(5, length - length // 3)
        template[start:start + width] = bytes(width)
        block = rng.integers(0, 256, (count, width), dtype=np.uint8)
        records[:, start:start + width] = block
        crcs = tfrecord.RowCrcs(bytes(template), count)
        crcs.add(start, block)
        if length > 10:
            values, codes = rng.integers(0, 256, (3, 4), dtype=np.uint8), rng.integers(0, 3, count)
            template[length - 4:] = bytes(4)
            records[:, length - 4:] = values[codes]
            crcs = tfrecord.RowCrcs(bytes(template), count)
            crcs.add(start, block)
            crcs.add_choice(length - 4, values, codes)
        assert crcs.crcs.tolist() == [google_crc32c.value(row.tobytes()) for row in records]


def test_csv_numbers_parsed_by_arrow_give_what_the_text_path_gives(tmp_path, penguin_model):
    """The model's number columns parsed as numbers while they parse, then the file read on as text from the
    block of the first value that does not (a boolean spelling, a padded number): every row, its values, its
    rejection as reading every column as text gives, blank lines and missing-value tokens included."""
    from kubetfx.components.bulk_inferrer import reading
    from kubetfx.components.predictor import table_check

    rules = executor.load_model(penguin_model["model"]).rules
    numbers = [rule.name for rule in rules.rules if rule.dtype != "string"]
    lines = ["island,sex,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,year,note"]
    for i in range(60_000):
        mass = {1_000: "n/a", 2_000: "3750.5", 50_000: "True", 50_001: " 3800 ", 59_999: "heavy"}.get(i, str(3000 + i % 900))
        lines.append(f"Biscoe,{'male' if i % 2 else 'female'},{39 + i % 7}.1,18.{i % 10},{180 + i % 30},{mass},"
                     f"{2007 + i % 3},free text {i}")
        if i == 30_000:
            lines.append("")
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def read(columns):
        checked = [table_check.check(rules, batch) for _, batch in reading.batches([str(path)], "csv", columns)]
        return checked, sum(len(good) for _, good, _ in checked)

    (typed, n), (text, n_text) = read(numbers), read(())
    assert n == n_text == 60_000
    assert len(typed) > 1 and pa.types.is_floating(
        next(reading.batches([str(path)], "csv", numbers))[1].schema.field("body_mass_g").type)
    good = np.concatenate([g for _, g, _ in typed])
    assert good.tolist() == np.concatenate([g for _, g, _ in text]).tolist()
    # n/a: null; 3750.5: not an integer; heavy: not a number; "True": no number, body_mass_g was no boolean column
    # in training. " 3800 " is a number, as the text path reads it.
    assert np.flatnonzero(~good).tolist() == [1_000, 2_000, 50_000, 59_999]

    def whole(checked):  # the batches' columns joined, the rejected rows numbered in the file
        starts = np.cumsum([0] + [len(g) for _, g, _ in checked])
        return ({name: np.concatenate([np.asarray(columns[name]) for columns, _, _ in checked]) for name in numbers},
                sorted(int(start) + row for (_, _, reasons), start in zip(checked, starts) for row in reasons))

    (columns, rejected), (text_columns, text_rejected) = whole(typed), whole(text)
    assert rejected == text_rejected == [1_000, 2_000, 50_000, 59_999]
    for name in numbers:
        np.testing.assert_array_equal(columns[name], text_columns[name])


def test_every_missing_value_token_example_gen_reads_as_null_is_null_when_scoring(tmp_path, penguin_model):
    """ExampleGen's default tokens for a missing number (pandas' na_values: ``#N/A N/A``, ``-1.#IND``, ...) are
    nulls to the request checks and to the BulkInferrer's typed CSV read, as they were in training; a value
    that is not one of them is still refused."""
    from kubetfx.components.bulk_inferrer import reading
    from kubetfx.components.example_gen.reading import DEFAULT_NULL_VALUES
    from kubetfx.components.predictor import table_check

    values, is_null, bad = table_check._numbers(pa.array(list(DEFAULT_NULL_VALUES) + ["3.5", "#N/A?"]))  # noqa: SLF001
    assert is_null.tolist() == [True] * len(DEFAULT_NULL_VALUES) + [False, False]
    assert bad.tolist() == [False] * (len(DEFAULT_NULL_VALUES) + 1) + [True] and values[-2] == 3.5

    rules = executor.load_model(penguin_model["model"]).rules
    numbers = [rule.name for rule in rules.rules if rule.dtype != "string"]
    tokens = [token for token in DEFAULT_NULL_VALUES if token]
    path = tmp_path / "tokens.csv"
    path.write_text("island,sex,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,year\n" + "".join(
        f"Biscoe,male,{token},18.1,190,3800,2008\n" for token in tokens), encoding="utf-8")
    (_, batch), = reading.batches([str(path)], "csv", numbers)
    column = batch.column("bill_length_mm")
    assert pa.types.is_floating(column.type) and column.null_count == len(tokens)  # the typed read kept
