"""BulkInferrer executor: score a data split or new data with a model, as the predictor serves it.

The model is loaded exactly as the predictor loads a version (``servable.load``: its own
signature, ``serving_raw`` or a module's ``serving_default``, warmed up and checked), and every
batch goes through the predictor's request rules (``table_check``: the same types, domains and
NaN rules), so batch and online predictions agree and nothing is preprocessed twice (the
transform graph is inside the model). Rows a request would be refused for (a missing column, a
wrong type, an unseen category) are counted and written to ``rejects.csv`` with the reason;
they never stop the job.

Outputs (TFX's ``InferenceResult`` layout plus kubetfx's files): ``prediction_logs-*.gz``
(TFRecords of TensorFlow Serving ``PredictionLog``), ``predictions.parquet`` (or ``.csv``: the
input's columns and the predictions), ``rejects.csv``, ``kubetfx_inference.json`` (counts,
rows/s). Streaming: batches of at most 64k rows; while one is read, checked and scored, the earlier
ones' outputs are written on threads with bounded queues, so a few batches are in memory, whatever
the input's size. A model whose blessing is negative is not used: the output then says so, as
TFX's BulkInferrer skips it.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import time

import numpy as np

from kubetfx.components.common import blessing as blessing_lib, fileio, layout
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.bulk_inferrer import reading
from kubetfx.components.predictor.servable import CodedStrings

ARTIFACT_TYPE = "InferenceResult"
TABLE_FORMATS = ("parquet", "csv")
# Rows per model call: a whole read batch. Every call hands the GIL back and forth a few dozen times (inputs to
# tensors, the signature, outputs to numpy) while the writer threads run Python; 64k-row calls scored 1.27x the rows/s
# of 8192-row ones on 2 cores (docs/benchmarks.md). Lower it for a model whose activations at 64k rows do not fit.
DEFAULT_BATCH = 65536
ENCODING_THREADS = 2


def _output_columns(spec, outputs: dict, class_names: list[str]) -> dict:
    """Prediction columns for the table: the class, its id and one probability per class; or the prediction."""
    if spec.is_classification:
        import pyarrow as pa

        ids = outputs["class_ids"].reshape(-1)
        columns = {"predicted_class": pa.array(class_names, pa.string()).take(ids), "predicted_class_id": ids}
        for index, name in enumerate(class_names):
            columns[f"probability_{name}"] = outputs["probabilities"][:, index]
        return columns
    if spec.is_regression:
        return {"prediction": outputs["predictions"].reshape(len(outputs["predictions"]), -1)[:, 0]}
    columns = {}
    for name, array in outputs.items():
        array = array.decoded() if isinstance(array, CodedStrings) else array
        flat = array.reshape(len(array), -1)
        if flat.shape[1] == 1:
            columns[f"output_{name}"] = flat[:, 0]
        else:
            columns.update({f"output_{name}_{i}": flat[:, i] for i in range(flat.shape[1])})
    return {k: ([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in c] if c.dtype == object else c)
            for k, c in columns.items()}


class _Sinks:
    """The table, the PredictionLogs and the rejects, written batch by batch to temporary names. The logs are
    planned on two threads, filled and compressed in order on another (``prediction_logs.Writer``), the table
    built and written on a fourth (a :class:`background.Stage`), while the next batch is read, checked and scored."""

    def __init__(self, table_path: str, logs_path: str, rejects_path: str, table_format: str):
        from kubetfx.components.bulk_inferrer import prediction_logs
        from kubetfx.components.common import background

        self.paths = {"table": table_path, "logs": logs_path, "rejects": rejects_path}
        self.temp = {key: fileio.temp_sibling(path) for key, path in self.paths.items()}
        self.table_format = table_format
        self.logs = prediction_logs.Writer(self.temp["logs"])
        # Two batches' PredictionLogs are encoded at once (mostly numpy, which releases the GIL); the log writer
        # takes them in order.
        self.encoding = concurrent.futures.ThreadPoolExecutor(ENCODING_THREADS, "kubetfx-bulk-encoding")
        self.tables = background.Stage("kubetfx-bulk-table")
        self._table_writer = None
        self._schema = None
        self._rejects_handle = open(self.temp["rejects"], "w", newline="", encoding="utf-8")
        self.rejects = csv.writer(self._rejects_handle)
        self.rejects.writerow(["row", "file", "reason"])

    def write_table(self, table) -> None:
        import pyarrow as pa

        if self._table_writer is None:
            if self.table_format == "parquet":
                import pyarrow.parquet as pq

                # Dictionaries for text (categories repeat, numbers seldom do); min/max statistics for numbers
                # (what readers filter on; text's cost a third of the writing)
                textual = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_binary(f.type)
                           or pa.types.is_large_string(f.type) or pa.types.is_large_binary(f.type)]
                self._table_writer = pq.ParquetWriter(
                    self.temp["table"], table.schema, use_dictionary=textual,
                    write_statistics=[name for name in table.schema.names if name not in textual])
            else:
                import pyarrow.csv as pacsv

                self._table_writer = pacsv.CSVWriter(self.temp["table"], table.schema)
            self._schema = table.schema
        elif table.schema != self._schema:  # e.g. a column that is all null in one batch
            table = table.cast(self._schema)
        self._table_writer.write_table(table if isinstance(table, pa.Table) else pa.Table.from_batches([table]))

    def _close_table(self) -> None:
        writer, self._table_writer = self._table_writer, None
        if writer is not None:
            writer.close()

    def _closers(self) -> tuple:
        return self.logs.close, self.encoding.shutdown, self.tables.close, self._close_table, self._rejects_handle.close

    def finish(self) -> None:
        """Wait until every submitted batch is written and the files are complete (raises a writer's error)."""
        for closer in self._closers():
            closer()

    def close(self, ok: bool) -> None:
        """Every file closed, whatever fails first; then they get their names (``ok``) or are removed. A
        writer's error is raised unless the caller is already failing (``ok`` false)."""
        failure = None
        for closer in self._closers():
            try:
                closer()
            except BaseException as err:  # noqa: BLE001 - the first one is raised below
                failure = failure or err
        for key, temp in self.temp.items():
            if ok and failure is None and os.path.exists(temp):
                os.replace(temp, self.paths[key])
            elif os.path.exists(temp):
                os.remove(temp)
        if ok and failure is not None:
            raise failure


def _table(batch, good: np.ndarray, columns: dict, rules, predictions: dict):
    """The good rows' input columns (features as the model read them; a missing int or string, sent to it as the
    missing marker, as null) and their predictions."""
    import pyarrow as pa

    from kubetfx.components.common import feature_values
    from kubetfx.components.predictor import table_check

    index = np.flatnonzero(good)
    arrays, names = [], []
    for name in batch.schema.names:
        if name in columns:
            values = columns[name]
            numbers = isinstance(values, np.ndarray) and values.dtype.kind == "f"  # NaN stays NaN
            arrays.append(pa.array(values) if numbers else feature_values.missing_as_null(values))
        else:  # tf.Examples hold one-value lists, text as bytes: as the data had them
            values, _ = table_check.scalar(batch.column(name).take(pa.array(index)))
            if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
                try:
                    values = values.cast(pa.string())
                except pa.ArrowInvalid:
                    pass
            arrays.append(values)
        names.append(name)
    for name, values in predictions.items():
        if name in names:
            raise ConfigError(f"the input has a column '{name}', the name of a prediction column; rename it")
        arrays.append(values if isinstance(values, pa.Array) else pa.array(values))
        names.append(name)
    return pa.table(arrays, names=names)


def _write_outputs(sinks: _Sinks, servable, batch, good: np.ndarray, columns: dict, outputs: dict,
                   log_spec: tuple) -> None:
    """One scored batch's PredictionLogs and table rows, handed to the sinks' threads."""
    from kubetfx.components.bulk_inferrer import prediction_logs

    spec = servable.spec
    inputs = {feature.argument: columns[feature.name] for feature in spec.features}
    sinks.logs.write(sinks.encoding.submit(prediction_logs.encode, inputs, outputs, *log_spec, framed=True))
    sinks.tables.submit(lambda: sinks.write_table(_table(batch, good, columns, servable.rules,
                                                         _output_columns(spec, outputs, servable.class_names))))


def infer(servable, files: list[str], data_format: str, sinks: _Sinks, batch_size: int, model_name: str,
          log=print) -> dict:
    """Score every row of ``files``; returns the counts and timings."""
    from kubetfx.components.common import background, protolayout
    from kubetfx.components.predictor import table_check

    rules = servable.rules
    signature_name = "serving_default" if servable._examples_argument else "serving_raw"  # noqa: SLF001
    version = int(servable.version) if str(servable.version).isdigit() else None
    counts = {"rows": 0, "scored": 0, "rejected": 0}
    reasons_seen: dict[str, int] = {}
    started = time.perf_counter()
    model_seconds = 0.0
    numbers = [rule.name for rule in rules.rules if rule.dtype != "string"]
    checked = ((path, batch, *table_check.check(rules, batch))
               for path, batch in reading.batches(files, data_format, numbers, rules.number_null_text))
    # The next batch is read and checked on a thread while this one is scored (both mostly release the GIL).
    for path, batch, columns, good, reasons in background.ahead(checked, "kubetfx-bulk-reading"):
        for row, reason in sorted(reasons.items()):
            sinks.rejects.writerow([counts["rows"] + row, path, reason])
            kind = reason.split(": ", 1)[-1].split(" (got")[0]
            reasons_seen[kind] = reasons_seen.get(kind, 0) + 1
        n = int(good.sum())
        if n:
            call = time.perf_counter()
            outputs = {}
            for start in range(0, n, batch_size):
                part = servable.run({name: values[start:start + batch_size] for name, values in columns.items()},
                                    coded_strings=True)
                for name, array in part.items():
                    outputs.setdefault(name, []).append(array)
            outputs = {name: CodedStrings.concatenate(parts) if isinstance(parts[0], CodedStrings) else
                       np.concatenate(parts) for name, parts in outputs.items()}
            model_seconds += time.perf_counter() - call
            _write_outputs(sinks, servable, batch, good, columns, outputs, (model_name, signature_name, version))
        counts["rows"] += batch.num_rows
        counts["scored"] += n
        counts["rejected"] += batch.num_rows - n
    sinks.finish()
    seconds = time.perf_counter() - started
    counts.update(seconds=round(seconds, 3), model_seconds=round(model_seconds, 3),
                  rows_per_second=round(counts["rows"] / seconds, 1) if seconds else None,
                  reject_reasons=reasons_seen, prediction_log_fill=protolayout.fill_engine())
    log(f"BulkInferrer: {counts['scored']} of {counts['rows']} rows scored in {seconds:.1f} s "
        f"({counts['rows_per_second']} rows/s), {counts['rejected']} rejected"
        + (": " + "; ".join(f"{k} ({v})" for k, v in sorted(reasons_seen.items(), key=lambda kv: -kv[1])[:3])
           if reasons_seen else ""))
    return counts


def _check(table_format: str, batch_size) -> int:
    if table_format not in TABLE_FORMATS:
        raise ConfigError(f"table_format: expected one of {', '.join(TABLE_FORMATS)}, got {table_format!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    return batch_size


def load_model(model_dir: str, allow_nan: bool = False, version: str | None = None):
    """The model as the predictor serves it (a Trainer model dir or a repository version dir)."""
    from kubetfx.components.predictor import servable as servable_lib, signature

    location = signature.locate_model_dir(model_dir, version)
    try:
        return servable_lib.load(location, allow_nan=allow_nan, max_batch_size=DEFAULT_BATCH)
    except servable_lib.LoadError as err:
        raise ConfigError(f"model {model_dir}: {err}") from None


def _score(servable, files: list, data_format: str, sinks: _Sinks, batch_size: int, model_name: str) -> dict:
    """:func:`infer` into ``sinks``; the sinks are completed only when every batch was scored (else removed)."""
    ok = False
    try:
        counts = infer(servable, files, data_format, sinks, batch_size, model_name)
        ok = True
    finally:
        sinks.close(ok)
        servable.close()
    return counts


def run(model_dir: str, data_uri: str, output_dir: str, split: str = "eval", model_blessing_dir: str = "",
        table_format: str = "parquet", batch_size: int = DEFAULT_BATCH, allow_nan: bool = False,
        model_name: str = "model") -> dict:
    """Score ``data_uri`` (an Examples artifact's ``split``, or files) into an InferenceResult directory."""
    batch_size = _check(table_format, batch_size)
    files, data_format, span = reading.resolve(data_uri, split)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ConfigError(f"inference result directory {output_dir} already exists and is not empty")
    with fileio.atomic_directory(output_dir) as tmp:
        if model_blessing_dir and not blessing_lib.is_blessed(model_blessing_dir):
            summary = {"skipped": True, "reason": f"the model is not blessed ({model_blessing_dir})"}
            fileio.atomic_write(os.path.join(tmp, layout.INFERENCE_SUMMARY_FILE), json.dumps(summary, indent=2))
            return {layout.TFX_TYPE: ARTIFACT_TYPE, **summary}
        servable = load_model(model_dir, allow_nan)
        sinks = _Sinks(os.path.join(tmp, f"{layout.PREDICTIONS_TABLE_STEM}.{table_format}"),
                       os.path.join(tmp, layout.prediction_logs_file_name(0, 1)),
                       os.path.join(tmp, layout.REJECTS_FILE), table_format)
        counts = _score(servable, files, data_format, sinks, batch_size, model_name)
        summary = {"model": servable.location.saved_model_dir, "model_version": servable.version,
                   "data": data_uri, "split": split if data_format == "tfrecord" and os.path.isdir(data_uri) else "",
                   "span": span, "files": len(files), "table_format": table_format, **counts}
        fileio.atomic_write(os.path.join(tmp, layout.INFERENCE_SUMMARY_FILE), json.dumps(summary, indent=2))
    return {layout.TFX_TYPE: ARTIFACT_TYPE, **summary}


def predict_to_file(model_dir: str, data_uri: str, out_path: str, version: str | None = None,
                    batch_size: int = DEFAULT_BATCH, allow_nan: bool = False, model_name: str = "model") -> dict:
    """``kubetfx predict``: the table at ``out_path`` (.parquet or .csv), the PredictionLogs and the rejects beside it."""
    table_format = "csv" if out_path.lower().endswith((".csv", ".tsv")) else \
        "parquet" if out_path.lower().endswith((".parquet", ".pq")) else None
    if table_format is None:
        raise ConfigError(f"--out {out_path}: name a .parquet or .csv file")
    batch_size = _check(table_format, batch_size)
    directory = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(directory):
        raise ConfigError(f"--out {out_path}: the directory {directory} does not exist")
    files, data_format, _ = reading.resolve(data_uri)
    servable = load_model(model_dir, allow_nan, version)
    stem = os.path.splitext(out_path)[0]
    sinks = _Sinks(out_path, f"{stem}.{layout.prediction_logs_file_name(0, 1)}", f"{stem}.{layout.REJECTS_FILE}",
                   table_format)
    counts = _score(servable, files, data_format, sinks, batch_size, model_name)
    return {**counts, "table": out_path, "prediction_logs": sinks.paths["logs"], "rejects": sinks.paths["rejects"],
            "model": servable.location.saved_model_dir, "model_version": servable.version}
