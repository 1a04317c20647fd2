"""Many protobuf messages of one shape serialized at once: rows of equal field sizes laid out as one byte matrix.

A message is a tuple of parts, each ``bytes`` (the same in every row), a 2-D ``uint8`` array (a fixed number
of bytes per row: packed floats), a ``pa.LargeBinaryArray`` (per-row bytes of any length: varints,
strings) and :class:`Delimited` (a length-delimited field holding such parts). :func:`joined` builds
each row with Arrow's element-wise join (any data). :func:`laid_out` groups the rows by the sizes of
their per-row parts; in a group every length header is the same, so a row is a template with the
varying bytes copied into fixed columns: a few numpy slice copies per group instead of a join of every
part for every row. It can frame the rows as TFRecords in the same matrix (the length and its CRC are
the group's too); both give the bytes :func:`joined` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kubetfx.components.common import protowire

MAX_GROUPS = 64  # more distinct size combinations (free text): the join is as fast


@dataclass(frozen=True)
class Delimited:
    """A length-delimited field: ``tag`` then the varint size of ``parts``, then ``parts``."""

    tag: bytes
    parts: tuple


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _binary_parts(array: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets of each row, the data) of a large_binary array, its slice offset applied."""
    if array.type != pa.large_binary():
        array = array.cast(pa.large_binary())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + n + 1]
    data = array.buffers()[2]
    return offsets, (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8))


def _header(tag: bytes, sizes: np.ndarray) -> tuple[list, np.ndarray]:
    """A length-delimited field's header: constant bytes when every row's payload has the same size."""
    if len(sizes) and bool((sizes == sizes[0]).all()):
        head = tag + varint(int(sizes[0]))
        return [head], sizes + len(head)
    return protowire.delimited(tag, sizes)


def _flat(part, n: int) -> tuple[list, np.ndarray]:
    """(Arrow-joinable parts, per-row size) of a part."""
    if isinstance(part, bytes):
        return [part], np.full(n, len(part), dtype=np.int64)
    if isinstance(part, np.ndarray):
        return [protowire.from_lengths(np.full(n, part.shape[1], np.int64), part)], \
            np.full(n, part.shape[1], dtype=np.int64)
    if isinstance(part, (Delimited, tuple)):
        parts, size = [], np.zeros(n, dtype=np.int64)
        for child in (part.parts if isinstance(part, Delimited) else part):
            child_parts, child_size = _flat(child, n)
            parts += child_parts
            size += child_size
        if isinstance(part, tuple):
            return parts, size
        header, total = _header(part.tag, size)
        return header + parts, total
    offsets, _ = _binary_parts(part, n)
    return [part], np.diff(offsets)


def joined(message, n: int) -> pa.Array:
    """Each row's message, one element-wise join of every part (a ``pa.LargeBinaryArray``)."""
    parts, _ = _flat(message, n)
    merged = []
    for part in parts:
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += part
        else:
            merged.append(part)
    arrays = [protowire.constant(part, n) if isinstance(part, bytes) else part for part in merged]
    return arrays[0] if len(arrays) == 1 else protowire.join(arrays)


def _per_row_parts(message, found: list) -> list:
    if isinstance(message, (Delimited, tuple)):
        for child in (message.parts if isinstance(message, Delimited) else message):
            _per_row_parts(child, found)
    elif isinstance(message, pa.Array):
        found.append(message)
    return found


def _groups(lengths: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(the rows ordered by group, where each group starts and the end) for the combinations of per-row part
    lengths; None past ``MAX_GROUPS`` combinations."""
    key, span = np.zeros(n, dtype=np.int64), 1
    for column in lengths:
        low, high = int(column.min()), int(column.max())
        span *= high - low + 1
        if span > 1 << 62:
            return None
        key = key * (high - low + 1) + (column - low)
    distinct, which = np.unique(key, return_inverse=True)
    if len(distinct) > MAX_GROUPS:
        return None
    bounds = np.zeros(len(distinct) + 1, dtype=np.int64)
    np.cumsum(np.bincount(which.reshape(-1)), out=bounds[1:])
    return (None if len(distinct) == 1 else np.argsort(which.reshape(-1), kind="stable")), bounds


def _place(part, sizes: dict, start: int, template: bytearray, varying: list) -> int:
    """Writes ``part`` at ``start`` of the group's row: constants into ``template``, the per-row parts into
    ``varying`` as (start, width, part); returns the part's size."""
    if isinstance(part, bytes):
        template[start:start + len(part)] = part
        return len(part)
    if isinstance(part, tuple):
        position = start
        for child in part:
            position += _place(child, sizes, position, template, varying)
        return position - start
    if isinstance(part, Delimited):
        head = part.tag + varint(_content_size(part, sizes))
        template[start:start + len(head)] = head
        return len(head) + _place(part.parts, sizes, start + len(head), template, varying)
    width = part.shape[1] if isinstance(part, np.ndarray) else sizes[id(part)]
    if width:
        varying.append((start, width, part))
    return width


def _content_size(part: Delimited, sizes: dict) -> int:
    """The size of a field's parts (kept in ``sizes`` by the field's id: each field measured once a group)."""
    size = sizes.get(id(part))
    if size is None:
        size = sizes[id(part)] = _measure(part.parts, sizes)
    return size


def _measure(part, sizes: dict) -> int:
    """The size of ``part`` in a group whose per-row parts have the ``sizes`` (by id)."""
    if isinstance(part, bytes):
        return len(part)
    if isinstance(part, tuple):
        return sum(_measure(child, sizes) for child in part)
    if isinstance(part, Delimited):
        size = _content_size(part, sizes)
        return len(part.tag) + len(varint(size)) + size
    return part.shape[1] if isinstance(part, np.ndarray) else sizes[id(part)]


def _fill(rows: slice, template: np.ndarray, varying: list, columns: dict) -> np.ndarray:
    """The group's rows (``rows`` of the parts in group order) as one matrix: the template, the per-row bytes
    copied in."""
    matrix = np.empty((rows.stop - rows.start, len(template)), dtype=np.uint8)
    matrix[:] = template
    for start, width, part in varying:
        if isinstance(part, np.ndarray):
            matrix[:, start:start + width] = columns[id(part)][rows]
        else:
            first, data = columns[id(part)]
            matrix[:, start:start + width] = data[first[rows, None] + np.arange(width)]
    return matrix


def _frame_columns(template: bytearray, record_size: int) -> None:
    from kubetfx.components.common import tfrecord

    length = record_size.to_bytes(8, "little")
    template[:12] = length + tfrecord.masked_crc(length).to_bytes(4, "little")


def _in_order(array: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    return array if order is None else array[order]


def laid_out(message, n: int, framed: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """(the rows' bytes one after another, each row's size) as :func:`joined` gives them, or TFRecord-framed
    (``framed``: each row is a record). None when the rows have too many distinct layouts."""
    from kubetfx.components.common import tfrecord

    if n == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    binaries = {id(part): _binary_parts(part, n) for part in _per_row_parts(message, [])}
    lengths = {key: np.diff(offsets) for key, (offsets, _) in binaries.items()}
    grouped = _groups(list(lengths.values()), n) if lengths else (None, np.array([0, n]))
    if grouped is None:
        return None
    order, bounds = grouped
    columns = {key: (_in_order(offsets[:-1], order), data) for key, (offsets, data) in binaries.items()}
    lengths = {key: _in_order(column, order) for key, column in lengths.items()}
    groups = []
    for first, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        sizes = {key: int(column[first]) for key, column in lengths.items()}
        record_size = _measure(message, sizes)
        prefix = 12 if framed else 0
        template, varying = bytearray(prefix + record_size + (4 if framed else 0)), []
        _place(message, sizes, prefix, template, varying)
        for _, _, part in varying:
            if isinstance(part, np.ndarray) and id(part) not in columns:
                columns[id(part)] = _in_order(part, order)
        if framed:
            _frame_columns(template, record_size)
        matrix = _fill(slice(first, end), np.frombuffer(bytes(template), dtype=np.uint8), varying, columns)
        if framed:
            matrix[:, -4:] = tfrecord.masked_row_crcs(matrix[:, 12:-4]).view(np.uint8).reshape(-1, 4)
        groups.append(matrix)
    widths = np.repeat([matrix.shape[1] for matrix in groups], np.diff(bounds))
    if order is None:
        return groups[0].reshape(-1), widths
    in_group_order = pa.concat_arrays([protowire.from_lengths(np.full(len(matrix), matrix.shape[1], np.int64),
                                                              matrix.reshape(-1)) for matrix in groups])
    offsets, data = _binary_parts(in_group_order.take(pa.array(np.argsort(order))), n)
    row_sizes = np.empty(n, dtype=np.int64)
    row_sizes[order] = widths
    return data[:int(offsets[-1])], row_sizes


def records(message, n: int) -> pa.Array:
    """Each row's message (a ``pa.LargeBinaryArray``): laid out by groups when it can be, else joined."""
    result = laid_out(message, n)
    if result is None:
        return joined(message, n)
    data, sizes = result
    return protowire.from_lengths(sizes, data)
