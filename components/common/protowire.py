"""Protobuf wire format for many messages at once: each field of every row built with numpy/Arrow vectorized ops.

A column of per-row byte strings is a ``pa.LargeBinaryArray``; a message is the element-wise join of its
fields' parts, and a length-delimited field is a header (tag, varint size) before its payload. Used to
write tf.Examples (``examples.py``) and TensorFlow Serving's PredictionLogs without one protobuf
object per row.
"""

import numpy as np
import pyarrow as pa


def from_lengths(lengths: np.ndarray, data: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))])


def varint_sizes(values: np.ndarray) -> np.ndarray:
    """Each value's varint size (1-10 bytes): one comparison per byte the largest value needs."""
    sizes = np.ones(len(values), dtype=np.int64)
    largest = int(values.max()) if len(values) else 0
    for i in range(1, 10):
        if largest < 1 << (7 * i):
            break
        sizes += values >= np.uint64(1 << (7 * i))
    return sizes


def varints(values: np.ndarray) -> pa.Array:
    """Protobuf varint encoding of each value (int64 as two's complement)."""
    values = np.asarray(values).astype(np.int64, copy=False).view(np.uint64)
    n = len(values)
    if n == 0 or int(values.max()) < 0x80:  # the common case: one byte each
        return from_lengths(np.ones(n, dtype=np.int64), values.astype(np.uint8))
    sizes = varint_sizes(values)
    width = int(sizes.max())
    groups = np.empty((n, width), dtype=np.uint8)
    same_size = bool((sizes == width).all())  # the common case (years, counts): no mask to apply
    for i in range(width):
        group = ((values >> np.uint64(7 * i)) & np.uint64(0x7F)).astype(np.uint8)
        groups[:, i] = group | (np.uint8(0x80) if same_size and i < width - 1 else
                                np.where(i < sizes - 1, 0x80, 0).astype(np.uint8))
    return from_lengths(sizes, groups.reshape(-1) if same_size else groups[np.arange(width) < sizes[:, None]])


def constant(value: bytes, n: int) -> pa.Array:
    return from_lengths(np.full(n, len(value), dtype=np.int64),
                         np.frombuffer(value * n, dtype=np.uint8) if n else np.zeros(0, np.uint8))


def join(parts: list[pa.Array]) -> pa.Array:
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))


def delimited(tag: bytes, payload_size: np.ndarray) -> tuple[list[pa.Array], np.ndarray]:
    """Header of a length-delimited field (tag, varint size) and the field's total size."""
    n = len(payload_size)
    header = [constant(tag, n), varints(payload_size)]
    return header, len(tag) + varint_sizes(payload_size.astype(np.uint64)) + payload_size
