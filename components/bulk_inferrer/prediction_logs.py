"""TensorFlow Serving ``PredictionLog`` records (TFX's InferenceResult), many rows at once, no protobuf objects.

Each row becomes ``PredictionLog{predict_log: PredictLog{request: PredictRequest{model_spec, inputs},
response: PredictResponse{outputs, model_spec}}}``, what TFX's BulkInferrer writes for a predict
signature: the request holds the row's signature inputs (shape [1]), the response the row's slice of
every output (shape [1, ...]). Built with ``protowire``'s vectorized wire-format parts; a test parses
the bytes with ``tensorflow_serving.apis.prediction_log_pb2``. Files are TFRecords, gzipped, sharded
as TFX names them (``prediction_logs-00000-of-00001.gz``).
"""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetfx.components.common import protowire, tfrecord

# tensorflow.DataType values (tensorflow/core/framework/types.proto).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_STRING, DT_INT64, DT_BOOL = 1, 2, 3, 7, 9, 10
GZIP_LEVEL = 1  # the logs are written once and read by tools: speed over size


def _key(field: int, wire: int) -> bytes:
    return bytes([(field << 3) | wire])


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + _varint(len(value)) + value


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _shape(dims: tuple) -> bytes:
    """TensorShapeProto{dim: [{size}...]} as a TensorProto.tensor_shape field."""
    body = b"".join(_bytes_field(2, _key(1, 0) + _varint(int(d))) for d in dims)
    return _bytes_field(2, body)


def _header(tag: bytes, sizes: np.ndarray) -> tuple[list, np.ndarray]:
    """A length-delimited field's header: constant bytes when every row's payload has the same size."""
    if len(sizes) and bool((sizes == sizes[0]).all()):
        head = tag + _varint(int(sizes[0]))
        return [head], sizes + len(head)
    return protowire.delimited(tag, sizes)


def _join(parts: list, n: int) -> pa.Array:
    """Per row, the concatenation of ``parts`` (bytes: the same for every row; arrays: one value per row)."""
    merged = []
    for part in parts:
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += part
        else:
            merged.append(part)
    arrays = [protowire.constant(part, n) if isinstance(part, bytes) else part for part in merged]
    return arrays[0] if len(arrays) == 1 else protowire.join(arrays)


def _regroup(values: pa.Array, per_row: int) -> pa.Array:
    """Per-value byte strings -> per-row byte strings (``per_row`` consecutive values joined)."""
    if per_row == 1:
        return values
    values = values.cast(pa.large_binary())
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset:values.offset + len(values) + 1]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(values) // per_row,
                                            [None, pa.py_buffer(np.ascontiguousarray(offsets[::per_row])),
                                             values.buffers()[2]])


def _strings(flat: np.ndarray) -> pa.Array:
    """Text or bytes values as one large_binary array (Arrow converts the object array in C)."""
    try:
        values = pa.array(flat, type=pa.large_binary())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        values = pa.array(flat.astype(str), type=pa.large_string()).cast(pa.large_binary())
    return values


def _string_fields(values: pa.Array) -> pa.Array:
    """Per value, its ``string_val`` field (tag, length, the bytes). A column of few distinct values (a
    category, a class name) builds each distinct field once and takes them, instead of joining every row's."""
    if len(values) > 1:
        encoded = pc.dictionary_encode(values)
        if 2 * len(encoded.dictionary) <= len(values):
            return _string_fields(encoded.dictionary).take(encoded.indices)
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
    header, _ = protowire.delimited(_key(8, 2), lengths)
    return protowire.join(header + [values])


def _same_rows(array: np.ndarray) -> bool:
    """Whether every row equals the first (bitwise for numbers: a NaN row is never the same)."""
    return len(array) > 1 and bool(np.all(array[1:] == array[:1]))


def _tensor(array: np.ndarray) -> tuple[list, np.ndarray]:
    """Per row, the TensorProto of ``array[i:i+1]``: (parts, sizes). An output that is the same in every
    row (a model's class names) is encoded once."""
    n = len(array)
    if _same_rows(array):
        parts, size = _tensor(array[:1])
        return [_join(parts, 1)[0].as_py()], np.full(n, int(size[0]), dtype=np.int64)
    per_row = int(np.prod(array.shape[1:], dtype=np.int64)) if array.ndim > 1 else 1
    flat = array.reshape(n * per_row) if n else array.reshape(0)
    if array.dtype == object or array.dtype.kind in "SU":
        dtype = DT_STRING
        fields = _string_fields(_strings(flat))  # string_val, one field per value
        sizes = pc.binary_length(fields).to_numpy(zero_copy_only=False).astype(np.int64)
        size = sizes.reshape(n, per_row).sum(axis=1) if n else np.zeros(0, np.int64)
        parts = [_regroup(fields, per_row)]
    elif array.dtype.kind == "f":
        dtype, tag, width = (DT_DOUBLE, 6, 8) if array.dtype == np.float64 else (DT_FLOAT, 5, 4)
        raw = np.ascontiguousarray(flat.astype("<f8" if width == 8 else "<f4")).view(np.uint8)
        inner = np.full(n, per_row * width, dtype=np.int64)
        header, size = _header(_key(tag, 2), inner)  # packed repeated
        parts = header + [protowire.from_lengths(inner, raw)]
    else:
        dtype, tag = (DT_BOOL, 11) if array.dtype == np.bool_ else (DT_INT64, 10)
        payload = _regroup(protowire.varints(flat.astype(np.int64)), per_row)
        inner = pc.binary_length(payload).to_numpy(zero_copy_only=False).astype(np.int64)
        header, size = _header(_key(tag, 2), inner)
        parts = header + [payload]
    prefix = _key(1, 0) + _varint(dtype) + _shape((1,) + tuple(array.shape[1:]))
    return [prefix] + parts, size + len(prefix)


def _map_entries(field: int, tensors: dict[str, np.ndarray], n: int) -> tuple[list, np.ndarray]:
    """``map<string, TensorProto>`` entries (sorted by key: deterministic bytes)."""
    parts, total = [], np.zeros(n, dtype=np.int64)
    for name in sorted(tensors):
        tensor_parts, tensor_size = _tensor(tensors[name])
        key = _bytes_field(1, name.encode("utf-8"))
        value_header, value_size = _header(_key(2, 2), tensor_size)
        entry_header, entry_size = _header(_key(field, 2), value_size + len(key))
        parts += entry_header + [key] + value_header + tensor_parts
        total += entry_size
    return parts, total


def encode(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], model_name: str,
           signature_name: str, version: int | None = None) -> pa.Array:
    """One serialized PredictionLog per row (``inputs``/``outputs``: arrays with the rows first)."""
    n = len(next(iter(outputs.values())))
    spec = _bytes_field(1, model_name.encode("utf-8")) + _bytes_field(3, signature_name.encode("utf-8"))
    if version is not None:
        spec += _bytes_field(2, _key(1, 0) + _varint(int(version)))  # google.protobuf.Int64Value
    request_parts, request_size = _map_entries(2, inputs, n)
    request_spec = _bytes_field(1, spec)
    response_parts, response_size = _map_entries(1, outputs, n)
    response_spec = _bytes_field(2, spec)
    request_header, request_total = _header(_key(1, 2), request_size + len(request_spec))
    response_header, response_total = _header(_key(2, 2), response_size + len(response_spec))
    log_header, _ = _header(_key(6, 2), request_total + response_total)
    return _join(log_header + request_header + [request_spec] + request_parts + response_header + response_parts
                 + [response_spec], n)


class Writer:
    """Gzipped TFRecords of PredictionLogs, written as batches arrive. Framing, compressing and writing happen
    on a thread (zlib releases the GIL) while the next batch is scored; at most two batches wait, so memory
    stays bounded whatever the input's size."""

    def __init__(self, path: str):
        from kubetfx.components.common import background

        self._raw = open(path, "wb")
        self._file = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0)
        self._stage = background.Stage("kubetfx-prediction-logs")
        self.records = 0

    def write(self, records: pa.Array) -> None:
        self._stage.submit(lambda: self._file.write(tfrecord.frame(records)))
        self.records += len(records)

    def close(self) -> None:
        try:
            self._stage.close()
        finally:
            self._file.close()
            self._raw.close()
