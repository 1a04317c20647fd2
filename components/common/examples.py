"""Arrow tables <-> serialized tf.Examples, and reading an Examples artifact.

Uses tfx-bsl's C++ coders, so no TensorFlow import is needed.
"""

import glob
import json
import os

import numpy as np
import pyarrow as pa

from kubetfx.components.common import feature_values, layout, tfrecord
from kubetfx.components.common.protowire import (constant as _constant, delimited as _delimited,
                                                 from_lengths as _from_lengths, join as _join, varints as _varints)
from kubetfx.components.common.errors import InputDataError

# Rows encoded per tfx-bsl call: bounds peak memory of the intermediate list arrays.
_ENCODE_CHUNK_ROWS = 65536


def _example_value_array(column: pa.Array) -> pa.Array:
    """Cast a column to a type tf.Example stores: int64, float32 or bytes."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return column.cast(pa.int64())
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return column.cast(pa.float64()).cast(pa.float32(), safe=False)
    if pa.types.is_null(kind) or pa.types.is_temporal(kind):
        return column.cast(pa.string()).cast(pa.large_binary())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        return column.cast(pa.large_binary())
    raise InputDataError(f"column type {kind} cannot be stored in a tf.Example")


# tf.Example wire format, written with numpy/Arrow vectorized ops instead of one
# protobuf message per row. Features are written in sorted key order (what
# protobuf's deterministic serialization does), so the same rows always give the
# same bytes; tfx-bsl's encoder orders map entries differently in every process.


def _feature_entry(name: str, column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Per row, the serialized ``map<string, Feature>`` entry for this column and its size (0 when null)."""
    import pyarrow.compute as pc

    values = _example_value_array(column)
    n = len(values)
    if pa.types.is_int64(values.type):
        payload = _varints(values.fill_null(0).to_numpy(zero_copy_only=False))
        list_tag = b"\x1a"  # Feature.int64_list (packed)
    elif pa.types.is_float32(values.type):
        raw = values.fill_null(0.0).to_numpy(zero_copy_only=False).astype("<f4").view(np.uint8)
        payload = _from_lengths(np.full(n, 4, dtype=np.int64), raw)
        list_tag = b"\x12"  # Feature.float_list (packed)
    else:
        payload = values.fill_null(b"")
        list_tag = b"\x0a"  # Feature.bytes_list (one value)
    size = pc.binary_length(payload).to_numpy(zero_copy_only=False).astype(np.int64)
    key = name.encode("utf-8")
    value_header, size = _delimited(b"\x0a", size)      # *List.value
    list_header, size = _delimited(list_tag, size)       # Feature.<kind>_list
    feature_header, size = _delimited(b"\x12", size)    # map entry value
    key_field = b"\x0a" + bytes([len(key)]) + key if len(key) < 0x80 else None
    if key_field is None:
        raise InputDataError(f"column name '{name[:40]}...' is too long for a tf.Example feature name")
    entry_header, size = _delimited(b"\x0a", size + len(key_field))  # Features.feature entry
    entry = _join(entry_header + [_constant(key_field, n)] + feature_header + list_header + value_header
                  + [payload])
    valid = values.is_valid()
    return pc.if_else(valid, entry, _constant(b"", n)), np.where(valid.to_numpy(zero_copy_only=False), size, 0)


def encode_examples(table: pa.Table | pa.RecordBatch) -> list[bytes]:
    """Serialize every row of ``table`` as a tf.Example (nulls become absent features).

    Deterministic: features in sorted name order, byte-identical across processes.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    records: list[bytes] = []
    names = sorted(table.column_names)
    for start in range(0, table.num_rows, _ENCODE_CHUNK_ROWS):
        chunk = table.slice(start, _ENCODE_CHUNK_ROWS)
        n = chunk.num_rows
        entries, sizes = zip(*[_feature_entry(name, chunk.column(name).combine_chunks()) for name in names]) \
            if names else ([], [np.zeros(n, dtype=np.int64)])
        header, _ = _delimited(b"\x0a", np.sum(sizes, axis=0))  # Example.features
        records.extend(_join(header + list(entries)).to_pylist())
    return records


def decode_examples(records: list[bytes], source: str = "<records>") -> pa.RecordBatch:
    """Decode serialized tf.Examples into a RecordBatch of large_list columns."""
    from tfx_bsl.coders import example_coder

    try:
        return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    except Exception as err:  # tfx-bsl raises RuntimeError/ValueError with C++ status text
        raise InputDataError(f"{source}: records are not valid tf.Examples ({err})") from None


def split_files(examples_dir: str, split: str) -> list[str]:
    """The record files of one split of an Examples artifact, sorted."""
    directory = layout.split_dir(examples_dir, split)
    files = sorted(f for f in glob.glob(os.path.join(directory, "*")) if os.path.isfile(f)
                   and not os.path.basename(f).startswith((".", "_")))
    if not files:
        available = layout.list_splits(examples_dir)
        raise InputDataError(f"Examples artifact {examples_dir} has no files for split '{split}' "
                             f"(splits present: {available or 'none'})")
    return files


def reading_facts(examples_dir: str) -> dict:
    """What ExampleGen recorded of how it read the data behind an Examples artifact (``layout.EXAMPLES_READING_FILE``)
    that the model keeps (``feature_values.reading_record``: a CSV's fields that meant missing, the boolean columns);
    {} for an artifact without the record (written before it, or by another tool)."""
    try:
        with open(os.path.join(examples_dir, layout.EXAMPLES_READING_FILE), encoding="utf-8") as handle:
            return feature_values.reading_record(json.load(handle))
    except (OSError, ValueError):
        return {}


def read_split_records(examples_dir: str, split: str) -> list[bytes]:
    """The serialized tf.Examples of one split, in file order."""
    records: list[bytes] = []
    for path in split_files(examples_dir, split):
        records.extend(tfrecord.read_file(path))
    return records


def read_split(examples_dir: str, split: str) -> pa.RecordBatch:
    """Decode one split of an Examples artifact into Arrow (large_list columns).

    Decodes file by file so only one file's serialized records are held at once.
    """
    tables = []
    for path in split_files(examples_dir, split):
        batch = decode_examples(tfrecord.read_file(path), source=path)
        tables.append(pa.Table.from_batches([batch]))
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return pa.RecordBatch.from_arrays([column.combine_chunks() for column in table.columns], schema=table.schema)
