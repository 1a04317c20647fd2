"""TensorFlow Serving ``PredictionLog`` records (TFX's InferenceResult), many rows at once, no protobuf objects.

Each row becomes ``PredictionLog{predict_log: PredictLog{request: PredictRequest{model_spec, inputs},
response: PredictResponse{outputs, model_spec}}}``, what TFX's BulkInferrer writes for a predict
signature: the request holds the row's signature inputs (shape [1]), the response the row's slice of
every output (shape [1, ...]). Built as ``protolayout`` parts (rows of one layout: a byte matrix,
framed as TFRecords in place); tests parse the bytes with ``tensorflow_serving.apis.prediction_log_pb2``
and compare them with protobuf's own. Files are TFRecords, gzipped (ISA-L's gzip where ``isal`` is
installed: the same format, ~5x faster than zlib), sharded as TFX names them
(``prediction_logs-00000-of-00001.gz``).
"""

from __future__ import annotations

import concurrent.futures
import gzip

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetfx.components.common import protolayout, protowire, tfrecord
from kubetfx.components.common.protolayout import Choice, Delimited, varint
from kubetfx.components.predictor.servable import CodedStrings

# tensorflow.DataType values (tensorflow/core/framework/types.proto).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_STRING, DT_INT64, DT_BOOL = 1, 2, 3, 7, 9, 10
GZIP_LEVEL = 1  # the logs are written once and read by tools: speed over size (zlib's 1, ISA-L's 1 of 0-3)


def _key(field: int, wire: int) -> bytes:
    return bytes([(field << 3) | wire])


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + varint(len(value)) + value


def _shape(dims: tuple) -> bytes:
    """TensorShapeProto{dim: [{size}...]} as a TensorProto.tensor_shape field."""
    body = b"".join(_bytes_field(2, _key(1, 0) + varint(int(d))) for d in dims)
    return _bytes_field(2, body)


def _regroup(values: pa.Array, per_row: int) -> pa.Array:
    """Per-value byte strings -> per-row byte strings (``per_row`` consecutive values joined)."""
    values = values.cast(pa.large_binary())
    if per_row == 1:
        return values
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


def _string_fields(values: pa.Array):
    """Per value, its ``string_val`` field (tag, length, the bytes). A column of few distinct values (a
    category, a class name) builds each distinct field once: a ``Choice``."""
    if len(values) > 1:
        encoded = pc.dictionary_encode(values)
        if 2 * len(encoded.dictionary) <= len(values) and not encoded.indices.null_count:
            return Choice(encoded.indices.to_numpy(zero_copy_only=False), _string_fields(encoded.dictionary))
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
    header, _ = protowire.delimited(_key(8, 2), lengths)
    return protowire.join(header + [values])


def _same_rows(array: np.ndarray) -> bool:
    """Whether every row equals the first (bitwise for numbers: a NaN row is never the same)."""
    return len(array) > 1 and bool(np.all(array[-1] == array[0])) and bool(np.all(array[1:] == array[:1]))


def _string_tensor(values: pa.Array | CodedStrings, shape: tuple) -> tuple:
    """``_tensor`` of a text input (an Arrow array, one value per row) or a coded string output, from their
    distinct values (no Python object per row)."""
    n = shape[0]
    per_row = int(np.prod(shape[1:], dtype=np.int64))
    if isinstance(values, pa.Array):
        fields = _string_fields(values.cast(pa.large_binary()))
    else:
        codes = values.codes.reshape(n, per_row)
        if n > 1 and bool((codes == codes[:1]).all()):  # e.g. the class names: encoded once
            return (protolayout.joined(_tensor(values.values[values.codes[:1]]), 1)[0].as_py(),)
        distinct = _string_fields(_strings(values.values))
        fields = Choice(codes.reshape(-1), distinct.taken() if isinstance(distinct, Choice) else distinct)
    values = (fields if per_row == 1 and isinstance(fields, Choice) else
              _regroup(fields.taken() if isinstance(fields, Choice) else fields, per_row),)
    return (_key(1, 0) + varint(DT_STRING) + _shape((1,) + tuple(shape[1:])),) + values


def _tensor(array) -> tuple:
    """Per row, the parts of the TensorProto of ``array[i:i+1]`` (``protolayout``'s parts). An output that is
    the same in every row (a model's class names) is encoded once."""
    if isinstance(array, pa.Array):
        return _string_tensor(array, (len(array),))
    if isinstance(array, CodedStrings):
        if 2 * len(array.values) > array.codes.size:  # mostly distinct: as numpy gives them
            return _tensor(array.decoded())
        return _string_tensor(array, array.shape)
    n = len(array)
    if _same_rows(array):
        return (protolayout.joined(_tensor(array[:1]), 1)[0].as_py(),)
    per_row = int(np.prod(array.shape[1:], dtype=np.int64)) if array.ndim > 1 else 1
    flat = array.reshape(n * per_row) if n else array.reshape(0)
    if array.dtype == object or array.dtype.kind in "SU":
        dtype = DT_STRING
        fields = _string_fields(_strings(flat))  # string_val, one field per value
        values = (fields if per_row == 1 and isinstance(fields, Choice) else
                  _regroup(fields.taken() if isinstance(fields, Choice) else fields, per_row),)
    elif array.dtype.kind == "f":
        dtype, tag, width = (DT_DOUBLE, 6, 8) if array.dtype == np.float64 else (DT_FLOAT, 5, 4)
        raw = np.ascontiguousarray(flat.astype("<f8" if width == 8 else "<f4")).view(np.uint8)
        values = (Delimited(_key(tag, 2), (raw.reshape(n, per_row * width),)),)  # packed repeated
    else:
        dtype, tag = (DT_BOOL, 11) if array.dtype == np.bool_ else (DT_INT64, 10)
        values = (Delimited(_key(tag, 2), (_regroup(protowire.varints(flat.astype(np.int64)), per_row),)),)
    return (_key(1, 0) + varint(dtype) + _shape((1,) + tuple(array.shape[1:])),) + values


def _map_entries(field: int, tensors: dict[str, np.ndarray]) -> tuple:
    """``map<string, TensorProto>`` entries (sorted by key: deterministic bytes)."""
    return tuple(Delimited(_key(field, 2), (_bytes_field(1, name.encode("utf-8")),
                                            Delimited(_key(2, 2), _tensor(tensors[name]))))
                 for name in sorted(tensors))


def message(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], model_name: str,
            signature_name: str, version: int | None = None) -> Delimited:
    """The rows' PredictionLogs as ``protolayout`` parts (``inputs``/``outputs``: arrays with the rows first)."""
    version_field = b"" if version is None else _bytes_field(2, _key(1, 0) + varint(int(version)))  # Int64Value
    spec = _bytes_field(1, model_name.encode("utf-8")) + version_field + _bytes_field(3, signature_name.encode("utf-8"))
    request = Delimited(_key(1, 2), (_bytes_field(1, spec),) + _map_entries(2, inputs))
    response = Delimited(_key(2, 2), _map_entries(1, outputs) + (_bytes_field(2, spec),))
    return Delimited(_key(6, 2), (request, response))


def encode(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], model_name: str,
           signature_name: str, version: int | None = None, framed: bool = False):
    """One serialized PredictionLog per row (a ``pa.LargeBinaryArray``), laid out by ``protolayout`` where it can
    be. With ``framed``: (a call that writes the rows as TFRecords to a file, the record count); the call does
    the last steps (with the C fill, the rows themselves, a cache-sized chunk at a time straight into the file's
    compressor), for :class:`Writer` to run on its own thread."""
    n = len(next(iter(outputs.values())))
    log = message(inputs, outputs, model_name, signature_name, version)
    if not framed:
        return protolayout.records(log, n)
    rows = protolayout.layout(log, n, framed=True)
    if rows is None:
        data = tfrecord.frame(protolayout.joined(log, n))
        return (lambda handle: handle.write(data)), n
    return rows.write_to, n


def _gzip_file(raw):
    """A gzip stream into ``raw`` with no timestamp (the same bytes for the same rows): ISA-L's where installed."""
    try:
        from isal import igzip
    except ImportError:
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)
    return igzip.IGzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)


class Writer:
    """Gzipped TFRecords of PredictionLogs, written as batches arrive (laid out by :func:`encode` with
    ``framed``). Writing the rows (or putting them in order), compressing and writing happen on a thread (the C
    fill, zlib and ISA-L release the GIL) while the next batch is encoded; at most two batches wait, so memory
    stays bounded whatever the input's size."""

    def __init__(self, path: str):
        from kubetfx.components.common import background

        self._raw = open(path, "wb")
        self._file = _gzip_file(self._raw)
        self._stage = background.Stage("kubetfx-prediction-logs")
        self.records = 0

    def write(self, framed) -> None:
        """``framed``: (a call writing the TFRecords to a file, the record count), as ``encode(..., framed=True)``
        returns them, or a future of that (encoded on another thread: written in the order given); the call runs on
        the writer's thread."""
        def write() -> None:
            write_to, count = framed.result() if isinstance(framed, concurrent.futures.Future) else framed
            write_to(self._file)
            self.records += count

        self._stage.submit(write)

    def close(self) -> None:
        try:
            self._stage.close()
        finally:
            self._file.close()
            self._raw.close()
            protolayout.drop_buffers()
