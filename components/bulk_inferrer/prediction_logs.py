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


def _regroup(values: pa.Array, per_row: int) -> pa.Array:
    """Per-value byte strings -> per-row byte strings (``per_row`` consecutive values joined)."""
    if per_row == 1:
        return values
    values = values.cast(pa.large_binary())
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset:values.offset + len(values) + 1]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(values) // per_row,
                                            [None, pa.py_buffer(np.ascontiguousarray(offsets[::per_row])),
                                             values.buffers()[2]])


def _tensor(array: np.ndarray) -> tuple[list[pa.Array], np.ndarray]:
    """Per row, the TensorProto of ``array[i:i+1]``: (parts, sizes)."""
    n = len(array)
    per_row = int(np.prod(array.shape[1:], dtype=np.int64)) if array.ndim > 1 else 1
    flat = array.reshape(n * per_row) if n else array.reshape(0)
    if array.dtype == object or array.dtype.kind in "SU":
        dtype = DT_STRING
        values = pa.array([v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat.tolist()],
                          pa.large_binary())
        lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
        header, sizes = protowire.delimited(_key(8, 2), lengths)  # string_val, one field per value
        encoded = protowire.join(header + [values])
        payload = _regroup(encoded, per_row)
        size = sizes.reshape(n, per_row).sum(axis=1) if n else np.zeros(0, np.int64)
        parts = [payload]
    else:
        if array.dtype.kind == "f":
            dtype, tag, width = (DT_DOUBLE, 6, 8) if array.dtype == np.float64 else (DT_FLOAT, 5, 4)
            raw = np.ascontiguousarray(flat.astype("<f8" if width == 8 else "<f4")).view(np.uint8)
            payload = protowire.from_lengths(np.full(n, per_row * width, dtype=np.int64), raw)
            inner = np.full(n, per_row * width, dtype=np.int64)
        else:
            dtype, tag = (DT_BOOL, 11) if array.dtype == np.bool_ else (DT_INT64, 10)
            encoded = protowire.varints(flat.astype(np.int64))
            payload = _regroup(encoded, per_row)
            inner = pc.binary_length(payload).to_numpy(zero_copy_only=False).astype(np.int64)
        header, size = protowire.delimited(_key(tag, 2), inner)  # packed repeated
        parts = header + [payload]
    prefix = _key(1, 0) + _varint(dtype) + _shape((1,) + tuple(array.shape[1:]))
    return [protowire.constant(prefix, n)] + parts, size + len(prefix)


def _map_entries(field: int, tensors: dict[str, np.ndarray], n: int) -> tuple[list[pa.Array], np.ndarray]:
    """``map<string, TensorProto>`` entries (sorted by key: deterministic bytes)."""
    parts, total = [], np.zeros(n, dtype=np.int64)
    for name in sorted(tensors):
        tensor_parts, tensor_size = _tensor(tensors[name])
        key = _bytes_field(1, name.encode("utf-8"))
        value_header, value_size = protowire.delimited(_key(2, 2), tensor_size)
        entry_header, entry_size = protowire.delimited(_key(field, 2), value_size + len(key))
        parts += entry_header + [protowire.constant(key, n)] + value_header + tensor_parts
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
    request_header, request_total = protowire.delimited(_key(1, 2), request_size + len(request_spec))
    response_header, response_total = protowire.delimited(_key(2, 2), response_size + len(response_spec))
    log_header, _ = protowire.delimited(_key(6, 2), request_total + response_total)
    return protowire.join(log_header + request_header + [protowire.constant(request_spec, n)] + request_parts
                          + response_header + response_parts + [protowire.constant(response_spec, n)])


class Writer:
    """Gzipped TFRecords of PredictionLogs, written as batches arrive (memory stays one batch)."""

    def __init__(self, path: str):
        self._raw = open(path, "wb")
        self._file = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0)
        self.records = 0

    def write(self, records: pa.Array) -> None:
        self._file.write(tfrecord.encode_records(records.to_pylist()))
        self.records += len(records)

    def close(self) -> None:
        self._file.close()
        self._raw.close()
