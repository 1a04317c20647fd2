"""Many protobuf messages of one shape serialized at once: rows of equal field sizes laid out as one byte matrix.

A message is a tuple of parts, each ``bytes`` (the same in every row), a 2-D ``uint8`` array (a fixed number
of bytes per row: packed floats), a ``pa.LargeBinaryArray`` (per-row bytes of any length: varints,
strings), a :class:`Choice` (each row one of a few byte strings: a category) and :class:`Delimited` (a
length-delimited field holding such parts). :func:`joined` builds
each row with Arrow's element-wise join (any data). :func:`laid_out` groups the rows by the sizes of
their per-row parts; in a group every length header is the same, so a row is a template with the
varying bytes copied into fixed columns: a few numpy slice copies per group instead of a join of every
part for every row. It can frame the rows as TFRecords in the same matrix (the length and its CRC are
the group's too); both give the bytes :func:`joined` gives. Framed rows are written in their order by the native
fill (``_rowfill``, C: each row its group's template, its own bytes copied in, the record's CRC32C) where it was
built -- to a file a cache-sized chunk at a time, so that the compressor reads them from the cache and no batch is
held whole -- else by numpy, group by group, and put back in order. Group templates are built once per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kubetfx.components.common import protowire, tfrecord

try:  # built with the package where a C compiler was found (pyproject's ext-modules, optional)
    from kubetfx.components.common import _rowfill
except ImportError:  # pragma: no cover - the numpy fill below gives the same bytes
    _rowfill = None

MAX_GROUPS = 64  # more distinct size combinations (free text): the join is as fast
_RECORD_START = 12  # a framed row: the record's length (8 bytes) and its masked CRC, then the record


@dataclass(frozen=True)
class Delimited:
    """A length-delimited field: ``tag`` then the varint size of ``parts``, then ``parts``."""

    tag: bytes
    parts: tuple


@dataclass(frozen=True)
class Choice:
    """Per row, ``values[codes[row]]``: a column of few distinct byte strings, each built once."""

    codes: np.ndarray
    values: pa.Array

    def taken(self) -> pa.Array:
        return self.values.take(pa.array(self.codes))


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
    if isinstance(part, Choice):
        part = part.taken()
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
    elif isinstance(message, (pa.Array, Choice, np.ndarray)):
        found.append(message)
    return found


class _Fixed:
    """A part of ``width`` bytes in every row (a matrix)."""

    lengths = None

    def __init__(self, matrix: np.ndarray):
        self.matrix, self.width = matrix, matrix.shape[1]

    def rows(self, rows: np.ndarray | None, width: int) -> np.ndarray:
        return self.matrix if rows is None else self.matrix[rows]


class _Ragged:
    """Per-row bytes of several lengths (``lengths``): a group's rows, all of one length, gathered."""

    def __init__(self, offsets: np.ndarray, data: np.ndarray):
        self.first, self.data, self.lengths = offsets[:-1], data, np.diff(offsets)

    def rows(self, rows: np.ndarray | None, width: int) -> np.ndarray:
        first = self.first if rows is None else self.first[rows]
        return self.data[first[:, None] + np.arange(width)]


class _Chosen:
    """A :class:`Choice`: the distinct values as rows of a small matrix, each row's code picking one."""

    def __init__(self, choice: Choice):
        offsets, data = _binary_parts(choice.values, len(choice.values))
        sizes = np.diff(offsets)
        self.matrix = np.zeros((len(sizes), int(sizes.max(initial=0))), dtype=np.uint8)
        self.matrix[np.arange(self.matrix.shape[1]) < sizes[:, None]] = data[offsets[0]:offsets[-1]]
        self.codes, self.lengths = choice.codes, sizes[choice.codes]
        if len(self.lengths) and bool((self.lengths == self.lengths[0]).all()):
            self.width, self.lengths = int(self.lengths[0]), None

    def rows(self, rows: np.ndarray | None, width: int) -> np.ndarray:
        return self.matrix[self.codes if rows is None else self.codes[rows], :width]


def _column(part, n: int):
    """The per-row part's column: a matrix when every row has as many bytes."""
    if isinstance(part, np.ndarray):
        return _Fixed(part)
    if isinstance(part, Choice):
        return _Chosen(part)
    offsets, data = _binary_parts(part, n)
    width = int(offsets[1] - offsets[0])
    if bool((np.diff(offsets) == width).all()):
        return _Fixed(data[offsets[0]:offsets[-1]].reshape(n, width))
    return _Ragged(offsets, data)


def _group_of_rows(lengths: list[np.ndarray], n: int) -> tuple[np.ndarray, int] | None:
    """(each row's group: its combination of per-row part lengths, numbered in order; the number of groups),
    None past ``MAX_GROUPS`` combinations."""
    key, span = np.zeros(n, dtype=np.int64), 1
    for column in lengths:
        low, high = int(column.min()), int(column.max())
        span *= high - low + 1
        if span > 1 << 24:
            return None
        key = key * (high - low + 1) + (column - low)
    present = np.flatnonzero(np.bincount(key, minlength=span))
    if len(present) > MAX_GROUPS:
        return None
    number = np.zeros(span, dtype=np.int32)
    number[present] = np.arange(len(present), dtype=np.int32)
    return number[key], len(present)


def _groups(lengths: list[np.ndarray], n: int) -> list[np.ndarray] | None:
    """The rows of each combination of per-row part lengths, in order; None past ``MAX_GROUPS`` combinations."""
    found = _group_of_rows(lengths, n)
    if found is None:
        return None
    group_of_row, count = found
    return [np.flatnonzero(group_of_row == group) for group in range(count)]


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
    width = sizes[id(part)]
    if width:
        varying.append((start, width, id(part)))
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
    return sizes[id(part)]


def _template(message, sizes: dict, framed: bool) -> tuple[np.ndarray, list]:
    """The row template of a group whose per-row parts have the ``sizes`` (by column key): every constant and length
    header (with ``framed`` the TFRecord length and its CRC before the record, 4 bytes for the record's CRC after
    it), and its per-row parts as (start, width, column key)."""
    sizes = dict(sizes)
    record_size = _measure(message, sizes)
    prefix = _RECORD_START if framed else 0
    template, varying = bytearray(prefix + record_size + (4 if framed else 0)), []
    _place(message, sizes, prefix, template, varying)
    if framed:
        length = record_size.to_bytes(8, "little")
        template[:12] = length + tfrecord.masked_crc(length).to_bytes(4, "little")
    return np.frombuffer(bytes(template), dtype=np.uint8), varying


def _shape(message, number: dict):
    """The message's structure, its per-row parts by their number: the same for every batch of one model's rows
    whose constant parts are the same."""
    if isinstance(message, bytes):
        return message
    if isinstance(message, tuple):
        return ("(",) + tuple(_shape(child, number) for child in message)
    if isinstance(message, Delimited):
        return ("D", message.tag, _shape(message.parts, number))
    return number[id(message)]


_TEMPLATES: dict = {}  # (a message's _shape, its per-row parts' sizes, framed) -> (template, [(start, width, number)])
_TEMPLATES_KEPT = 4096


def _templates(message, columns: dict, firsts: list[int], framed: bool) -> list[tuple[np.ndarray, list]]:
    """:func:`_template` of each group, given by its first row, its per-row parts by their column's number (the
    order of ``columns``). A model's batches repeat their groups: each template is built once per process (walking
    the message for every group of every batch cost a quarter of the encoding)."""
    keys = list(columns)
    number = {key: index for index, key in enumerate(keys)}
    shape = _shape(message, number)
    templates = []
    for first in firsts:
        sizes = tuple(column.width if column.lengths is None else int(column.lengths[first])
                      for column in columns.values())
        found = _TEMPLATES.get((shape, sizes, framed))
        if found is None:
            template, varying = _template(message, zip(keys, sizes), framed)
            found = template, [(start, width, number[key]) for start, width, key in varying]
            if len(_TEMPLATES) >= _TEMPLATES_KEPT:
                _TEMPLATES.clear()
            _TEMPLATES[(shape, sizes, framed)] = found
        templates.append(found)
    return templates


def _fill(matrix: np.ndarray, template: np.ndarray, varying: list, columns: list, rows: np.ndarray | None,
          framed: bool) -> None:
    """The group's rows (all rows: None) into ``matrix``: the template, the per-row bytes copied into their columns
    (``varying``: (start, width, the column's number in ``columns``)); ``framed``: each record's CRC, from the template's and the bytes copied in (:class:`tfrecord.RowCrcs`)."""
    matrix[:] = template
    crcs = tfrecord.RowCrcs(template[_RECORD_START:-4].tobytes(), len(matrix)) if framed else None
    for start, width, number in varying:
        column = columns[number]
        if crcs is not None and isinstance(column, _Chosen):  # each distinct value's CRC part once
            crcs.add_choice(start - _RECORD_START, column.matrix[:, :width],
                            column.codes if rows is None else column.codes[rows])
            matrix[:, start:start + width] = column.rows(rows, width)
            continue
        block = column.rows(rows, width)
        matrix[:, start:start + width] = block
        if crcs is not None:
            crcs.add(start - _RECORD_START, block)
    if crcs is not None:
        matrix[:, -4:] = crcs.masked().view(np.uint8).reshape(-1, 4)


class _Buffers:
    """Byte buffers for framed layouts, given back (:meth:`Layout.release`) once their records are written and handed
    out again. A buffer of tens of MB new from the allocator is new pages from the kernel each time, and faulting
    them in cost more than filling them (measured: 0.13-0.25 s per 1M PredictionLogs, against 0.02 reused)."""

    def __init__(self, keep: int = 4):
        self._free: list[np.ndarray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def get(self, size: int) -> np.ndarray:
        """A buffer of at least ``size`` bytes (at most twice: a small batch does not hold a big one)."""
        with self._lock:
            fitting = [i for i, buffer in enumerate(self._free) if size <= len(buffer) <= 2 * size]
            if fitting:
                return self._free.pop(min(fitting, key=lambda i: len(self._free[i])))
        return np.empty(size, dtype=np.uint8)

    def give_back(self, buffer: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)

    def drop(self) -> None:
        with self._lock:
            self._free.clear()


_BUFFERS = _Buffers()


def drop_buffers() -> None:
    """Free the buffers kept for reuse (at the end of a job)."""
    _BUFFERS.drop()


class Layout:
    """Rows laid out as one matrix per group (framed: the records' CRCs in place), the matrices one after another in
    ``data``; :meth:`bytes` puts the rows back in their order, so that it can run on another thread. Rows the native
    fill wrote are in their order already (``sizes``: each row's)."""

    def __init__(self, groups: list, matrices: list, data: np.ndarray, n: int, framed: bool,
                 buffer: np.ndarray | None = None, sizes: np.ndarray | None = None):
        self.groups, self.matrices, self.data, self.n, self.framed = groups, matrices, data, n, framed
        self._buffer = buffer  # a reused buffer (framed layouts) that ``data`` is the start of
        self._sizes = sizes

    def release(self) -> None:
        """Give the buffer back for the next layout: call it once nothing refers to :meth:`bytes`'s result."""
        if self._buffer is not None:
            _BUFFERS.give_back(self._buffer)
            self._buffer = self.data = self.matrices = None

    def write_to(self, handle) -> None:
        """The rows written to a file (``handle.write``), then the buffer given back."""
        handle.write(self.bytes()[0])
        self.release()

    def bytes(self) -> tuple[np.ndarray, np.ndarray]:
        """(the rows' bytes one after another, each row's size)."""
        if self._sizes is not None:
            return self.data, self._sizes
        widths = np.repeat([matrix.shape[1] for matrix in self.matrices], [len(matrix) for matrix in self.matrices])
        if len(self.matrices) == 1:
            return self.data, widths
        position = np.empty(self.n, dtype=np.int64)
        position[np.concatenate(self.groups)] = np.arange(self.n)
        offsets, data = _binary_parts(protowire.from_lengths(widths, self.data).take(pa.array(position)), self.n)
        return data[:int(offsets[-1])], np.diff(offsets)


def _source(column) -> tuple:
    """A per-row part as the native fill reads it: (kind, data, row index, stride); see ``_rowfill.c``."""
    if isinstance(column, _Fixed):
        matrix = np.ascontiguousarray(column.matrix)
        return 0, matrix, None, matrix.shape[1]
    if isinstance(column, _Chosen):
        return 2, column.matrix, np.ascontiguousarray(column.codes, dtype=np.int64), column.matrix.shape[1]
    return 1, column.data, np.ascontiguousarray(column.first, dtype=np.int64), 0


class _FilledInOrder(Layout):
    """Framed rows the native fill writes in their order when asked: into one buffer (:meth:`bytes`) or, a chunk at a
    time, straight to a file (:meth:`write_to`: the rows are compressed while they are in the cache, and never held
    whole). Until then it keeps the plan: per group a template, and the columns the rows' own bytes come from."""

    CHUNK_BYTES = 1 << 18  # written rows handed to the file at a time: a part of a core's L2 cache

    def __init__(self, plan: tuple, n: int, sizes: np.ndarray):
        super().__init__([], [], None, n, True)
        self._plan, self._row_sizes, self._fill = plan, sizes, _rowfill.fill

    def bytes(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sizes is None:
            size = int(self._row_sizes.sum())
            self._buffer = _BUFFERS.get(size)
            self.data, self._sizes = self._buffer[:size], self._row_sizes
            self._fill(self.data, *self._plan)
        return self.data, self._sizes

    def write_to(self, handle) -> None:
        if self._sizes is not None:  # laid out whole already
            super().write_to(handle)
            return
        size = max(self.CHUNK_BYTES, int(self._row_sizes.max(initial=0)))
        scratch = _BUFFERS.get(size)
        try:
            self._fill(scratch[:size], *self._plan, handle.write)
        finally:
            _BUFFERS.give_back(scratch)
        self._plan = None


def _framed_in_order(message, columns: dict, varying: list, n: int) -> Layout | None:
    """Framed rows written in their order by the native fill: per group a template and where its rows' own bytes go."""
    found = _group_of_rows(varying, n) if varying else (np.zeros(n, dtype=np.int32), 1)
    if found is None:
        return None
    group_of_row, count = found
    firsts = [int(np.argmax(group_of_row == group)) for group in range(count)] if count > 1 else [0]
    templates, parts = [], []
    for template, where in _templates(message, columns, firsts, True):
        templates.append(template.tobytes())
        parts.append(where)
    sizes = np.array([len(template) for template in templates], dtype=np.int64)[group_of_row]
    return _FilledInOrder((group_of_row, templates, parts, [_source(column) for column in columns.values()]), n,
                          sizes)


def fill_engine() -> str:
    """What writes framed rows here: ``"C"`` (``_rowfill``, built at install) or ``"numpy"`` (no compiler then)."""
    return "numpy" if _rowfill is None else "C"


def layout(message, n: int, framed: bool = False) -> Layout | None:
    """The rows of ``message`` (TFRecord-framed: ``framed``) laid out by group; None when they have too many
    distinct layouts. Framed rows go through the native fill where it was built, else numpy."""
    if n == 0:
        return Layout([], [np.zeros((0, 0), dtype=np.uint8)], np.zeros(0, dtype=np.uint8), 0, False)
    columns = {id(part): _column(part, n) for part in _per_row_parts(message, [])}
    varying = [column.lengths for column in columns.values() if column.lengths is not None]
    if framed and _rowfill is not None:
        return _framed_in_order(message, columns, varying, n)
    groups = _groups(varying, n) if varying else [None]
    if groups is None:
        return None
    if len(groups) == 1:
        groups = [None]
    templates = _templates(message, columns, [0 if rows is None else int(rows[0]) for rows in groups], framed)
    counts = [n if rows is None else len(rows) for rows in groups]
    size = sum(count * len(template) for count, (template, _) in zip(counts, templates))
    buffer = _BUFFERS.get(size) if framed else np.empty(size, dtype=np.uint8)
    data = buffer[:size]
    matrices, start, numbered = [], 0, list(columns.values())
    for rows, count, (template, parts) in zip(groups, counts, templates):
        matrix = data[start:start + count * len(template)].reshape(count, len(template))
        _fill(matrix, template, parts, numbered, rows, framed)
        matrices.append(matrix)
        start += matrix.size
    return Layout([] if groups == [None] else groups, matrices, data, n, framed, buffer if framed else None)


def laid_out(message, n: int, framed: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """(the rows' bytes one after another, each row's size) as :func:`joined` gives them, or TFRecord-framed
    (``framed``: each row is a record). None when the rows have too many distinct layouts."""
    rows = layout(message, n, framed)
    return None if rows is None else rows.bytes()


def records(message, n: int) -> pa.Array:
    """Each row's message (a ``pa.LargeBinaryArray``): laid out by groups when it can be, else joined."""
    result = laid_out(message, n)
    if result is None:
        return joined(message, n)
    data, sizes = result
    return protowire.from_lengths(sizes, data)
