"""ExampleGen executor: read tabular input, split it deterministically, write tf.Examples.

Reads CSV / Parquet / TFRecord input (``reading.py``: which fields mean missing, counted
per column and token), assigns each row to a split by its hash (``splitting.py``: re-running
on the same data gives byte-identical files, adding rows never moves existing rows), and
writes each split as gzipped tf.Example TFRecord shards in the TFX layout, plus a Markdown
report. No TensorFlow import: the examples are serialized by vectorized Arrow code.
"""

import codecs
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from kubetfx.components.common import (examples, feature_names, feature_values, fileio, layout, provenance, report,
                                       storage, tfrecord)
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.example_gen.reading import (DEFAULT_NULL_VALUES, DEFAULT_STRING_NULL_VALUES, NATIVE_NULL,
                                                    MissingTokens, column_kind, count_native_nulls, detect_format,
                                                    load, parse_null_values)
from kubetfx.components.example_gen.splitting import (HASH_ALGORITHM, assign_splits, parse_splits, record_hashes,
                                                      row_hashes)

ROWS_PER_SHARD = 250_000
MAX_SHARDS = 16


# ---------------------------------------------------------------------------
# Writing


def _write_shard(directory: str, shard: int, num_shards: int, records: list[bytes]) -> int:
    framed = tfrecord.encode_records(records)
    data = tfrecord.compress(framed)
    with open(os.path.join(directory, layout.examples_file_name(shard, num_shards)), "wb") as handle:
        handle.write(data)
    return len(data)


def _shard_count(rows: int, num_shards: int) -> int:
    if num_shards > 0:
        return num_shards
    return max(1, min(MAX_SHARDS, math.ceil(rows / ROWS_PER_SHARD)))


def _write_split(pool, directory: str, records_for_split, rows: int, num_shards: int):
    """Queue the shards of one split; returns futures of bytes written."""
    os.makedirs(directory, exist_ok=True)
    shards = _shard_count(rows, num_shards)
    per_shard = math.ceil(rows / shards) if rows else 0
    return [pool.submit(lambda s=s: _write_shard(directory, s, shards,
                                                 records_for_split(s * per_shard, min(rows, (s + 1) * per_shard))))
            for s in range(shards)]


# ---------------------------------------------------------------------------
# Entry point


def run(input_uri: str, output_dir: str, *, splits=None, partition_column: str = "", label_column: str = "",
        input_format: str = "auto", encoding: str = "utf-8", num_shards: int = 0,
        null_values=None, string_null_values=None, report_path: str | None = None) -> dict:
    """Read ``input_uri`` and write a TFX-layout Examples artifact to ``output_dir``.

    ``null_values`` / ``string_null_values``: the CSV fields that mean "missing" in numeric /
    text columns (see :func:`parse_null_values`; unset: ``DEFAULT_NULL_VALUES`` /
    ``DEFAULT_STRING_NULL_VALUES``). Returns the artifact metadata (split names, span, row
    counts, columns, fingerprint, missing values per column and token).
    """
    split_weights = parse_splits(splits)
    tokens = MissingTokens(parse_null_values(null_values, "null_values", DEFAULT_NULL_VALUES),
                           parse_null_values(string_null_values, "string_null_values", DEFAULT_STRING_NULL_VALUES))
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"encoding '{encoding}' is not a known text encoding") from None
    files, span = storage.resolve_input(input_uri)
    fmt = detect_format(files, input_format)
    loaded = load(files, fmt, encoding, tokens)
    table, records, fingerprint = loaded.table, loaded.records, loaded.fingerprint

    if table is not None:
        for name in table.column_names:
            kind = table.schema.field(name).type
            if pa.types.is_nested(kind):
                raise InputDataError(f"column '{name}' in {files[0]} has nested type {kind}; "
                                     "ExampleGen takes flat columns")
        columns = table.column_names
        column_types = {name: column_kind(table.schema.field(name).type) for name in columns}
        num_rows = table.num_rows
    else:
        decoded = examples.decode_examples(records, source=", ".join(files))
        columns = sorted(decoded.schema.names)
        column_types = {name: str(decoded.schema.field(name).type.value_type) for name in columns}
        num_rows = len(records)
        count_native_nulls(decoded, loaded.missing)

    where = files[0] if len(files) == 1 else f"{len(files)} files under {input_uri}"
    # Columns keep their names; where TensorFlow needs an identifier, feature_names.safe_name is used.
    # Two columns that would share one is an error now, not a crash in the Trainer's export.
    tensorflow_names = {c: s for c, s in feature_names.safe_names(columns, where).items() if c != s}
    if num_rows == 0:
        raise InputDataError(f"{where}: no data rows (only a header?)")
    for role, name in (("label_column", label_column), ("partition_column", partition_column)):
        if name and name not in columns:
            raise InputDataError(f"{role} '{name}' is not a column of {where}; columns are: {', '.join(columns)}")

    if table is not None:
        hashes = row_hashes(table, [partition_column] if partition_column else columns)
    elif partition_column:
        import pyarrow.compute as pc
        hashes = row_hashes(pa.table({partition_column: pc.list_element(decoded.column(partition_column), 0)}),
                            [partition_column])
    else:
        hashes = record_hashes(records)
    names = list(split_weights)
    assignment = assign_splits(hashes, list(split_weights.values()))

    row_counts = {}
    for index, split in enumerate(names):
        if not np.any(assignment == index):
            basis = f"partition column '{partition_column}'" if partition_column else "the row hash"
            raise InputDataError(f"split '{split}' got no rows from {where} ({num_rows} rows split by {basis}); "
                                 "use more data, a partition column with more distinct values, or other weights")
    with fileio.atomic_directory(output_dir) as temp_dir, ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = []
        for index, split in enumerate(names):
            rows_idx = np.flatnonzero(assignment == index)
            row_counts[split] = int(len(rows_idx))
            if table is not None:
                split_table = table.take(pa.array(rows_idx))
                get = lambda lo, hi, t=split_table: examples.encode_examples(t.slice(lo, hi - lo))
            else:
                split_records = [records[i] for i in rows_idx]
                get = lambda lo, hi, r=split_records: r[lo:hi]
            futures += _write_split(pool, layout.split_dir(temp_dir, split), get, len(rows_idx), num_shards)
        bytes_written = sum(f.result() for f in futures)
        fileio.atomic_write(os.path.join(temp_dir, layout.EXAMPLES_READING_FILE),
                            json.dumps(_reading_record(fmt, tokens, column_types), indent=2, sort_keys=True))

    metadata = {
        layout.TFX_TYPE: "Examples",
        layout.SPLIT_NAMES: json.dumps(names),
        layout.SPAN: span if span is not None else 0,
        "payload_format": "FORMAT_TF_EXAMPLE",
        "row_counts": row_counts,
        "columns": columns,
        "tensorflow_names": tensorflow_names,
        "column_types": column_types,
        "input_files": files,
        "input_format": fmt,
        "input_fingerprint": fingerprint,
        "split_weights": split_weights,
        "null_values": list(tokens.numeric),
        "string_null_values": list(tokens.string),
        "missing_values": loaded.missing,
        "na_like_values_kept": loaded.kept,
        "partition": partition_column or "whole row",
        "hash": HASH_ALGORITHM,
        "bytes_written": bytes_written,
        "package_versions": provenance.package_versions(),
    }
    if label_column:
        metadata["label_column"] = label_column
    if report_path:
        fileio.atomic_write(report_path, _report(metadata))
    return metadata


def _reading_record(input_format: str, tokens: MissingTokens, column_types: dict) -> dict:
    """What the Examples' directory keeps of how the input was read (``layout.EXAMPLES_READING_FILE``), for the
    model to record and scoring to read new data as this was read: for a CSV, the fields that meant missing; for
    a CSV or Parquet, the columns that were booleans (stored as INT 1/0: only those take true/false when scoring;
    TFRecords hold no such fact)."""
    record = {"input_format": input_format}
    if input_format == "csv":
        record.update(zip(feature_values.NULL_TEXT_KEYS, (list(tokens.numeric), list(tokens.string))))
    if input_format in ("csv", "parquet"):
        record[feature_values.BOOLEAN_COLUMNS_KEY] = sorted(name for name, kind in column_types.items()
                                                            if kind == column_kind(pa.bool_()))
    return record


def _token_label(token: str) -> str:
    return "empty field" if token == "" else token if token == NATIVE_NULL else f"`{token}`"


def _tokens_text(tokens: list[str]) -> str:
    return ", ".join(_token_label(t) for t in tokens) if tokens else "nothing"


def _missing_report(metadata: dict, total: int) -> list[str]:
    """Which fields were treated as missing, per column and token, and NA-like text kept as values."""
    lines = ["## Missing values", ""]
    if metadata["input_format"] == "csv":
        lines += [f"Treated as missing: in numeric columns {_tokens_text(metadata['null_values'])} "
                  f"(`null_values`); in text columns {_tokens_text(metadata['string_null_values'])} "
                  "(`string_null_values`).", ""]
    missing = metadata["missing_values"]
    if missing:
        rows = [[f"`{column}`", metadata["column_types"][column], report.fmt(sum(tokens.values())),
                 report.percent(sum(tokens.values()), total),
                 ", ".join(f"{_token_label(t)} × {report.fmt(n)}" for t, n in tokens.items())]
                for column, tokens in missing.items()]
        lines += [report.table(["column", "type", "missing", "share", "by token"], rows), ""]
    else:
        lines += ["No missing values.", ""]
    for column, tokens in metadata["na_like_values_kept"].items():
        kept = ", ".join(f"{_token_label(t)} × {report.fmt(n)}" for t, n in tokens.items())
        lines += [f"Text column `{column}` keeps {kept} as values (a numeric column would treat them as "
                  "missing); if they mean missing there, add them to `string_null_values` "
                  "(e.g. `string_null_values=\",NA\"`: the empty field and NA).", ""]
    return lines


def _report(metadata: dict) -> str:
    counts = metadata["row_counts"]
    total = sum(counts.values())
    lines = ["# ExampleGen", "",
             f"**Input**: {len(metadata['input_files'])} {metadata['input_format']} file(s), "
             f"span {metadata[layout.SPAN]}, fingerprint `{metadata['input_fingerprint'][:23]}…`", "",
             "## Splits", "",
             report.table(["split", "rows", "share"],
                          [[s, report.fmt(n), report.percent(n, total)] for s, n in counts.items()]), "",
             f"Partitioned by hash of the {metadata['partition']}; re-running on the same data "
             "gives identical splits.", "",
             "## Columns", "",
             report.table(["#", "column", "type", "name in the model's signature"],
                          [[i + 1, c, metadata["column_types"][c], metadata["tensorflow_names"].get(c, c)]
                           for i, c in enumerate(metadata["columns"])]),
             "", *_missing_report(metadata, total)]
    return "\n".join(lines) + "\n"
